"""Parsers of each config section: YAML data -> the frozen dataclasses of ``model``.

Every error names the file, the key path and the fix.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import re
from dataclasses import fields
from pathlib import Path
from typing import Any

from .compat import IGNORED_REASONS
from .model import (
    AlternatorSettings,
    AssumeRole,
    Check,
    Config,
    Credentials,
    Endpoint,
    KinesisStream,
    Rename,
    S3Export,
    Savepoints,
    SourceConfig,
    TableDescription,
    TableEntry,
    TargetConfig,
    Validation,
)
from .reader import Reader, kind_of, read_yaml

log = logging.getLogger(__name__)


def declared(r: Reader, cls: type, *only: str) -> dict[str, Any]:
    """The scalar keys ``cls`` declares with a ``check`` (or only the keys named), read from
    ``r`` with that kind and range; keys not given are left out, so the field's default holds."""
    out: dict[str, Any] = {}
    for f in fields(cls):
        check: Check | None = f.metadata.get("check")
        key = f.metadata.get("key")
        if check is None or key is None or (only and key not in only):
            continue
        if check.kind == "int":
            assert check.minimum is not None
            maximum = None if check.maximum is None else int(check.maximum)
            v: Any = r.int_(key, minimum=int(check.minimum), maximum=maximum)
        elif check.kind == "float":
            assert check.minimum is not None and check.maximum is not None
            v = r.float_(key, minimum=check.minimum, maximum=check.maximum)
        elif check.kind == "bool":
            v = r.opt_bool(key)
        else:
            v = r.str_(key)
        if v is not None:
            out[f.name] = v
    return out


def _endpoint(r: Reader) -> Endpoint | None:
    e = r.child("endpoint")
    if e is None:
        return None
    host = e.str_("host", required=True)
    endpoint = Endpoint(host=host or "", **declared(e, Endpoint))
    e.done()
    return endpoint


def _credentials(r: Reader) -> tuple[Credentials | None, AssumeRole | None]:
    c = r.child("credentials")
    if c is None:
        return None, None
    access = c.str_("accessKey")
    secret = c.str_("secretKey")
    token = c.str_("sessionToken")
    role: AssumeRole | None = None
    a = c.child("assumeRole")
    if a is not None:
        arn = a.str_("arn", required=True)
        assert arn is not None
        role = AssumeRole(arn=arn, **declared(a, AssumeRole))
        a.done()
    c.done()
    if (access is None) != (secret is None):
        missing = "secretKey" if secret is None else "accessKey"
        c.fail(c.key(missing), "is missing", "give both accessKey and secretKey, or neither")
    if access is None or secret is None:
        return None, role
    return Credentials(
        access_key=access, secret_key=secret, session_token=token, assume_role=role
    ), role


S3_EXPORT = "dynamodb-s3-export"
_TYPES = ("dynamodb", "dynamo", "alternator")


def _side_type(r: Reader, *, source: bool) -> str:
    t = r.str_("type", required=True)
    assert t is not None
    if source and t.lower() == S3_EXPORT:
        return S3_EXPORT
    if t.lower() not in _TYPES:
        r.fail(r.key("type"), f"is {t!r}, not supported", "use `dynamodb` or `alternator`")
    return "alternator" if t.lower() == "alternator" else "dynamodb"


def _region(r: Reader, endpoint: Endpoint | None) -> str | None:
    region = r.str_("region")
    if region is None and endpoint is None:
        r.fail(r.key("region"), "is missing", "set `region` (or `endpoint` for a non-AWS server)")
    return region


_ALT_KEYS = [f.metadata["key"] for f in fields(AlternatorSettings)]
# `maxItemsPerBatch` directly in a section is this tool's own target key (same meaning), so it
# is not taken for a flattened Alternator setting.
_FLAT_ALT_KEYS = [k for k in _ALT_KEYS if k != "maxItemsPerBatch"]


def _alternator(r: Reader, kind: str) -> AlternatorSettings | None:
    """The `alternator` block (their 2.0 nesting) or, for `type: alternator`, the same keys at
    the section's top level (their later flattening)."""
    flat = [k for k in _FLAT_ALT_KEYS if r.has(k)]
    block = r.child("alternator")
    if flat and kind != "alternator":
        r.fail(
            r.key(flat[0]),
            "is an Alternator setting",
            "use `type: alternator` or put it under `alternator:`",
        )
    if block is not None and flat:
        r.fail(
            r.key(flat[0]),
            "is given both here and under `alternator:`",
            "keep one of the two places",
        )
    if block is None and not flat:
        return None
    a = block or r
    given = declared(a, AlternatorSettings)
    if "rack" in given and "datacenter" not in given:
        a.fail(a.key("rack"), "is set without `datacenter`", "add `datacenter` too")
    # In a section (flat form) `maxItemsPerBatch` is the target's own key, not this setting.
    batch = a.int_("maxItemsPerBatch", minimum=1, maximum=100) if block is not None else None
    settings = AlternatorSettings(**given, max_items_per_batch=batch)
    if block is not None:
        block.done()
    else:
        # Flat keys are accepted, not "known": the hint list stays the section's own keys.
        r.known = [k for k in r.known if k not in _FLAT_ALT_KEYS]
        r.accepted.update(flat)
    return settings


def _side(r: Reader, *, source: bool, multi: bool = False) -> dict[str, Any]:
    """The keys a source and a target share."""
    kind = _side_type(r, source=source)
    table = r.str_("table", required=kind != S3_EXPORT and not multi)
    if multi and table is not None:
        r.fail(
            r.key("table"),
            "is given with a list or discovery of tables",
            "leave it out: each table of `tables:` (or `source.tablesMatching`/`tablesTagged`) "
            "names its own",
        )
    endpoint = _endpoint(r)
    region = _region(r, endpoint)
    creds, role = _credentials(r)
    alternator = _alternator(r, kind) if kind != S3_EXPORT else None
    return {
        "table": table or "",
        "type": kind,
        "region": region,
        "endpoint": endpoint,
        "credentials": creds,
        "assume_role": role,
        "remove_consumed_capacity": r.bool_("removeConsumedCapacity", kind == "alternator"),
        "alternator": alternator,
    }


def _pairs(r: Reader, name: str, first: str, second: str) -> tuple[tuple[str, str], ...]:
    raw = r.get(name)
    if not isinstance(raw, list) or not raw:
        r.fail(
            r.key(name),
            f"must be a non-empty list, got {kind_of(raw)}",
            f"list `{{{first}, {second}}}` items",
        )
    out = []
    for i, item in enumerate(raw):
        ir = Reader(r.path, f"{r.key(name)}[{i}]", item, r.warnings)
        a, b = ir.str_(first, required=True), ir.str_(second, required=True)
        ir.done()
        assert a is not None and b is not None
        out.append((a, b))
    return tuple(out)


def _s3_export(r: Reader) -> S3Export:
    bucket, manifest = r.str_("bucket", required=True), r.str_("manifestKey", required=True)
    path_style = r.opt_bool("usePathStyleAccess")
    td = r.child("tableDescription")
    if td is None:
        r.fail(r.key("tableDescription"), "is missing", "describe the exported table's keys")
    desc = TableDescription(
        attribute_definitions=_pairs(td, "attributeDefinitions", "name", "type"),
        key_schema=_pairs(td, "keySchema", "name", "type"),
        billing_mode=td.str_("billingMode"),
    )
    pt = td.child("provisionedThroughput")
    if pt is not None:
        desc = dataclasses.replace(
            desc,
            read_capacity_units=pt.int_("readCapacityUnits", minimum=1),
            write_capacity_units=pt.int_("writeCapacityUnits", minimum=1),
        )
        pt.done()
    td.done()
    _check_keys(td, desc)
    r.done()
    assert bucket is not None and manifest is not None
    return S3Export(bucket, manifest, desc, path_style)


def _check_keys(td: Reader, desc: TableDescription) -> None:
    """The checks CreateTable would make, said in the config's terms."""
    types = dict(desc.attribute_definitions)
    for i, (_, t) in enumerate(desc.attribute_definitions):
        if t.upper() not in ("S", "N", "B"):
            td.fail(f"{td.key('attributeDefinitions')}[{i}].type", f"is {t!r}", "use S, N or B")
    for name, _ in desc.key_schema:
        if name not in types:
            td.fail(
                td.key("keySchema"),
                f"names {name!r}, which is not in attributeDefinitions",
                "define its type there",
            )
    if [t.upper() for _, t in desc.key_schema] not in (["HASH"], ["HASH", "RANGE"]):
        td.fail(
            td.key("keySchema"),
            "must be one HASH key, optionally followed by one RANGE key",
            "fix the key types",
        )


def _export_table_name(manifest_key: str) -> str:
    """A name for an export's savepoint: its id (`.../AWSDynamoDB/<id>/manifest-summary.json`),
    unique per export (an export has no table to name it by)."""
    parts = manifest_key.split("/")
    ident = parts[-2] if len(parts) >= 2 else hashlib.sha256(manifest_key.encode()).hexdigest()[:16]
    return "s3-export-" + "".join(c if c.isalnum() or c in "-_." else "_" for c in ident)


def _export_snapshot_keys(r: Reader) -> dict[str, Any]:
    """The keys of a DynamoDB source that take its snapshot from an export (one-step mode)."""
    snap = (r.str_("snapshotFrom") or "scan").lower()
    bucket, prefix, arn = r.str_("exportBucket"), r.str_("exportPrefix"), r.str_("exportArn")
    if snap not in ("scan", "export"):
        r.fail(r.key("snapshotFrom"), f"is {snap!r}", "use `scan` or `export`")
    if snap == "scan":
        for name, v in (("exportBucket", bucket), ("exportPrefix", prefix), ("exportArn", arn)):
            if v is not None:
                r.fail(r.key(name), "only applies to an export", "add `snapshotFrom: export`")
    elif str(r.data.get("type", "")).lower() == "alternator":
        r.fail(r.key("snapshotFrom"), "is `export`, but Alternator has no export", "use `scan`")
    elif bucket is None and arn is None:
        r.fail(
            r.key("exportBucket"), "is missing", "set the S3 bucket to export to (or `exportArn`)"
        )
    return {
        "snapshot_from": snap,
        "export_bucket": bucket,
        "export_prefix": prefix,
        "export_arn": arn,
    }


# Their source keys that mean nothing here (`maxItemsPerBatch` only for `type: alternator`).
_SOURCE_IGNORED = [
    k.split(".", 1)[1]
    for k in IGNORED_REASONS
    if k.count(".") == 1 and k.startswith("source.") and k != "source.maxItemsPerBatch"
]


def _tags(r: Reader) -> tuple[tuple[str, str], ...]:
    t = r.child("tablesTagged")
    if t is None:
        return ()
    tags = []
    for k, v in t.data.items():
        if not isinstance(k, str) or not isinstance(v, str | int) or isinstance(v, bool):
            t.fail(
                t.key(str(k)), f"must be a tag value, got {kind_of(v)}", "write `team: payments`"
            )
        tags.append((k, str(v)))
        t.known.append(k)
    t.done()
    if not tags:
        r.fail(r.key("tablesTagged"), "is empty", "give at least one `tag: value`")
    return tuple(tags)


def _source(r: Reader, multi: bool = False) -> SourceConfig:
    common = _side(r, source=True, multi=multi)
    if common["type"] == S3_EXPORT:
        workers = declared(r, SourceConfig, "maxMapTasks")  # data files loaded at once
        export = _s3_export(r)
        common["table"] = _export_table_name(export.manifest_key)
        return SourceConfig(**common, **workers, s3_export=export)
    if common["alternator"] is not None and common["alternator"].max_items_per_batch is not None:
        r.warnings.append(
            f"{r.path}: `source.alternator.maxItemsPerBatch` is accepted and ignored: "
            f"{IGNORED_REASONS['source.alternator.maxItemsPerBatch']}"
        )
    cfg = SourceConfig(
        **common,
        **declared(r, SourceConfig),
        **_export_snapshot_keys(r),
        tables_tagged=_tags(r),
    )
    for k in _SOURCE_IGNORED:
        r.ignore(k)
    if common["type"] == "alternator":
        r.ignore("maxItemsPerBatch")  # their flattened Alternator setting
    r.done()
    return cfg


_STREAM_ON = ("dynamodb-streams", "dynamodb", "ddb")
_STREAM_OFF = ("disabled", "none", "off")
_KINESIS = ("kinesis", "kinesis-data-streams")


def _stream_changes(r: Reader) -> tuple[bool, KinesisStream | None]:
    raw = r.data.get("streamChanges")
    if not isinstance(raw, dict):
        return r.bool_("streamChanges", False), None
    s = r.child("streamChanges")
    assert s is not None
    t = (s.str_("type", required=True) or "").lower()
    if t in _STREAM_ON or t in _STREAM_OFF:
        s.done()
        return t in _STREAM_ON, None
    if t not in _KINESIS:
        s.fail(s.key("type"), f"is {t!r}", "use dynamodb-streams, disabled or kinesis")
    arn = s.str_("streamArn", required=True)
    assert arn is not None
    if not re.fullmatch(r"arn:aws[a-z-]*:kinesis:[a-z0-9-]+:\d{12}:stream/[^:/\s]+", arn):
        s.fail(
            s.key("streamArn"),
            f"is {arn!r}, not a Kinesis stream ARN",
            "use arn:aws:kinesis:REGION:ACCOUNT:stream/NAME",
        )
    kinesis = KinesisStream(arn, s.str_("appName"), s.str_("initialTimestamp"))
    s.done()
    return True, kinesis


def _target(r: Reader, multi: bool = False) -> TargetConfig:
    common = _side(r, source=False, multi=multi)
    billing = r.str_("billingMode")
    if billing is not None and billing.upper() not in ("PROVISIONED", "PAY_PER_REQUEST"):
        r.fail(r.key("billingMode"), f"is {billing!r}", "use PROVISIONED or PAY_PER_REQUEST")
    batch = r.int_("maxItemsPerBatch", minimum=1, maximum=100)
    alt: AlternatorSettings | None = common["alternator"]
    if alt is not None and alt.max_items_per_batch is not None:
        if batch is not None and batch != alt.max_items_per_batch:
            r.fail(
                r.key("maxItemsPerBatch"),
                f"is {batch} but the Alternator setting says {alt.max_items_per_batch}",
                "keep one of the two",
            )
        batch = alt.max_items_per_batch
    stream, kinesis = _stream_changes(r)
    cfg = TargetConfig(
        **common,
        stream_changes=stream,
        kinesis=kinesis,
        billing_mode=billing.upper() if billing else None,
        max_items_per_batch=batch if batch is not None else 25,
        **declared(r, TargetConfig),
    )
    r.ignore("scanSegments")
    r.done()
    return cfg


def _savepoints(top: Reader) -> Savepoints:
    sp = top.child("savepoints")
    if sp is None:
        return Savepoints()
    sp_path = sp.str_("path")
    interval = declared(sp, Savepoints, "intervalSeconds")
    dest = sp.child("target")
    # Their alternative spelling of `path`: accepted, not advertised in the hint list.
    sp.known.remove("target")
    if dest is not None:
        kind = dest.str_("type", required=True)
        if kind != "filesystem":
            dest.fail(
                dest.key("type"),
                f"is {kind!r}: savepoints in object storage are not supported yet",
                "use `path:` (a local directory)",
            )
        if sp_path is not None:
            sp.fail(sp.key("target"), "is given with `path`", "give only one of the two")
        sp_path = dest.str_("path", required=True)
        dest.done()
        sp.accepted.add("target")
    sp.ignore("enableParquetFileTracking")
    sp.done()
    return Savepoints(path=sp_path or Savepoints().path, **interval)


def _renames(top: Reader) -> tuple[Rename, ...]:
    raw = top.get("renames")
    if raw is None:
        return ()
    if not isinstance(raw, list):
        top.fail(
            top.key("renames"),
            f"must be a list, got {kind_of(raw)}",
            "write `- {from: a, to: b}` items",
        )
    renames: list[Rename] = []
    for i, item in enumerate(raw):
        rr = Reader(top.path, f"{top.key('renames')}[{i}]", item, top.warnings)
        frm, to = rr.str_("from", required=True), rr.str_("to", required=True)
        rr.done()
        assert frm is not None and to is not None
        renames.append(Rename(from_=frm, to=to))
    targets = [r.to for r in renames]
    if len(set(targets)) != len(targets):
        top.fail(
            top.key("renames"), "maps two attributes to one name", "give each `to` a distinct name"
        )
    return tuple(renames)


def _validation(top: Reader) -> Validation:
    v = top.child("validation")
    if v is None:
        return Validation()
    given = declared(v, Validation)
    for k in IGNORED_REASONS:
        if k.startswith("validation."):
            v.ignore(k.split(".", 1)[1])
    v.done()
    return Validation(**given)


def _skip_segments(top: Reader) -> tuple[int, ...]:
    raw = top.get("skipSegments")
    if raw is None:
        return ()
    if not isinstance(raw, list) or any(
        isinstance(n, bool) or not isinstance(n, int) or n < 0 for n in raw
    ):
        top.fail(
            top.key("skipSegments"),
            f"must be a list of segment numbers, got {kind_of(raw)}",
            "write `[0, 2]`",
        )
    return tuple(sorted(set(raw)))


def parse(data: Any, path: str = "<memory>") -> Config:
    """Build a Config from already-loaded YAML data."""
    warnings: list[str] = []
    top = Reader(path, "", data if data is not None else {}, warnings)
    s = top.child("source")
    t = top.child("target")
    if s is None:
        top.fail("source", "is missing", "add a `source:` section with `type: dynamodb`")
    if t is None:
        top.fail("target", "is missing", "add a `target:` section with `type: dynamodb`")
    multi = top.has("tables") or any(s.has(k) for k in ("tablesMatching", "tablesTagged"))
    source = _source(s, multi)
    target = _target(t, multi)
    if source.s3_export is not None and multi:
        top.fail("tables", "is given with an export source", "an export holds one table")
    savepoints = _savepoints(top)
    renames = _renames(top)
    validation = _validation(top)
    skip = _skip_segments(top)
    tables = _tables(top)
    top.ignore("skipTokenRanges")
    top.ignore("skipParquetFiles")
    cfg = Config(
        source=source,
        target=target,
        savepoints=savepoints,
        renames=renames,
        validation=validation,
        skip_segments=skip,
        tables=tables,
        **declared(top, Config),
        path=path,
        warnings=tuple(warnings),
    )
    top.done()
    return cfg


def _tables(top: Reader) -> tuple[TableEntry, ...]:
    raw = top.get("tables")
    if raw is None:
        return ()
    if not isinstance(raw, list) or not raw:
        top.fail(
            "tables",
            f"must be a non-empty list, got {kind_of(raw)}",
            "list table names, or `{source: NAME, target: NAME}` items",
        )
    out: list[TableEntry] = []
    for i, item in enumerate(raw):
        where = f"tables[{i}]"
        if isinstance(item, str) and item:
            out.append(TableEntry(source=item, target=item))
            continue
        er = Reader(top.path, where, item, top.warnings)
        name = er.str_("source", required=True) or ""
        entry = TableEntry(
            source=name,
            target=er.str_("target") or name,
            renames=_renames(er) if er.has("renames") else None,
            skip_segments=_skip_segments(er) if er.has("skipSegments") else None,
            **declared(er, TableEntry),
        )
        er.done()
        out.append(entry)
    for side in ("source", "target"):
        names = [getattr(e, side) for e in out]
        dup = next((n for n in names if names.count(n) > 1), None)
        if dup is not None:
            top.fail("tables", f"names {side} table {dup!r} twice", "list each table once")
    return tuple(out)


def load(path: str | Path) -> Config:
    """Read and check a config file; log one warning per accepted-and-ignored key."""
    p = Path(path)
    cfg = parse(read_yaml(p), str(p))
    for w in cfg.warnings:
        log.warning(w)
    return cfg
