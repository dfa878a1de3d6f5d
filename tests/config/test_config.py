"""Config parsing: the Scylla Migrator's keys, defaults, and errors that name key, file and fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from alternator_migrator.config import Endpoint, load, parse
from alternator_migrator.errors import ConfigError

BASE = """
source:
  type: dynamodb
  table: Orders
  region: us-west-2
  credentials:
    accessKey: AKIDEXAMPLE
    secretKey: wJalrXUtnFEMI-super-secret
  scanSegments: 16
  readThroughput: 400
  throughputReadPercent: 0.8
  maxMapTasks: 4
target:
  type: dynamodb
  table: Orders
  region: us-west-2
  endpoint:
    host: http://scylla
    port: 8000
  credentials:
    accessKey: none
    secretKey: none
  streamChanges: true
  maxItemsPerBatch: 100
savepoints:
  path: /tmp/sp
  intervalSeconds: 60
renames:
  - from: old
    to: new
validation:
  compareTimestamps: false
  failuresToFetch: 10
  floatingPointTolerance: 0.001
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "config.yaml"
    p.write_text(text)
    return p


def test_full_scylla_migrator_config(tmp_path: Path) -> None:
    cfg = load(write(tmp_path, BASE))
    assert cfg.source.table == "Orders"
    assert cfg.source.scan_segments == 16
    assert cfg.source.read_throughput == 400
    assert cfg.source.throughput_read_percent == 0.8
    assert cfg.source.max_map_tasks == 4
    assert cfg.source.endpoint is None
    assert cfg.target.endpoint == Endpoint("http://scylla", 8000)
    assert cfg.target.endpoint.url == "http://scylla:8000"
    assert cfg.target.stream_changes is True
    assert cfg.target.max_items_per_batch == 100
    assert cfg.savepoints.interval_seconds == 60
    assert cfg.rename_map() == {"old": "new"}
    assert cfg.validation.failures_to_fetch == 10
    assert cfg.validation.floating_point_tolerance == 0.001


def test_defaults() -> None:
    cfg = parse(
        {
            "source": {"type": "dynamodb", "table": "a", "region": "eu-west-1"},
            "target": {
                "type": "alternator",
                "table": "b",
                "endpoint": {"host": "scylla", "port": 8000},
            },
        }
    )
    assert cfg.target.type == "alternator"
    assert cfg.target.endpoint is not None and cfg.target.endpoint.url == "http://scylla:8000"
    assert cfg.target.stream_changes is False
    assert cfg.target.max_items_per_batch == 25
    assert cfg.source.credentials is None  # the AWS default chain
    assert cfg.source.scan_segments is None


def test_secrets_never_in_repr(tmp_path: Path) -> None:
    cfg = load(write(tmp_path, BASE))
    text = repr(cfg) + str(cfg)
    assert "wJalrXUtnFEMI-super-secret" not in text
    assert "AKIDEXAMPLE" not in text


def test_fingerprint_ignores_secrets_but_not_tables(tmp_path: Path) -> None:
    a = load(write(tmp_path, BASE))
    b = load(write(tmp_path, BASE.replace("wJalrXUtnFEMI-super-secret", "other")))
    c = load(
        write(
            tmp_path,
            BASE.replace(
                "table: Orders\n  region: us-west-2\n  endpoint",
                "table: X\n  region: us-west-2\n  endpoint",
            ),
        )
    )
    assert a.fingerprint() == b.fingerprint()
    assert a.fingerprint() != c.fingerprint()


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "scanSegments: 16",
            "scanSegmets: 16",
            r"`source.scanSegmets` is not a known key; did you mean `scanSegments`",
        ),
        (
            "scanSegments: 16",
            "scanSegments: 0",
            r"`source.scanSegments` is 0, out of range; use a value from 1",
        ),
        ("scanSegments: 16", "scanSegments: many", r"`source.scanSegments` must be a whole number"),
        (
            "throughputReadPercent: 0.8",
            "throughputReadPercent: 2",
            r"`source.throughputReadPercent` is 2.*from 0.1 to 1.5",
        ),
        (
            "throughputReadPercent: 0.8",
            "throughputReadPercent: 0.05",
            r"`source.throughputReadPercent` is 0.05",
        ),
        (
            "streamChanges: true",
            "streamChanges: maybe",
            r"`target.streamChanges` must be true or false",
        ),
        ("maxItemsPerBatch: 100", "maxItemsPerBatch: 101", r"`target.maxItemsPerBatch` is 101"),
        (
            "  type: dynamodb\n  table: Orders\n  region: us-west-2\n  credentials",
            "  type: cassandra\n  table: Orders\n  region: us-west-2\n  credentials",
            r"`source.type` is 'cassandra', not supported",
        ),
        (
            "    secretKey: wJalrXUtnFEMI-super-secret\n",
            "",
            r"`source.credentials.secretKey` is missing",
        ),
        ("port: 8000", "port: 99999", r"`target.endpoint.port` is 99999"),
        ("intervalSeconds: 60", "intervalSecs: 60", r"did you mean `intervalSeconds`"),
    ],
)
def test_bad_values_name_key_and_fix(tmp_path: Path, old: str, new: str, expected: str) -> None:
    assert old in BASE
    p = write(tmp_path, BASE.replace(old, new, 1))
    with pytest.raises(ConfigError, match=expected) as e:
        load(p)
    assert str(p) in str(e.value)
    assert "super-secret" not in str(e.value)


def test_missing_sections_and_table(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="`target` is missing"):
        load(write(tmp_path, "source:\n  type: dynamodb\n  table: a\n  region: x\n"))
    with pytest.raises(ConfigError, match=r"`source\.table` is missing"):
        load(
            write(
                tmp_path,
                "source:\n  type: dynamodb\n  region: x\ntarget:\n  type: dynamodb\n  table: b\n  region: x\n",
            )
        )
    with pytest.raises(ConfigError, match=r"`target\.region` is missing"):
        load(
            write(
                tmp_path,
                "source:\n  type: dynamodb\n  table: a\n  region: x\ntarget:\n  type: dynamodb\n  table: b\n",
            )
        )


def test_malformed_yaml_names_line(tmp_path: Path) -> None:
    p = write(tmp_path, "source:\n  type: dynamodb\n table: [oops\n")
    with pytest.raises(ConfigError, match=r"malformed YAML at line \d+, column \d+"):
        load(p)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load(tmp_path / "nope.yaml")


def test_top_level_unknown_key(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match="`savepoint` is not a known key; did you mean `savepoints`"
    ):
        load(write(tmp_path, BASE.replace("savepoints:", "savepoint:")))


def test_duplicate_rename_targets(tmp_path: Path) -> None:
    text = BASE.replace(
        "renames:\n  - from: old\n    to: new\n",
        "renames:\n  - {from: a, to: z}\n  - {from: b, to: z}\n",
    )
    with pytest.raises(ConfigError, match="maps two attributes to one name"):
        load(write(tmp_path, text))
