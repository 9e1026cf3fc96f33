"""What a user sees: metrics.jsonl, a rich progress bar, one summary line per epoch (rank 0 only)."""
from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path


class MetricsLog:
    """Appends one JSON object per line to ``RUN/metrics.jsonl``; a no-op off rank 0."""

    def __init__(self, path: Path | None):
        self.path = Path(path) if path else None
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, record: dict) -> None:
        if not self.path:
            return
        record = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
        record.setdefault("time", round(time.time(), 3))
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")

    def truncate_after(self, step: int) -> None:
        """On resume: drop lines logged after the checkpoint's step (they will be logged again)."""
        if not self.path or not self.path.exists():
            return
        keep = []
        for line in self.path.read_text().splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a kill
            if rec.get("step", 0) <= step or rec.get("kind") not in ("step", "epoch"):
                keep.append(line)
        self.path.write_text("".join(line + "\n" for line in keep))


def fmt_terms(terms: dict[str, float], keys: list[str] | None = None) -> str:
    keys = keys or list(terms)
    return " ".join(f"{k}={terms[k]:.4g}" for k in keys if k in terms)


class ProgressView:
    """Rich progress bar: epoch, step, loss terms, lr, clips/s, data-wait share."""

    def __init__(self, enabled: bool, title: str):
        self.enabled = enabled
        self.title = title
        self.progress = None
        self.task = None
        self.console = None
        if not enabled:
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.console = Console(file=sys.stderr)
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(bar_width=24), MofNCompleteColumn(),
            TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
            console=self.console, transient=False, refresh_per_second=4,
            disable=not self.console.is_terminal,
        )
        self.progress.start()

    def start_epoch(self, epoch: int, epochs: int, total: int, done: int) -> None:
        self.start(f"{self.title} epoch {epoch + 1}/{epochs}", total, done)

    def start(self, description: str, total: int, done: int) -> None:
        if not self.progress:
            return
        if self.task is not None:
            self.progress.remove_task(self.task)
        self.task = self.progress.add_task(description, total=total, completed=done, info="")

    def update(self, done: int, info: str) -> None:
        if self.progress and self.task is not None:
            self.progress.update(self.task, completed=done, info=info)

    def close(self) -> None:
        if self.progress:
            self.progress.stop()
            self.progress = None


def log_line(line: str, enabled: bool = True) -> None:
    if enabled:
        print(line, file=sys.stderr, flush=True)
