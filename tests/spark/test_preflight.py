"""The package zip the Spark engine ships to its executors (``spark.preflight.package_zip``):
no Spark needed, a fresh Python imports from it."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

from alternator_migrator.spark.preflight import package_zip


def _import_from(zip_path: Path) -> str:
    """Where a fresh Python (no site: no editable install in the way) takes a module from."""
    code = (
        f"import sys; sys.path[:0] = [{str(zip_path)!r}, {sysconfig.get_paths()['purelib']!r}]; "
        "import alternator_migrator.changes.records as m; print(m.__file__)"
    )
    out = subprocess.run(
        [sys.executable, "-S", "-c", code], capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


def test_executors_import_the_package_from_bytecode_not_by_compiling_it(tmp_path: Path) -> None:
    z = package_zip(tmp_path)
    names = set(zipfile.ZipFile(z).namelist())
    sources = {n for n in names if n.endswith(".py")}
    assert "alternator_migrator/changes/records.py" in sources
    assert {n[:-3] + ".pyc" for n in sources} <= names
    assert _import_from(z).endswith("records.pyc")


def test_bytecode_of_another_python_falls_back_to_the_source(tmp_path: Path) -> None:
    z = package_zip(tmp_path)
    other = tmp_path / "other.zip"
    with zipfile.ZipFile(z) as src, zipfile.ZipFile(other, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith(".pyc"):
                data = b"\0\0\r\n" + data[4:]  # another version's magic number
            dst.writestr(info, data)
    assert _import_from(other).endswith("records.py")
