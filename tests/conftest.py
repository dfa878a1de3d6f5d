"""Session-wide real servers: moto (source, with Streams) and dynalite (target), on loopback."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import Phase, settings

from alternator_migrator.localservers import Server, start_dynalite, start_moto

from .helpers import boto_client

ROOT = Path(__file__).resolve().parents[1]

# In CI a failure is reported as found: shrinking against live servers can take many minutes.
settings.register_profile(
    "ci", phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target], print_blob=True
)
if os.environ.get("CI"):
    settings.load_profile("ci")
_counter = itertools.count()


@pytest.fixture(scope="session")
def server_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("server-logs")


@pytest.fixture(scope="session")
def moto(server_logs: Path) -> Iterator[Server]:
    s = start_moto(server_logs)
    yield s
    s.stop()


@pytest.fixture(scope="session")
def moto_alt(server_logs: Path, moto: Server) -> Iterator[Server]:
    """A second moto that plays ScyllaDB Alternator (the new primary of a cutover test): a
    stream-capable DynamoDB API on another port. What Alternator Streams do differently is
    scripted in tests/alternator_fakes.py."""
    logs = server_logs / "moto-alt"
    logs.mkdir(exist_ok=True)
    s = start_moto(logs)
    assert s.url != moto.url
    yield s
    s.stop()


@pytest.fixture(scope="session")
def dynalite(server_logs: Path) -> Iterator[Server]:
    s = start_dynalite(server_logs)
    yield s
    s.stop()


@pytest.fixture
def table_name(request: pytest.FixtureRequest) -> str:
    """A table name unique within the session (servers are shared between tests)."""
    base = "".join(c if c.isalnum() else "-" for c in request.node.name)[:40]
    return f"t{next(_counter)}-{base}-{os.getpid()}"


@pytest.fixture(scope="session")
def src(moto: Server) -> Any:
    return boto_client(moto.url)


@pytest.fixture(scope="session")
def dst(dynalite: Server) -> Any:
    return boto_client(dynalite.url)
