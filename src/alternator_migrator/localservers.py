"""Local DynamoDB-API servers for the demo, the tests and the benchmarks (loopback only).

moto (``moto_server``) is the source: it speaks DynamoDB and DynamoDB Streams. dynalite (npm)
is the target. Both bind 127.0.0.1 on a free port and are stopped by PID.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}; see {log}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"server did not listen on 127.0.0.1:{port} within {timeout}s; see {log}")


@dataclass
class Server:
    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _start(
    name: str, cmd: list[str], port: int, log_dir: Path, env: dict[str, str] | None
) -> Server:
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"{name}-{port}.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            cmd,
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            start_new_session=True,  # a Ctrl-C in the terminal goes to the migrator, not here
        )
    _wait_port(port, proc, 30.0, log)
    return Server(name, port, proc, log)


def find_moto_server() -> str:
    here = Path(sys.executable).parent / "moto_server"
    if here.exists():
        return str(here)
    found = shutil.which("moto_server")
    if not found:
        raise RuntimeError("moto_server not found: pip install 'moto[server]'")
    return found


def find_dynalite(root: Path | None = None) -> str:
    candidates = []
    if root is not None:
        candidates.append(root / "node_modules" / ".bin" / "dynalite")
    candidates.append(Path.cwd() / "node_modules" / ".bin" / "dynalite")
    candidates.append(Path(__file__).resolve().parents[2] / "node_modules" / ".bin" / "dynalite")
    for c in candidates:
        if c.exists():
            return str(c)
    found = shutil.which("dynalite")
    if not found:
        raise RuntimeError("dynalite not found: run `npm install` in the repository root")
    return found


def start_moto(log_dir: Path, port: int | None = None, env: dict[str, str] | None = None) -> Server:
    port = port or free_port()
    return _start(
        "moto", [find_moto_server(), "-H", "127.0.0.1", "-p", str(port)], port, log_dir, env
    )


def start_dynalite(log_dir: Path, port: int | None = None, path: Path | None = None) -> Server:
    port = port or free_port()
    cmd = [
        find_dynalite(),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--createTableMs",
        "0",
        "--deleteTableMs",
        "0",
        "--updateTableMs",
        "0",
    ]
    if path is not None:
        cmd += ["--path", str(path)]
    return _start("dynalite", cmd, port, log_dir, None)


def reset_moto(url: str) -> None:
    req = urllib.request.Request(url + "/moto-api/reset", method="POST", data=b"")
    with urllib.request.urlopen(req, timeout=10):
        pass
