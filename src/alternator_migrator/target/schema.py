"""Describe the source table; create the target with the same schema, or check it matches."""

from __future__ import annotations

import logging
import time
from typing import Any
from urllib.parse import urlsplit

from ..aws.client import DynamoClient, DynamoError, RetryPolicy, preflight
from ..aws.retry import wait
from ..config import Config, SourceConfig, TargetConfig
from ..errors import SchemaError

log = logging.getLogger(__name__)


def describe_source(client: DynamoClient, table: str) -> dict[str, Any]:
    try:
        desc: dict[str, Any] = preflight(client, "DescribeTable", {"TableName": table})["Table"]
    except DynamoError as e:
        if e.code == "ResourceNotFoundException":
            raise SchemaError(
                f"source table {table!r} does not exist at {client.url}; "
                "check `source.table` and `source.endpoint`/`source.region`"
            ) from None
        raise _side_error("source", table, client, "DescribeTable", e) from None
    return desc


def _side_error(
    side: str, table: str, client: DynamoClient, op: str, e: DynamoError
) -> SchemaError:
    return SchemaError(
        f"{side} table {table!r} at {client.url}: {op} failed: {e.code}: {e.message}"
    )


def _location(side: SourceConfig | TargetConfig) -> tuple[str, str, str]:
    """Where a table lives, spelled one way: scheme and host in lower case, default port
    explicit, no trailing slash; the region (moto keeps one set of tables per region)."""
    if side.endpoint is None:
        return ("aws", side.region or "", side.table)
    u = urlsplit(side.endpoint.url)
    port = u.port or (443 if u.scheme.lower() == "https" else 80)
    where = f"{u.scheme.lower()}://{(u.hostname or '').lower()}:{port}{u.path.rstrip('/')}"
    return (where, side.region or "us-east-1", side.table)


def refuse_same_table(cfg: Config) -> None:
    """Source and target named as one table: copying it onto itself would replay its own
    writes forever. Checked from the config, before any request."""
    if _location(cfg.source) == _location(cfg.target):
        raise SchemaError(
            f"source and target are the same table ({cfg.target.table!r} at "
            f"{_location(cfg.target)[0]}); point `target.table` or `target.endpoint` elsewhere"
        )


def refuse_same_identity(src: dict[str, Any], tgt: dict[str, Any], cfg: Config) -> None:
    """The same check by what the endpoints answer (two spellings of one host, an alias)."""
    same_id = src.get("TableId") is not None and src.get("TableId") == tgt.get("TableId")
    same_arn = (
        src.get("TableArn") is not None
        and src.get("TableArn") == tgt.get("TableArn")
        and src.get("CreationDateTime") == tgt.get("CreationDateTime")
    )
    if same_id or same_arn:
        raise SchemaError(
            f"source and target are the same table ({src.get('TableArn')}, described alike "
            "by both endpoints); point `target.table` or `target.endpoint` elsewhere"
        )


def key_names(desc: dict[str, Any]) -> list[str]:
    """Key attribute names, hash key first."""
    ks = sorted(desc["KeySchema"], key=lambda k: 0 if k["KeyType"] == "HASH" else 1)
    return [k["AttributeName"] for k in ks]


def key_signature(
    desc: dict[str, Any], renames: dict[str, str] | None = None
) -> list[tuple[str, str, str]]:
    types = {a["AttributeName"]: a["AttributeType"] for a in desc.get("AttributeDefinitions", [])}
    rn = renames or {}
    return sorted(
        (
            rn.get(k["AttributeName"], k["AttributeName"]),
            k["KeyType"],
            types.get(k["AttributeName"], "?"),
        )
        for k in desc["KeySchema"]
    )


def _billing_mode(src: dict[str, Any], cfg: Config) -> str:
    if cfg.target.billing_mode:
        return cfg.target.billing_mode
    return str(src.get("BillingModeSummary", {}).get("BillingMode", "PROVISIONED"))


def _throughput(pt: dict[str, Any] | None) -> dict[str, int]:
    # On-demand sources report 0; a provisioned target needs at least 1.
    pt = pt or {}
    return {
        "ReadCapacityUnits": max(1, int(pt.get("ReadCapacityUnits") or 0) or 5),
        "WriteCapacityUnits": max(1, int(pt.get("WriteCapacityUnits") or 0) or 5),
    }


def create_table_request(src: dict[str, Any], cfg: Config) -> dict[str, Any]:
    """The CreateTable body for the target: keys, attribute types, indexes, billing."""
    rn = cfg.rename_map()

    def ren_keys(ks: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [
            {
                "AttributeName": rn.get(k["AttributeName"], k["AttributeName"]),
                "KeyType": k["KeyType"],
            }
            for k in ks
        ]

    def projection(p: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {"ProjectionType": p.get("ProjectionType", "ALL")}
        if p.get("NonKeyAttributes"):
            out["NonKeyAttributes"] = [rn.get(a, a) for a in p["NonKeyAttributes"]]
        return out

    billing = _billing_mode(src, cfg)
    req: dict[str, Any] = {
        "TableName": cfg.target.table,
        "KeySchema": ren_keys(src["KeySchema"]),
        "AttributeDefinitions": [
            {
                "AttributeName": rn.get(a["AttributeName"], a["AttributeName"]),
                "AttributeType": a["AttributeType"],
            }
            for a in src["AttributeDefinitions"]
        ],
        "BillingMode": billing,
    }
    if billing == "PROVISIONED":
        req["ProvisionedThroughput"] = _throughput(src.get("ProvisionedThroughput"))
    gsis = []
    for g in src.get("GlobalSecondaryIndexes", []) or []:
        gsi: dict[str, Any] = {
            "IndexName": g["IndexName"],
            "KeySchema": ren_keys(g["KeySchema"]),
            "Projection": projection(g.get("Projection", {})),
        }
        if billing == "PROVISIONED":
            gsi["ProvisionedThroughput"] = _throughput(g.get("ProvisionedThroughput"))
        gsis.append(gsi)
    if gsis:
        req["GlobalSecondaryIndexes"] = gsis
    lsis = [
        {
            "IndexName": li["IndexName"],
            "KeySchema": ren_keys(li["KeySchema"]),
            "Projection": projection(li.get("Projection", {})),
        }
        for li in src.get("LocalSecondaryIndexes", []) or []
    ]
    if lsis:
        req["LocalSecondaryIndexes"] = lsis
    return req


def _wait_active(client: DynamoClient, table: str, timeout: float = 600.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        desc: dict[str, Any] = client.call("DescribeTable", {"TableName": table})["Table"]
        if desc.get("TableStatus") == "ACTIVE":
            return desc
        if time.monotonic() > deadline:
            raise SchemaError(f"target table {table!r} did not become ACTIVE within {timeout:.0f}s")
        # A stop must not wait out the 600 s: nothing has been written yet, so stopping is free.
        wait(client.stop, 1.0, f"target table {table!r} becomes ACTIVE")


def _copy_ttl(source: DynamoClient, target: DynamoClient, src_table: str, cfg: Config) -> None:
    try:
        ttl = source.call("DescribeTimeToLive", {"TableName": src_table})["TimeToLiveDescription"]
    except DynamoError as e:
        log.warning("Could not read the source TTL setting (%s); TTL not copied", e.code)
        return
    if ttl.get("TimeToLiveStatus") not in ("ENABLED", "ENABLING"):
        return
    attr = cfg.rename_map().get(ttl["AttributeName"], ttl["AttributeName"])
    try:
        target.call(
            "UpdateTimeToLive",
            {
                "TableName": cfg.target.table,
                "TimeToLiveSpecification": {"Enabled": True, "AttributeName": attr},
            },
        )
        log.info("Enabled TTL on target attribute %r", attr)
    except DynamoError as e:
        if e.code in ("UnknownOperationException", "ValidationException") or e.status == 501:
            log.warning(
                "Target does not support TTL (%s); items will be copied with attribute %r "
                "but will not expire on the target",
                e.code,
                attr,
            )
            return
        raise


def key_mismatch(src: dict[str, Any], existing: dict[str, Any], cfg: Config) -> str | None:
    """Why an existing target table cannot take the source's items (None: its keys match).
    Read-only: `plan` asks the same question `ensure_target` does."""
    want, have = key_signature(src, cfg.rename_map()), key_signature(existing)
    if want == have:
        return None
    return (
        f"target table {cfg.target.table!r} exists with key schema {have}, but the source has "
        f"{want}; drop the target table or point `target.table` at a new name"
    )


def ensure_target(
    source: DynamoClient, target: DynamoClient, src: dict[str, Any], cfg: Config
) -> dict[str, Any]:
    """Create the target like the source, or check an existing one has the same keys."""
    table = cfg.target.table
    try:
        existing: dict[str, Any] | None = preflight(target, "DescribeTable", {"TableName": table})[
            "Table"
        ]
    except DynamoError as e:
        if e.code != "ResourceNotFoundException":
            raise _side_error("target", table, target, "DescribeTable", e) from None
        existing = None
    if existing is not None:
        mismatch = key_mismatch(src, existing, cfg)
        if mismatch is not None:
            raise SchemaError(mismatch)
        log.info("Target table %r exists with a matching key schema", table)
        return existing
    req = create_table_request(src, cfg)
    log.info(
        "Creating target table %r (%s, %d GSI, %d LSI)",
        table,
        req["BillingMode"],
        len(req.get("GlobalSecondaryIndexes", [])),
        len(req.get("LocalSecondaryIndexes", [])),
    )
    try:
        target.call("CreateTable", req)
    except DynamoError as e:
        if e.code != "ResourceInUseException":  # created meanwhile by a concurrent run
            raise SchemaError(
                f"could not create target table {table!r}: {e.code}: {e.message}"
            ) from None
    desc = _wait_active(target, table)
    _copy_ttl(source, target, src["TableName"], cfg)
    return desc


_ONCE = RetryPolicy(base=0.1, cap=1.0, max_attempts=3, deadline=5.0)
WRITE_ISOLATION_TAG = "system:write_isolation"
_ISOLATION_MEANING = {
    "forbid_rmw": "no LWT; last write wins by the coordinator's clock",
    "only_rmw_uses_lwt": "LWT for conditional writes only; plain puts/deletes: last write wins",
    "unsafe_rmw": "no LWT; last write wins by the coordinator's clock",
    "always_use_lwt": "every write through LWT (Paxos): ordered whatever node takes it",
}


def write_isolation(target: DynamoClient, desc: dict[str, Any]) -> str | None:
    """The target table's `system:write_isolation` tag (Alternator), None where the endpoint
    does not expose one (DynamoDB, dynalite, a table without the tag: the server setting
    `alternator_write_isolation` then applies, which no API shows)."""
    arn = desc.get("TableArn")
    if not arn:
        return None
    try:
        tags = target.call("ListTagsOfResource", {"ResourceArn": arn}, retry=_ONCE).get("Tags")
    except DynamoError as e:
        log.debug("target ListTagsOfResource: %s", e)
        return None
    for t in tags or []:
        if isinstance(t, dict) and t.get("Key") == WRITE_ISOLATION_TAG:
            return str(t.get("Value"))
    return None


def ordering_line(target: DynamoClient, isolation: str | None) -> str:
    """One line: what the target promises and what ordering of one item's writes relies on."""
    if isolation is None:
        head = f"Target write isolation: not exposed (no {WRITE_ISOLATION_TAG} tag)"
    else:
        meaning = _ISOLATION_MEANING.get(isolation.lower(), "unknown mode")
        head = f"Target write isolation: {isolation} (tag {WRITE_ISOLATION_TAG}: {meaning})"
    aff = target.affinity
    if aff is not None:
        how = f"one coordinator per item ({aff.describe()})"
    elif target.discovered_nodes() > 1:
        how = (
            f"nothing: writes round-robin over {target.discovered_nodes()} nodes "
            "(test switch; one item's writes may be applied out of order)"
        )
    else:
        how = "the one endpoint (no node discovery)"
    return f"{head}; ordering relies on {how}"
