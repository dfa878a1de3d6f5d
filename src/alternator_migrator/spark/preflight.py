"""Before the Spark engine touches source or target: ship our code to the executors and prove
that one of them can import it, with its dependencies, in the Python it was given.

Executors are separate processes, often on other machines: nothing in the driver's memory or
site-packages reaches them. Our own package travels as a zip added to the SparkContext (so the
executors always run the driver's version); compiled dependencies (orjson) cannot, and a
missing one is reported here as one line with the fix, not as a traceback per task later.
"""

from __future__ import annotations

import ipaddress
import marshal
import os
import socket
import sys
import tempfile
import threading
import zipfile
from importlib.util import MAGIC_NUMBER, source_hash
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..errors import MigratorError

PROBE_TIMEOUT = 120.0  # seconds for an executor to take the check job (cluster busy or empty)

# The check runs on an executor that may not have our package at all, so it must not be pickled
# by reference to one of our modules: it is compiled here under a module name nothing imports,
# which makes cloudpickle ship it by value.
_PROBE_SOURCE = """
def probe(_):
    import importlib
    import sys

    missing = None
    # The task code and what it imports, and boto3, which it imports only when credentials
    # come from the AWS default chain.
    for module in ("alternator_migrator.spark.tasks", "boto3"):
        try:
            importlib.import_module(module)
        except ImportError as e:
            missing = getattr(e, "name", None) or str(e)
            break
    return sys.executable, "%d.%d" % sys.version_info[:2], missing
"""


class SparkSetupError(MigratorError):
    """The cluster cannot run our tasks as configured (exit 2, before anything is written)."""


def _probe_function() -> Any:
    namespace: dict[str, Any] = {"__name__": "alternator_migrator_preflight_probe"}
    exec(compile(_PROBE_SOURCE, "<alternator-migrator preflight>", "exec"), namespace)
    return namespace["probe"]


def package_zip(directory: Path | None = None) -> Path:
    """A zip of the ``alternator_migrator`` package this driver runs (for ``addPyFile``).

    Each module's bytecode goes beside its source: zipimport compiles a module it finds only
    as source, in every Python worker that imports it (on a wide stream, a quarter of the
    executors' CPU). An executor on another Python version finds the bytecode's magic number
    wrong and compiles the source instead."""
    pkg = Path(__file__).resolve().parents[1]
    out = (directory or Path(tempfile.mkdtemp(prefix="alternator-migrator-"))) / (
        "alternator_migrator.zip"
    )
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for f in sorted(pkg.rglob("*.py")):
            name = Path(pkg.name) / f.relative_to(pkg)
            z.write(f, name)
            z.writestr(str(name.with_suffix(".pyc")), _bytecode(f.read_bytes(), str(name)))
    return out


def _bytecode(source: bytes, name: str) -> bytes:
    """``source`` as a .pyc checked by hash (PEP 552): zipimport compares it with the source
    beside it at import, so it is never stale whatever the zip's timestamps."""
    code = compile(source, name, "exec", dont_inherit=True)  # not this module's __future__s
    checked_hash = (0b11).to_bytes(4, "little")
    return MAGIC_NUMBER + checked_hash + source_hash(source) + marshal.dumps(code)


def _is_this_machine(master: str) -> bool:
    if master.startswith("local"):
        return True
    host = urlsplit(master).hostname if "://" in master else None
    if not host:
        return False
    try:
        if ipaddress.ip_address(host).is_loopback:
            return True
    except ValueError:
        pass
    return host in {"localhost", socket.gethostname(), socket.getfqdn()}


def executor_python(master: str, conf: dict[str, str]) -> None:
    """Pick the executors' Python, before the SparkContext exists (it reads PYSPARK_PYTHON).

    Asked for (``spark.pyspark.python`` or PYSPARK_PYTHON) wins. Otherwise, on this machine,
    this very interpreter, which has our dependencies; on a remote cluster Spark's default
    (``python3``), which the check then verifies.
    """
    asked = conf.get("spark.pyspark.python")
    if asked:
        os.environ["PYSPARK_PYTHON"] = asked
    elif "PYSPARK_PYTHON" not in os.environ and _is_this_machine(master):
        os.environ["PYSPARK_PYTHON"] = sys.executable


def one_line(e: BaseException) -> str:
    """The Python error inside a Py4J/Spark failure, without the JVM stack."""
    text = str(e)
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line and ("Error" in line or "Exception" in line) and not line.startswith("at "):
            return line[:300]
    return (text.strip().splitlines() or [type(e).__name__])[0][:300]


def prepare(sc: Any, timeout: float = PROBE_TIMEOUT) -> None:
    """Ship the package once per SparkContext, then check an executor can import it."""
    if getattr(sc, "_alternator_migrator_ready", False):
        return
    sc.addPyFile(str(package_zip()))
    python = os.environ.get("PYSPARK_PYTHON", "python3")
    fix = (
        f"install alternator-migrator's dependencies into that Python on every worker "
        f"({python} -m pip install boto3 orjson PyYAML), or point the executors at a Python "
        f"that has them: --conf spark.pyspark.python=/path/to/python3.11 (see docs/spark.md)"
    )
    result: list[Any] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            sc.setJobDescription("alternator-migrator: executor check")
            result.extend(sc.parallelize([0], 1).map(_probe_function()).collect())
        except BaseException as e:
            failure.append(e)

    t = threading.Thread(target=run, name="spark-preflight", daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        sc.cancelAllJobs()
        raise SparkSetupError(
            f"no Spark executor ran the start-up check within {timeout:.0f}s: does the cluster "
            f"({sc.master}) have a live worker with free cores and memory for this job?"
        )
    if failure:
        raise SparkSetupError(
            f"the Spark executors could not run Python {python}: {one_line(failure[0])}; "
            f"the executors need Python {sys.version_info.major}.{sys.version_info.minor} like "
            f"the driver: --conf spark.pyspark.python=/path/to/python"
            f"{sys.version_info.major}.{sys.version_info.minor}"
        ) from None
    executable, version, missing = result[0]
    if missing is not None:
        raise SparkSetupError(
            f"the Spark executors cannot import {missing!r} (executor Python: {executable}, "
            f"{version}): {fix}"
        )
    sc._alternator_migrator_ready = True
