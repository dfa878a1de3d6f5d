"""The YAML reader: a mapping walker that records consumed keys and says where a bad one is.

Every error names the file, the key path and the fix; a ``secret`` reader never echoes a value.
"""

from __future__ import annotations

import difflib
import math
import re
from pathlib import Path
from typing import Any, NoReturn

import yaml

from ..errors import ConfigError
from .compat import IGNORED_REASONS

# --------------------------------------------------------------------------- parsing

# A config over this size is not a config (a log, a dump, /dev/zero): refuse it before parsing.
MAX_CONFIG_BYTES = 4 * 1024 * 1024
# An unknown key is echoed in an error only when it looks like a key name; anything else (a
# typo such as `secretKey SECRET` or `secretKey=SECRET`) may hold a secret.
_PLAIN_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")


class _Map(dict[Any, Any]):
    """A YAML mapping that remembers where each of its keys was written."""

    marks: dict[Any, tuple[int, int]]


class _Loader(yaml.SafeLoader):
    pass


def _construct_map(loader: _Loader, node: yaml.MappingNode) -> Any:
    data = _Map()
    data.marks = {}
    yield data
    data.update(loader.construct_mapping(node))
    for key_node, _ in node.value:
        try:
            key = loader.construct_object(key_node)
            data.marks[key] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
        except TypeError:  # unhashable key: construct_mapping has already said so
            continue


_Loader.add_constructor("tag:yaml.org,2002:map", _construct_map)


class Reader:
    """Walks one mapping of the YAML, recording which keys were consumed.

    A ``secret`` reader (credentials and below) never puts a value or an unknown key's text in
    an error; it says where instead.
    """

    def __init__(
        self, path: str, where: str, data: Any, warnings: list[str], secret: bool = False
    ) -> None:
        self.path = path
        self.where = where
        self.secret = secret
        self.warnings = warnings
        if not isinstance(data, dict):
            self.fail(
                where, f"must be a mapping, got {self.kind(data)}", "indent its keys under it"
            )
        self.data: dict[str, Any] = data
        self.known: list[str] = []
        self.accepted: set[str] = set()  # ignored or handled elsewhere: neither known nor unknown
        self.ignorable: list[str] = []  # their keys that mean nothing here (for typo hints)

    def key(self, name: str) -> str:
        return f"{self.where}.{name}" if self.where else name

    def kind(self, v: Any) -> str:
        if self.secret and not isinstance(v, dict | list | type(None) | bool):
            return f"a {type(v).__name__} (value not shown)"
        return kind_of(v)

    def fail(self, key: str, problem: str, fix: str) -> NoReturn:
        raise ConfigError(f"{self.path}: `{key}` {problem}; {fix}")

    def has(self, name: str) -> bool:
        return name in self.data

    def get(self, name: str) -> Any:
        self.known.append(name)
        return self.data.get(name)

    def str_(self, name: str, *, required: bool = False) -> str | None:
        v = self.get(name)
        if v is None:
            if required:
                self.fail(self.key(name), "is missing", "add it (a non-empty string)")
            return None
        if isinstance(v, bool) or not isinstance(v, str | int) or str(v) == "":
            self.fail(self.key(name), f"must be a non-empty string, got {self.kind(v)}", "quote it")
        return str(v)

    def int_(self, name: str, *, minimum: int, maximum: int | None = None) -> int | None:
        v = self.get(name)
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, int):
            self.fail(
                self.key(name),
                f"must be a whole number, got {self.kind(v)}",
                range_hint(minimum, maximum),
            )
        if v < minimum or (maximum is not None and v > maximum):
            self.fail(self.key(name), f"is {v}, out of range", range_hint(minimum, maximum))
        return int(v)

    def float_(self, name: str, *, minimum: float, maximum: float) -> float | None:
        v = self.get(name)
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            self.fail(
                self.key(name),
                f"must be a number, got {self.kind(v)}",
                range_hint(minimum, maximum),
            )
        if v < minimum or v > maximum:
            self.fail(self.key(name), f"is {v}, out of range", range_hint(minimum, maximum))
        return float(v)

    def opt_bool(self, name: str) -> bool | None:
        v = self.get(name)
        if v is not None and not isinstance(v, bool):
            self.fail(
                self.key(name), f"must be true or false, got {self.kind(v)}", "write true or false"
            )
        return v

    def bool_(self, name: str, default: bool) -> bool:
        v = self.opt_bool(name)
        return default if v is None else v

    def child(self, name: str) -> Reader | None:
        v = self.get(name)
        if v is None:
            return None
        secret = self.secret or name == "credentials"
        return Reader(self.path, self.key(name), v, self.warnings, secret)

    def ignore(self, name: str) -> None:
        """Accept a key of the Scylla Migrator that means nothing here, with one warning line."""
        self.ignorable.append(name)
        if name not in self.data:
            return
        self.accepted.add(name)
        dotted = re.sub(r"\[\d+\]", "", self.key(name))
        self.warnings.append(
            f"{self.path}: `{self.key(name)}` is accepted and ignored: {IGNORED_REASONS[dotted]}"
        )

    def done(self) -> None:
        for k in self.data:
            if k in self.known or k in self.accepted:
                continue
            # A glued `key=value` / `key value` is matched on its first word only.
            stem = re.split(r"[\s=:]", str(k), maxsplit=1)[0]
            near = difflib.get_close_matches(stem, self.known + self.ignorable, n=1, cutoff=0.5)
            hint = f"did you mean `{near[0]}`?" if near else f"valid keys: {', '.join(self.known)}"
            glued = not isinstance(k, str) or not _PLAIN_KEY.fullmatch(k)
            if self.secret or glued:
                line, col = getattr(self.data, "marks", {}).get(k, (0, 0))
                at = f" at line {line}, column {col}" if line else ""
                self.fail(
                    self.where or "top level",
                    f"has an unknown key{at} (not shown: it may hold a secret)",
                    # A plain key misspelled beside a secret needs its spelling, not a colon.
                    f"a key and its value need `: ` between them; {hint}" if glued else hint,
                )
            self.fail(self.key(str(k)), "is not a known key", hint)


def kind_of(v: Any) -> str:
    if v is None:
        return "nothing"
    if isinstance(v, bool):
        return f"a boolean ({v})"
    if isinstance(v, dict):
        return "a mapping"
    if isinstance(v, list):
        return "a list"
    return f"{type(v).__name__} {v!r}"


def range_hint(lo: float, hi: float | None) -> str:
    return f"use a value >= {lo}" if hi is None else f"use a value from {lo} to {hi}"


def _read_text(p: Path) -> str:
    try:
        with p.open("rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(
            f"{p}: no such file; pass the path of your config with --config"
        ) from None
    except OSError as e:
        raise ConfigError(
            f"{p}: cannot read it ({e.strerror}); check the path and permissions"
        ) from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"{p}: is over {MAX_CONFIG_BYTES // (1024 * 1024)} MiB, too large for a config; "
            "pass the path of your YAML config with --config"
        )
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise ConfigError(
            f"{p}: is not UTF-8 text (byte 0x{raw[e.start]:02x} at line {line}); "
            "save the config as UTF-8"
        ) from None


def read_yaml(p: Path) -> Any:
    """The YAML data of a config file (mappings remember where their keys were written)."""
    text = _read_text(p)
    try:
        return yaml.load(text, Loader=_Loader)  # a SafeLoader subclass: no arbitrary objects
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or "invalid YAML"
        raise ConfigError(
            f"{p}: malformed YAML{where}: {problem}; fix the indentation or quoting there"
        ) from None
