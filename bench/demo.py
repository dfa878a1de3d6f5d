"""`make demo`: a live migration on local servers, the way the Scylla Migrator blog tested it.

moto plays the DynamoDB source (it has Streams), dynalite the target. A sample table is loaded,
the migrator copies it and replays its stream while loadgen keeps mutating it, the load stops,
the migrator catches up and exits, and `validate` confirms the two tables are identical.
Everything it writes stays under .demo/ in the repository; the servers are always stopped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from alternator_migrator.localservers import Server, start_dynalite, start_moto  # noqa: E402

DEMO = ROOT / ".demo"
TABLE = "demo-items"
KEYS = 3000
LOAD_SECONDS = 30
CAUGHT_UP_SECONDS = 10


def banner(text: str) -> None:
    print(f"\n=== {text} ===", flush=True)


def cli(*args: str) -> list[str]:
    # Text logs: the children write into a pipe, where the CLI would otherwise choose JSON.
    return [sys.executable, "-m", "alternator_migrator", "--log-format", "text", *args]


def _relay(stream: IO[str], prefix: str) -> None:
    for line in stream:
        sys.stdout.write(f"{prefix} {line}")
        sys.stdout.flush()


CHILDREN: list[subprocess.Popen[str]] = []


def start(cmd: list[str], prefix: str) -> tuple[subprocess.Popen[str], threading.Thread]:
    """A child whose stdout and stderr are shown line by line, labelled by who wrote them."""
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT / "src")},
    )
    CHILDREN.append(proc)
    assert proc.stdout is not None
    relay = threading.Thread(target=_relay, args=(proc.stdout, prefix), daemon=True)
    relay.start()
    return proc, relay


def finish(proc: subprocess.Popen[str], relay: threading.Thread, timeout: float) -> int:
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.terminate()
        proc.wait(timeout=15)
        raise RuntimeError(f"{proc.args!r} did not finish within {timeout:.0f}s") from None
    relay.join(timeout=5)
    return rc


def run_step(cmd: list[str], prefix: str, timeout: float) -> int:
    proc, relay = start(cmd, prefix)
    return finish(proc, relay, timeout)


def write_config(source: Server, target: Server) -> Path:
    def endpoint(s: Server) -> dict[str, object]:
        return {"host": "http://127.0.0.1", "port": s.port}

    cfg = {
        "source": {
            "type": "dynamodb",
            "table": TABLE,
            "region": "us-east-1",
            "endpoint": endpoint(source),
            "credentials": {"accessKey": "demo", "secretKey": "demo"},
            "scanSegments": 4,
        },
        "target": {
            "type": "dynamodb",
            "table": TABLE,
            "region": "us-east-1",
            "endpoint": endpoint(target),
            "credentials": {"accessKey": "demo", "secretKey": "demo"},
            "streamChanges": True,
        },
        "savepoints": {"path": str(DEMO / "savepoints"), "intervalSeconds": 5},
        "validation": {"failuresToFetch": 10},
    }
    path = DEMO / "config.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def demo() -> int:
    # Fresh servers each time, so earlier savepoints and logs can only confuse.
    for old in ("savepoints", "logs"):
        shutil.rmtree(DEMO / old, ignore_errors=True)
    DEMO.mkdir(exist_ok=True)
    started = time.monotonic()
    banner("Starting a moto source (DynamoDB + Streams) and a dynalite target on loopback")
    source = start_moto(DEMO / "logs")
    target: Server | None = None
    try:
        target = start_dynalite(DEMO / "logs")
        print(f"source: {source.url}   target: {target.url}   logs: {DEMO / 'logs'}", flush=True)

        banner(f"Creating the source table {TABLE!r} with {KEYS:,} items (loadgen --create)")
        load_args = ["--endpoint", source.url, "--table", TABLE, "--keys", str(KEYS)]
        if run_step(cli("loadgen", *load_args, "--create", "--duration", "0"), "[loadgen]", 120):
            print("demo: loading the source table failed", flush=True)
            return 1

        config = write_config(source, target)
        banner(f"Config written to {config.relative_to(ROOT)}")
        print(config.read_text(), end="", flush=True)

        banner(
            f"Migrating with streams while loadgen mutates the source at 10-25 ops/s for "
            f"{LOAD_SECONDS}s"
        )
        migrate = start(
            cli(
                "migrate",
                "--config",
                str(config),
                "--stop-when-caught-up",
                str(CAUGHT_UP_SECONDS),
            ),
            "[migrate]",
        )
        load = start(
            cli("loadgen", *load_args, "--rate", "10-25", "--duration", str(LOAD_SECONDS)),
            "[loadgen]",
        )
        load_rc = finish(*load, timeout=LOAD_SECONDS + 120)
        if load_rc:
            print(f"demo: loadgen exited with {load_rc}", flush=True)
            return 1
        banner(
            f"Load stopped; the migrator drains the stream and exits after {CAUGHT_UP_SECONDS}s "
            "without new records"
        )
        migrate_rc = finish(*migrate, timeout=300)
        if migrate_rc:
            print(f"demo: migrate exited with {migrate_rc}", flush=True)
            return 1

        banner("Validating: source and target compared both ways")
        validate_rc = run_step(cli("validate", "--config", str(config)), "[validate]", 300)
        elapsed = time.monotonic() - started
        if validate_rc != 0:
            print(f"\ndemo: FAILED: validate exited with {validate_rc} ({elapsed:.0f}s)")
            return 1
        print(
            f"\ndemo: OK: validate exited 0; the live migration converged ({elapsed:.0f}s)",
            flush=True,
        )
        return 0
    finally:
        for child in CHILDREN:
            if child.poll() is None:
                child.terminate()
                child.wait(timeout=15)
        banner("Stopping the servers")
        if target is not None:
            target.stop()
        source.stop()


if __name__ == "__main__":
    try:
        sys.exit(demo())
    except KeyboardInterrupt:
        sys.exit(130)
