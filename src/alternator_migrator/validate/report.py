"""validate's report: counts, the first differences, what was repaired, and whether it is
complete; kept as JSON in a stopped run's position. No I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .compare import DIFFER, EXTRA, KIND_LABELS, MISSING, AttrDiff, Difference, Item, shorten


@dataclass
class ValidationReport:
    source_table: str
    target_table: str
    source_items: int = 0
    target_items: int = 0
    counts: dict[str, int] = field(default_factory=lambda: {MISSING: 0, EXTRA: 0, DIFFER: 0})
    cleared_on_recheck: int = 0
    samples: list[Difference] = field(default_factory=list)
    repaired: dict[str, int] = field(default_factory=lambda: {"put": 0, "delete": 0})
    repairs: list[tuple[str, Item]] = field(default_factory=list)  # the first few, for the log
    seconds: float = 0.0
    expired_skipped: int = 0  # source items DynamoDB's TTL will delete: not expected on the target
    sample: str = ""  # what a sampled run covered ("" : everything)
    partial: str = ""  # why the run ended before comparing everything ("" : it did not)
    resumed: str = ""  # what an earlier, stopped run had already done

    @property
    def differences(self) -> int:
        return sum(self.counts.values())

    @property
    def identical(self) -> bool:
        """No difference found in what was compared (a partial run may still have some)."""
        return self.differences == 0

    @property
    def exit_code(self) -> int:
        """0 identical, 1 differences found, 4 stopped before the end (never a pass)."""
        if self.partial:
            return 4
        return 0 if self.identical else 1

    def to_json(self) -> dict[str, Any]:
        """The counts and samples so far, for the position file of a stopped run."""
        return {
            "source_items": self.source_items,
            "target_items": self.target_items,
            "counts": self.counts,
            "cleared_on_recheck": self.cleared_on_recheck,
            "samples": [
                {
                    "kind": d.kind,
                    "key": d.key,
                    "attrs": [[a.path, a.source, a.target] for a in d.attrs],
                }
                for d in self.samples
            ],
            "repaired": self.repaired,
            "repairs": [[op, key] for op, key in self.repairs],
            "seconds": self.seconds,
            "expired_skipped": self.expired_skipped,
        }

    def load_json(self, d: dict[str, Any]) -> None:
        self.source_items = int(d["source_items"])
        self.target_items = int(d["target_items"])
        self.counts = {k: int(d["counts"][k]) for k in (MISSING, EXTRA, DIFFER)}
        self.cleared_on_recheck = int(d["cleared_on_recheck"])
        self.samples = [
            Difference(s["kind"], s["key"], tuple(AttrDiff(*a) for a in s["attrs"]))
            for s in d["samples"]
        ]
        self.repaired = {k: int(d["repaired"][k]) for k in ("put", "delete")}
        self.repairs = [(op, key) for op, key in d["repairs"]]
        self.seconds = float(d["seconds"])
        self.expired_skipped = int(d["expired_skipped"])

    def format(self, repair: bool = False) -> str:
        lines = []
        if self.partial:
            lines.append("PARTIAL REPORT: validation stopped before the end; NOT a pass")
        lines += [
            f"Validation of source {self.source_table!r} against target {self.target_table!r} "
            f"in {self.seconds:.1f}s",
        ]
        if self.sample:
            lines.append(f"  sample               : {self.sample}")
        if self.resumed:
            lines.append(f"  resumed              : {self.resumed}")
        if self.partial:
            lines.append(f"  stopped              : {self.partial}")
        lines += [
            f"  source items compared: {self.source_items:>10,}",
            f"  target items compared: {self.target_items:>10,}",
        ]
        for kind in (MISSING, EXTRA, DIFFER):
            lines.append(f"  {KIND_LABELS[kind]:<21}: {self.counts[kind]:>10,}")
        if self.expired_skipped:
            lines.append(
                f"  ({self.expired_skipped:,} expired source items skipped: DynamoDB's TTL "
                "deletes them)"
            )
        if self.cleared_on_recheck:
            lines.append(
                f"  ({self.cleared_on_recheck:,} differences cleared when re-read: changed mid-scan)"
            )
        if self.samples:
            shown = len(self.samples)
            lines.append(f"First {shown} of {self.differences:,} differences:")
            for d in self.samples:
                lines.append(f"  {KIND_LABELS[d.kind]:<18} key {shorten(d.key)}")
                for a in d.attrs:
                    lines.append(
                        f"      {a.path}: source={shorten(a.source, 80)} "
                        f"target={shorten(a.target, 80)}"
                    )
        if repair:
            lines.append(
                f"Repaired: {self.repaired['put']:,} items put, "
                f"{self.repaired['delete']:,} target-only items deleted"
            )
            for op, key in self.repairs:
                lines.append(f"  {op:<6} {shorten(key)}")
            more = self.repaired["put"] + self.repaired["delete"] - len(self.repairs)
            if more > 0:
                lines.append(f"  ... and {more:,} more")
        if self.partial:
            lines.append(
                f"Result: PARTIAL: {self.differences:,} differences in what was compared so far; "
                "run validate again to resume (--fresh starts over)"
            )
        elif self.identical:
            lines.append(
                "Result: source and target are identical"
                + (f" in the sample ({self.sample})" if self.sample else "")
            )
        else:
            lines.append(f"Result: {self.differences:,} differences")
        return "\n".join(lines)
