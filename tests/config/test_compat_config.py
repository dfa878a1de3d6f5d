"""Scylla Migrator configs parse unchanged: every key of theirs has the fate the key table says.

Parse-only checks, no servers. The sample configs are written in the shape of that tool's
DynamoDB / Alternator / S3-export configs (our own values), together carrying every key.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from alternator_migrator.config import (
    MAX_CONFIG_BYTES,
    AlternatorSettings,
    Config,
    load,
    parse,
    require_supported,
)
from alternator_migrator.config.compat import HONOURED, IGNORED, MAPPED, REFUSED, THEIR_KEYS
from alternator_migrator.config.docgen import USERS_BEGIN, USERS_END, users_table, with_users_table
from alternator_migrator.errors import ConfigError
from alternator_migrator.snapshot.copier import plan_scan
from alternator_migrator.snapshot.ledger import skipped_segments

USERS_DOC = Path(__file__).resolve().parents[2] / "docs" / "scylla-migrator-users.md"

CREDS = {"accessKey": "AKIDEXAMPLE", "secretKey": "not-a-real-secret"}
ALT_BLOCK = {
    "datacenter": "dc1",
    "rack": "rack1",
    "activeRefreshIntervalMs": 1000,
    "idleRefreshIntervalMs": 60000,
    "compression": True,
    "optimizeHeaders": True,
    "maxConnections": 64,
    "connectionMaxIdleTimeMs": 30000,
    "connectionTimeToLiveMs": 600000,
    "connectionAcquisitionTimeoutMs": 5000,
    "connectionTimeoutMs": 2000,
    "maxItemsPerBatch": 50,
}
VALIDATION = {
    "compareTimestamps": True,
    "ttlToleranceMillis": 60000,
    "writetimeToleranceMillis": 1000,
    "failuresToFetch": 10,
    "floatingPointTolerance": 0.001,
    "timestampMsTolerance": 0,
    "copyMissingRows": True,
    "repairWritetimeStrategy": "source",
    "hashColumns": ["a"],
    "numericTypePolicy": "lenient",
}


def dynamo_source(**extra: Any) -> dict[str, Any]:
    return {
        "type": "dynamodb",
        "table": "Orders",
        "region": "eu-west-1",
        "endpoint": {"host": "http://dynamodb", "port": 8000},
        "credentials": {
            **CREDS,
            "assumeRole": {"arn": "arn:aws:iam::1:role/r", "sessionName": "s"},
        },
        **extra,
    }


def alternator_target(**extra: Any) -> dict[str, Any]:
    return {
        "type": "alternator",
        "table": "Orders",
        "region": "dummy",
        "endpoint": {"host": "http://scylla", "port": 8000},
        "credentials": dict(CREDS),
        "streamChanges": False,
        "removeConsumedCapacity": True,
        "billingMode": "PAY_PER_REQUEST",
        **extra,
    }


# Four configs, because some of their keys exclude others (a source is either a table or an
# export; `streamChanges` is either a boolean or a mapping; `savepoints` has `path` or `target`).
SAMPLES: dict[str, dict[str, Any]] = {
    "everything": {
        "source": dynamo_source(
            scanSegments=3,
            readThroughput=100,
            throughputReadPercent=0.8,
            maxMapTasks=2,
            removeConsumedCapacity=False,
            alternator=dict(ALT_BLOCK),
            streamingPollIntervalSeconds=2,
            streamingMaxConsecutiveErrors=5,
            streamingPollingPoolSize=4,
            streamingLeaseDurationMs=60000,
            streamingMaxRecordsPerPoll=500,
            streamingMaxRecordsPerSecond=5000,
            streamingEnableCloudWatchMetrics=False,
            streamApiCallTimeoutSeconds=30,
            streamApiCallAttemptTimeoutSeconds=10,
            streamingPollFutureTimeoutSeconds=60,
        ),
        "target": alternator_target(
            writeThroughput=200,
            throughputWritePercent=1.0,
            skipInitialSnapshotTransfer=False,
            maxMapTasks=3,
            scanSegments=4,
            alternator=dict(ALT_BLOCK),
            credentials={
                **CREDS,
                "assumeRole": {"arn": "arn:aws:iam::2:role/w", "sessionName": "w"},
            },
        ),
        "renames": [{"from": "a", "to": "b"}],
        "savepoints": {
            "path": "/app/savepoints",
            "intervalSeconds": 300,
            "enableParquetFileTracking": True,
        },
        "skipTokenRanges": [],
        "skipSegments": [1, 2],
        "skipParquetFiles": [],
        "validation": dict(VALIDATION),
    },
    "kinesis": {
        "source": dynamo_source(),
        "target": alternator_target(
            streamChanges={
                "type": "kinesis",
                "streamArn": "arn:aws:kinesis:us-east-1:111122223333:stream/orders",
                "appName": "migrator_orders",
                "initialTimestamp": "2026-01-01T00:00:00Z",
            }
        ),
        "savepoints": {
            "target": {"type": "filesystem", "path": "/app/savepoints"},
            "intervalSeconds": 60,
        },
    },
    "s3-export": {
        "source": {
            "type": "dynamodb-s3-export",
            "bucket": "exports",
            "manifestKey": "dynamodb-export/AWSDynamoDB/0123-abcd/manifest-summary.json",
            "region": "eu-central-1",
            "endpoint": {"host": "http://s3", "port": 4566},
            "credentials": dict(CREDS),
            "usePathStyleAccess": True,
            "tableDescription": {
                "attributeDefinitions": [{"name": "id", "type": "S"}],
                "keySchema": [{"name": "id", "type": "HASH"}],
                "billingMode": "PROVISIONED",
                "provisionedThroughput": {"readCapacityUnits": 5, "writeCapacityUnits": 5},
            },
        },
        "target": alternator_target(),
        "savepoints": {"path": "/app/savepoints", "intervalSeconds": 300},
    },
    "flat-alternator": {
        "source": {
            **dynamo_source(),
            "type": "alternator",
            "datacenter": "dc2",
            "maxItemsPerBatch": 7,
        },
        "target": alternator_target(**ALT_BLOCK),
        "savepoints": {"path": "/app/savepoints", "intervalSeconds": 300},
    },
    "stream-mapping": {
        "source": dynamo_source(),
        "target": alternator_target(streamChanges={"type": "dynamodb-streams"}),
        "savepoints": {"path": "/app/savepoints", "intervalSeconds": 300},
    },
}


def key_paths(data: Any, prefix: str = "") -> set[str]:
    """Dotted paths of every mapping key in ``data``; list items as `[]`."""
    out: set[str] = set()
    if isinstance(data, dict):
        for k, v in data.items():
            path = f"{prefix}.{k}" if prefix else str(k)
            out.add(path)
            out |= key_paths(v, path)
    elif isinstance(data, list):
        for v in data:
            out |= key_paths(v, f"{prefix}[]")
    return out


def parsed(name: str) -> Config:
    return parse(SAMPLES[name], f"{name}.yaml")


def test_samples_carry_every_key_of_theirs() -> None:
    present = set().union(*(key_paths(s) for s in SAMPLES.values()))
    missing = [row.key for row in THEIR_KEYS if row.key not in present]
    assert not missing, missing


@pytest.mark.parametrize("row", THEIR_KEYS, ids=lambda r: r.key)
def test_each_key_has_the_fate_the_table_says(row: Any) -> None:
    name = next(n for n, s in SAMPLES.items() if row.key in key_paths(s))
    cfg = parsed(name)  # never "not a known key"
    ignored = [w for w in cfg.warnings if f"`{row.key}` is accepted and ignored" in w]
    if row.fate == IGNORED:
        assert len(ignored) == 1 and "accepted and ignored" in ignored[0], cfg.warnings
    else:
        assert not ignored, cfg.warnings
    if row.fate == REFUSED:
        with pytest.raises(ConfigError, match="not supported yet"):
            require_supported(cfg)
    assert row.fate in (HONOURED, MAPPED, IGNORED, REFUSED)


def test_everything_config_is_typed() -> None:
    cfg = parsed("everything")
    s, t = cfg.source, cfg.target
    assert s.alternator == AlternatorSettings(
        datacenter="dc1",
        rack="rack1",
        active_refresh_interval_ms=1000,
        idle_refresh_interval_ms=60000,
        compression=True,
        optimize_headers=True,
        max_connections=64,
        connection_max_idle_time_ms=30000,
        connection_time_to_live_ms=600000,
        connection_acquisition_timeout_ms=5000,
        connection_timeout_ms=2000,
        max_items_per_batch=50,
    )
    assert t.alternator == s.alternator
    assert t.max_items_per_batch == 50  # the Alternator block's batch size wins
    assert (t.max_map_tasks, s.max_map_tasks) == (3, 2)
    assert s.remove_consumed_capacity is False and t.remove_consumed_capacity is True
    assert (
        s.streaming_poll_interval_seconds,
        s.streaming_max_consecutive_errors,
        s.streaming_polling_pool_size,
        s.streaming_max_records_per_poll,
        s.streaming_max_records_per_second,
    ) == (2.0, 5, 4, 500, 5000)
    assert cfg.skip_segments == (1, 2)
    assert cfg.validation.copy_missing_rows is True
    require_supported(cfg)  # nothing refused
    # One warning per ignored key, each on one line.
    assert len(cfg.warnings) == sum(
        1 for r in THEIR_KEYS if r.fate == IGNORED and r.key in key_paths(SAMPLES["everything"])
    )
    assert all("\n" not in w for w in cfg.warnings)


def test_stream_changes_mappings() -> None:
    assert parsed("stream-mapping").target.stream_changes is True
    off = {
        **SAMPLES["stream-mapping"],
        "target": alternator_target(streamChanges={"type": "disabled"}),
    }
    assert parse(off).target.stream_changes is False
    k = parsed("kinesis")
    assert k.target.kinesis is not None and k.target.kinesis.app_name == "migrator_orders"
    assert k.savepoints.path == "/app/savepoints"
    # Kinesis is a change source now (issue 15); only a later start position is refused.
    with pytest.raises(ConfigError, match="initialTimestamp` is not supported yet"):
        require_supported(k)
    whole = {**SAMPLES["kinesis"], "target": {**SAMPLES["kinesis"]["target"]}}
    whole["target"]["streamChanges"] = {
        n: v for n, v in whole["target"]["streamChanges"].items() if n != "initialTimestamp"
    }
    require_supported(parse(whole))
    require_supported(k, streaming=False)  # validate compares tables: no stream needed


def test_s3_export_source_is_typed_and_supported() -> None:
    cfg = parsed("s3-export")
    e = cfg.source.s3_export
    assert e is not None and e.bucket == "exports" and e.use_path_style_access is True
    assert e.table_description.key_schema == (("id", "HASH"),)
    assert e.table_description.read_capacity_units == 5
    assert cfg.source.table == "s3-export-0123-abcd"  # names its savepoint
    require_supported(cfg, streaming=False)  # loaded by export.py (tests/test_export.py)


def test_flattened_alternator_keys() -> None:
    """Their later versions put the Alternator settings directly in a `type: alternator` side."""
    flat = {k: v for k, v in ALT_BLOCK.items()}
    cfg = parse({"source": dynamo_source(), "target": alternator_target(**flat)})
    assert cfg.target.alternator is not None and cfg.target.alternator.rack == "rack1"
    assert cfg.target.max_items_per_batch == 50
    src = parsed("flat-alternator")
    assert src.source.alternator == AlternatorSettings(datacenter="dc2")
    assert any("`source.maxItemsPerBatch` is accepted and ignored" in w for w in src.warnings)


@pytest.mark.parametrize(
    ("target_extra", "expected"),
    [
        ({"type": "dynamodb", "datacenter": "dc1"}, "`target.datacenter` is an Alternator setting"),
        ({"rack": "r1"}, "`target.rack` is set without `datacenter`"),
        ({"alternator": {"maxConnections": 0}}, "`target.alternator.maxConnections` is 0"),
        (
            {"alternator": {"compression": "yes"}},
            "`target.alternator.compression` must be true or false",
        ),
        ({"alternator": {"maxConnection": 5}}, "did you mean `maxConnections`"),
        (
            {"datacenter": "a", "alternator": {"rack": "b"}},
            "given both here and under `alternator:`",
        ),
        ({"maxItemsPerBatch": 20, "alternator": {"maxItemsPerBatch": 30}}, "keep one of the two"),
        ({"streamChanges": {"type": "kafka"}}, "`target.streamChanges.type` is 'kafka'"),
        ({"streamChanges": {"type": "kinesis", "streamArn": "orders"}}, "not a Kinesis stream ARN"),
        ({"maxMapTasks": 0}, "`target.maxMapTasks` is 0"),
    ],
)
def test_bad_compat_values_name_key(target_extra: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse({"source": dynamo_source(), "target": alternator_target(**target_extra)})
    assert expected in str(e.value)


@pytest.mark.parametrize(
    ("top", "expected"),
    [
        ({"skipSegments": "1,2"}, "`skipSegments` must be a list of segment numbers"),
        ({"skipSegments": [-1]}, "`skipSegments` must be a list"),
        ({"savepoints": {"target": {"type": "s3", "bucket": "b"}}}, "not supported yet"),
        (
            {"savepoints": {"path": "/a", "target": {"type": "filesystem", "path": "/b"}}},
            "give only one",
        ),
        (
            {"validation": {"copyMissingRows": "yes"}},
            "`validation.copyMissingRows` must be true or false",
        ),
        ({"skipTokenRange": []}, "did you mean `skipTokenRanges`"),
    ],
)
def test_bad_top_level_values(top: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse({"source": dynamo_source(), "target": alternator_target(), **top})
    assert expected in str(e.value)


def test_skip_segments_must_fit_the_scan() -> None:
    cfg = parse(
        {
            "source": dynamo_source(scanSegments=3),
            "target": alternator_target(),
            "skipSegments": [3],
        }
    )
    plan = plan_scan(cfg, {})
    with pytest.raises(ConfigError, match=r"names segment 3 but the scan has 3 segments"):
        skipped_segments(cfg, plan.total_segments)


def test_target_max_map_tasks_sets_the_writers() -> None:
    cfg = parse(
        {"source": dynamo_source(scanSegments=4), "target": alternator_target(maxMapTasks=3)}
    )
    assert plan_scan(cfg, {}).writers == 3
    default = parse({"source": dynamo_source(scanSegments=4), "target": alternator_target()})
    assert plan_scan(default, {}).writers == 8


def test_replay_tuning_from_streaming_keys() -> None:
    from alternator_migrator.pipeline.replay import tuning

    cfg = parsed("everything")
    assert tuning(cfg) == {
        "max_idle_sleep": 2.0,
        "parallel_reads": 4,
        "records_per_poll": 500,
        "records_per_second": 5000,
        "max_consecutive_errors": 5,
    }
    assert tuning(parsed("stream-mapping")) == {}


# --------------------------------------------------------------------------- secrets


SECRET = "wJalrXUtnFEMIK7MDENGbPxRfiCYSECRET"


@pytest.mark.parametrize(
    "credentials_yaml",
    [
        f"    accessKey: AKID\n    secretKey {SECRET}\n",  # missing colon
        f"    accessKey: AKID\n    secretKey={SECRET}\n",  # = instead of :
        f"    accessKey: AKID\n    secretKey:{SECRET}\n",  # no space after the colon
        f"    {{accessKey: AKID, secretKey {SECRET}}}\n",  # flow style
        f"    accessKey: AKID\n    secretKey: [{SECRET}]\n",  # a list, not a string
        f"    accessKey: AKID\n    secretKey: {{{SECRET}: 1}}\n",  # a mapping
    ],
)
def test_a_typo_next_to_a_secret_never_prints_it(tmp_path: Path, credentials_yaml: str) -> None:
    if credentials_yaml.startswith("    {"):
        creds = "  credentials: " + credentials_yaml.strip() + "\n"
    else:
        creds = "  credentials:\n" + credentials_yaml
    msg = _error_with_source_credentials(tmp_path, creds)
    assert SECRET not in msg and SECRET[:12] not in msg, msg
    # Either YAML itself cannot read it (its message quotes no text) or the key is unknown.
    assert "source.credentials" in msg or "malformed YAML at line" in msg, msg
    assert "\n" not in msg


def _error_with_source_credentials(tmp_path: Path, creds: str) -> str:
    """``load``'s error for a config whose source has ``creds`` (its whole credentials block)."""
    p = tmp_path / "c.yaml"
    p.write_text(
        "source:\n  type: dynamodb\n  table: t\n  region: r\n"
        + creds
        + "target:\n  type: dynamodb\n  table: t\n  region: r\n"
    )
    with pytest.raises(ConfigError) as e:
        load(p)
    return str(e.value)


def test_unknown_key_position_is_given_instead_of_its_text(tmp_path: Path) -> None:
    msg = _error_with_source_credentials(
        tmp_path, f"  credentials: {{accessKey: AKID, secretKey={SECRET}}}\n"
    )
    assert "line 5, column 34" in msg
    assert "did you mean `secretKey`" in msg
    assert "need `: `" in msg  # glued to its value: the colon is the fix


def test_a_misspelled_key_beside_a_secret_is_told_its_spelling(tmp_path: Path) -> None:
    msg = _error_with_source_credentials(
        tmp_path, f"  credentials:\n    accessKey: AKID\n    secretKy: {SECRET}\n"
    )
    assert SECRET not in msg and "secretKy" not in msg
    assert "line 7, column 5" in msg and msg.endswith("did you mean `secretKey`?"), msg
    assert "need `: `" not in msg  # its colon is there: only the spelling is wrong


def test_a_secret_glued_to_a_key_outside_credentials_is_not_echoed(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text(
        "source:\n  type: dynamodb\n  table: t\n  region: r\n"
        f"  secretKey {SECRET}:\ntarget:\n  type: dynamodb\n  table: t\n  region: r\n"
    )
    with pytest.raises(ConfigError) as e:
        load(p)
    assert SECRET not in str(e.value) and "line 5" in str(e.value)


def test_plain_unknown_keys_are_still_named(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"`source.scanSegmentz` is not a known key; did you mean `scanSegments`"
    ):
        parse({"source": dynamo_source(scanSegmentz=3), "target": alternator_target()})


# --------------------------------------------------------------------------- the file itself


def test_non_utf8_config_is_one_clear_error(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_bytes(b"source:\n  type: dynamodb\n  table: caf\xe9\n")
    with pytest.raises(ConfigError, match=r"is not UTF-8 text \(byte 0xe9 at line 3\); save"):
        load(p)


def test_oversized_config_is_refused_before_parsing(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_bytes(b"# " + b"x" * MAX_CONFIG_BYTES + b"\n")
    with pytest.raises(ConfigError, match="too large for a config"):
        load(p)


def test_utf8_bom_is_accepted(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_bytes(
        b"\xef\xbb\xbf"
        + yaml.safe_dump({"source": dynamo_source(), "target": alternator_target()}).encode()
    )
    assert load(p).source.table == "Orders"


def test_ignored_keys_are_logged_once_each(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(SAMPLES["everything"]))
    with caplog.at_level("WARNING"):
        cfg = load(p)
    logged = [r.getMessage() for r in caplog.records if "accepted and ignored" in r.getMessage()]
    assert logged == list(cfg.warnings) and len(logged) == len(set(logged)) > 0
    assert any("`skipTokenRanges` is accepted and ignored: a Cassandra key" in w for w in logged)


# --------------------------------------------------------------------------- the users' table


def test_users_doc_table_is_current() -> None:
    doc = USERS_DOC.read_text()
    assert USERS_BEGIN in doc and USERS_END in doc
    assert with_users_table(doc) == doc, "run: python -m alternator_migrator.config.docgen --users"
    for row in THEIR_KEYS:
        assert f"| `{row.key}` | {row.fate} |" in users_table()


def test_every_ignored_key_has_a_reason_in_the_doc() -> None:
    doc = USERS_DOC.read_text()
    for row in THEIR_KEYS:
        if row.fate == IGNORED:
            assert re.search(rf"\| `{re.escape(row.key)}` \| ignored \| .+ \|", doc), row.key


# --------------------------------------------------------------------------- through the CLI


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "alternator_migrator", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")},
    )


@pytest.mark.parametrize("command", ["migrate", "validate", "status"])
def test_cli_config_errors_are_one_line_without_the_secret(tmp_path: Path, command: str) -> None:
    bad = tmp_path / "typo.yaml"
    bad.write_text(
        "source:\n  type: dynamodb\n  table: t\n  region: r\n"
        f"  credentials: {{accessKey: AKID, secretKey {SECRET}}}\n"
        "target:\n  type: dynamodb\n  table: t\n  region: r\n"
    )
    latin = tmp_path / "latin1.yaml"
    latin.write_bytes(b"source:\n  table: caf\xe9\n")
    for path, needle in ((bad, "line 5, column"), (latin, "is not UTF-8 text")):
        p = _cli(command, "--config", str(path))
        assert p.returncode == 2, p.stderr
        assert "Traceback" not in p.stderr and SECRET not in p.stderr + p.stdout
        lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and needle in lines[0], p.stderr
