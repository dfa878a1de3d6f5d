"""One real Spark standalone cluster (a master and a worker started here with ``spark-class``,
executors in their own processes) and one driver session on it, shared by every Spark test
module of the session: starting them costs tens of seconds."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from alternator_migrator.localservers import free_port

from ..conftest import ROOT
from ..helpers import eventually

# Each app takes one of the worker's two cores, so that two drivers can run at once.
APP_CONF = {"spark.cores.max": "1", "spark.executor.memory": "512m"}
APP_ARGS = [a for k, v in APP_CONF.items() for a in ("--conf", f"{k}={v}")]


@dataclass
class Cluster:
    """A Spark standalone master and one worker, separate JVMs on loopback."""

    url: str  # spark://127.0.0.1:PORT
    procs: list[subprocess.Popen[bytes]]
    env: dict[str, str]  # what a spark-submit or driver process needs to reach it
    ui: str = ""  # the master's web UI (http://127.0.0.1:PORT): /json lists workers and apps

    def stop(self) -> None:
        for p in reversed(self.procs):  # the worker first: it stops its executors
            p.terminate()
        for p in reversed(self.procs):
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)  # an executor JVM left in its group


def _distinct_ports(n: int) -> list[int]:
    ports: set[int] = set()
    while len(ports) < n:  # two free-port lookups can return the same port
        ports.add(free_port())
    return sorted(ports)


@pytest.fixture(scope="session")
def cluster(server_logs: Path) -> Iterator[Cluster]:
    # The test modules skip themselves without pyspark or Java; so does this, for any other.
    pyspark = pytest.importorskip("pyspark")
    if shutil.which("java") is None:
        pytest.skip("the Spark engine needs Java")

    home = str(Path(pyspark.__file__).parent)
    env = {
        **os.environ,
        "SPARK_HOME": home,
        "SPARK_LOCAL_IP": "127.0.0.1",
        "PYSPARK_PYTHON": sys.executable,
        "PYTHONPATH": str(ROOT / "src"),
    }
    master_port, master_ui, worker_port, worker_ui = _distinct_ports(4)
    url = f"spark://127.0.0.1:{master_port}"
    spark_class = [f"{home}/bin/spark-class"]
    cmds = [
        [
            *spark_class,
            "org.apache.spark.deploy.master.Master",
            *("--host", "127.0.0.1", "--port", str(master_port), "--webui-port", str(master_ui)),
        ],
        [
            *spark_class,
            "org.apache.spark.deploy.worker.Worker",
            *("--host", "127.0.0.1", "--port", str(worker_port), "--webui-port", str(worker_ui)),
            # Two one-core apps at once: the session below and a spark-submit'd driver.
            *("--cores", "2", "--memory", "1g", url),
        ],
    ]
    procs = []
    started = Cluster(url, procs, env, f"http://127.0.0.1:{master_ui}")
    try:
        for name, cmd in zip(("master", "worker"), cmds, strict=True):
            with (server_logs / f"spark-{name}.log").open("wb") as log:
                procs.append(
                    subprocess.Popen(
                        cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
                    )
                )

        def worker_alive() -> bool:
            assert all(p.poll() is None for p in procs), f"a JVM exited; see {server_logs}"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{master_ui}/json", timeout=2) as r:
                    state = json.load(r)
            except OSError:
                return False
            return any(w.get("state") == "ALIVE" for w in state.get("workers", []))

        eventually(worker_alive, 90, interval=0.5, message="Spark master with a live worker")
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="session")
def spark(cluster: Cluster) -> Iterator[Any]:
    from alternator_migrator.spark import spark_session

    # A driver in this process; its executors are the worker's own Python processes.
    old = {k: os.environ.get(k) for k in ("SPARK_LOCAL_IP", "PYSPARK_PYTHON")}
    os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"
    os.environ.pop("PYSPARK_PYTHON", None)  # the engine's own choice is under test
    # No UI: other test runs may share this machine and its port 4040.
    session = spark_session(cluster.url, {**APP_CONF, "spark.ui.enabled": "false"})
    yield session
    session.stop()
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
