"""Process-wide counters and gauges, read by the progress output and the metrics endpoint."""

from __future__ import annotations

import contextlib
import threading
from collections import defaultdict
from collections.abc import Callable, Iterator


class Metrics:
    """Thread-safe named counters (with optional labels) and gauges."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[tuple[str, tuple[tuple[str, str], ...]], float] = defaultdict(float)
        self._gauges: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        self._functions: dict[str, Callable[[], float | None]] = {}
        self._scope = threading.local()

    @contextlib.contextmanager
    def scoped(self, **labels: str) -> Iterator[None]:
        """Labels (``table=...``) for the metrics of what this thread builds meanwhile: the
        components of one table of a multi-table run take them at construction (``scope``)."""
        before = self.scope()
        self._scope.labels = {**before, **labels}
        try:
            yield
        finally:
            self._scope.labels = before

    def scope(self) -> dict[str, str]:
        """The current thread's scope labels ({} outside a multi-table run)."""
        return dict(getattr(self._scope, "labels", {}))

    def inc(self, name: str, value: float = 1.0, /, **labels: str) -> None:
        key = (name, tuple(sorted(labels.items())))
        with self._lock:
            self._counters[key] += value

    def set(self, name: str, value: float, /, **labels: str) -> None:
        key = (name, tuple(sorted(labels.items())))
        with self._lock:
            self._gauges[key] = value

    def set_function(self, name: str, fn: Callable[[], float | None]) -> None:
        """A gauge computed when read (e.g. an age); ``None`` hides it."""
        with self._lock:
            self._functions[name] = fn

    def gauge(self, name: str, **labels: str) -> float | None:
        key = (name, tuple(sorted(labels.items())))
        with self._lock:
            fn = self._functions.get(name) if not labels else None
            value = self._gauges.get(key)
        return fn() if fn is not None else value

    def counter(self, name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        with self._lock:
            return self._counters.get(key, 0.0)

    def gauges(self, name: str) -> dict[tuple[tuple[str, str], ...], float]:
        """All label sets of one gauge."""
        with self._lock:
            return {lbl: v for (n, lbl), v in self._gauges.items() if n == name}

    def counters(self, name: str) -> dict[tuple[tuple[str, str], ...], float]:
        """All label sets of one counter."""
        with self._lock:
            return {lbl: v for (n, lbl), v in self._counters.items() if n == name}

    def snapshot(
        self,
    ) -> tuple[
        dict[tuple[str, tuple[tuple[str, str], ...]], float],
        dict[tuple[str, tuple[tuple[str, str], ...]], float],
    ]:
        with self._lock:
            counters, gauges, functions = (
                dict(self._counters),
                dict(self._gauges),
                dict(self._functions),
            )
        for name, fn in functions.items():
            v = fn()
            if v is not None:
                gauges[(name, ())] = v
        return counters, gauges

    def reset(self) -> None:
        with self._lock:
            self._counters.clear()
            self._gauges.clear()
            self._functions.clear()


METRICS = Metrics()


def retry_summary(metrics: Metrics | None = None) -> str:
    """Retries by cause and endpoint, e.g. 'throttling 12 (source 5, target 7)'; '' if none."""
    by_cause: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for labels, n in (metrics or METRICS).counters("retries_total").items():
        d = dict(labels)
        by_cause[d.get("cause", "other")][d.get("endpoint", "?")] += n
    parts = []
    for cause, eps in sorted(by_cause.items()):
        detail = ", ".join(f"{ep} {int(n)}" for ep, n in sorted(eps.items()))
        parts.append(f"{cause} {int(sum(eps.values()))} ({detail})")
    return "; ".join(parts)


# --------------------------------------------------------------------------- Prometheus

_HELP = {
    "items_scanned_total": ("counter", "Items read from the source by the snapshot scan."),
    "items_written_total": ("counter", "Items the target acknowledged (snapshot and replay)."),
    "items_copied_total": ("counter", "Snapshot items acknowledged by the target."),
    "segments_done_total": ("counter", "Scan segments finished in this run."),
    "segments_total": ("gauge", "Scan segments of the snapshot."),
    "segments_done": ("gauge", "Scan segments finished, including earlier runs."),
    "stream_records_applied_total": ("counter", "Stream records applied to the target, by type."),
    "retries_total": ("counter", "Retried requests, by cause and endpoint."),
    "replay_lag_seconds": ("gauge", "Age of the newest applied stream record."),
    "replay_shard_lag_seconds": ("gauge", "Age of the newest applied record, per shard."),
    "stream_shards_open": ("gauge", "Stream shards not yet read to their end."),
    "stream_records_superseded_total": (
        "counter",
        "Kinesis records dropped: a newer change of the same item was already applied.",
    ),
    "replay_key_clock_evictions_total": (
        "counter",
        "Keys forgotten by the Kinesis newest-wins memory (bounded; see docs/runbook.md).",
    ),
    "stream_records_other_table_total": (
        "counter",
        "Kinesis records skipped because they belong to another table.",
    ),
    "writes_held_for_clock_skew_total": (
        "counter",
        "Waits of writes whose key moved to another target node (clock-skew guard).",
    ),
    "savepoint_age_seconds": ("gauge", "Seconds since the savepoint was last written."),
    "phase": ("gauge", "1 for the phase the migration is in."),
}


def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def render_prometheus(metrics: Metrics | None = None, prefix: str = "alternator_migrator_") -> str:
    """The text exposition format (version 0.0.4)."""
    counters, gauges = (metrics or METRICS).snapshot()
    series: dict[str, list[tuple[tuple[tuple[str, str], ...], float]]] = defaultdict(list)
    for (name, labels), v in [*counters.items(), *gauges.items()]:
        series[name].append((labels, v))
    lines: list[str] = []
    for name in sorted(series):
        kind, text = _HELP.get(name, ("counter" if name.endswith("_total") else "gauge", name))
        lines += [f"# HELP {prefix}{name} {text}", f"# TYPE {prefix}{name} {kind}"]
        for labels, v in sorted(series[name]):
            lbl = ",".join(f'{k}="{_escape(x)}"' for k, x in labels)
            lines.append(f"{prefix}{name}{{{lbl}}} {v:g}" if lbl else f"{prefix}{name} {v:g}")
    return "\n".join(lines) + "\n"


class MetricsServer:
    """Serves /metrics for Prometheus from a daemon thread."""

    def __init__(self, port: int, host: str = "127.0.0.1", metrics: Metrics | None = None) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        source = metrics or METRICS

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?")[0] not in ("/metrics", "/"):
                    self.send_error(404)
                    return
                body = render_prometheus(source).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # scrapes are not news
                return

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="metrics", daemon=True
        )

    def start(self) -> MetricsServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
