"""The config reference is generated from the config classes and must match them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from alternator_migrator.config import parse
from alternator_migrator.config.docgen import config_reference
from alternator_migrator.errors import ConfigError

DOC = Path(__file__).resolve().parents[2] / "docs" / "config-reference.md"
MINIMAL = {
    "source": {"type": "dynamodb", "table": "a", "region": "r"},
    "target": {"type": "dynamodb", "table": "b", "region": "r"},
}


def test_committed_reference_is_current() -> None:
    assert DOC.read_text() == config_reference(), (
        "run: python -m alternator_migrator.config.docgen > docs/config-reference.md"
    )


def _accepted_keys(section: str) -> set[str]:
    """The keys the parser accepts in a section, from its own 'valid keys' error."""
    data = {k: dict(v) for k, v in MINIMAL.items()}
    data.setdefault(section, {})["zzzzzzzzzz"] = 1
    with pytest.raises(ConfigError) as e:
        parse(data)
    m = re.search(r"valid keys: (.*)$", str(e.value))
    assert m, str(e.value)
    return set(m.group(1).split(", "))


@pytest.mark.parametrize("section", ["source", "target", "savepoints", "validation"])
def test_every_accepted_key_is_documented(section: str) -> None:
    documented = set(re.findall(rf"^\| `{section}\.(\w+)` \|", DOC.read_text(), re.M))
    assert _accepted_keys(section) == documented
