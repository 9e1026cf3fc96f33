"""What a user sees: metrics.jsonl (+ metrics.csv, TensorBoard events), a rich progress bar, one summary
line per epoch (rank 0 only)."""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path


class MetricsLog:
    """Appends one JSON object per line to ``RUN/metrics.jsonl``; a no-op off rank 0.

    Beside it, for spreadsheets and TensorBoard: ``RUN/metrics.csv`` (one row per epoch, rewritten
    at each epoch end from the JSON lines, so a resumed run never has duplicate rows) and, when the
    ``tensorboard`` package is installed (``pip install -e '.[tensorboard]'``), event files in
    ``RUN/tensorboard/`` (``step/<field>`` and ``epoch/<field>`` scalars against the global step;
    a resume drops the events after its checkpoint)."""

    _SKIP = ("kind", "epoch", "step", "batch", "time")

    def __init__(self, path: Path | None, *, tensorboard: bool = True):
        self.path = Path(path) if path else None
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tb = None
        self._tb_wanted = bool(tensorboard and self.path)
        self._purge: int | None = None

    def _writer(self):
        if self._tb is None and self._tb_wanted and self.path:
            self._tb_wanted = False  # one try
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # the optional extra is not installed
                return None
            self._tb = SummaryWriter(str(self.path.parent / "tensorboard"), purge_step=self._purge)
        return self._tb

    def write(self, record: dict) -> None:
        if not self.path:
            return
        record = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
        record.setdefault("time", round(time.time(), 3))
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        kind, step = record.get("kind"), record.get("step")
        if kind in ("step", "epoch") and isinstance(step, int):
            w = self._writer()
            if w is not None:
                for k, v in record.items():
                    if k not in self._SKIP and isinstance(v, (int, float)) and not isinstance(v, bool):
                        w.add_scalar(f"{kind}/{k}", v, step)
                if kind == "epoch":
                    w.flush()
        if kind == "epoch":
            self.write_csv()

    def write_csv(self) -> None:
        """``metrics.csv``: the epoch records of ``metrics.jsonl`` (columns in order of first use)."""
        import csv
        import io

        from tbfast.engine.checkpoint import atomic_write_bytes

        if not self.path or not self.path.exists():
            return
        rows = []
        for line in self.path.read_text().splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if rec.get("kind") == "epoch":
                rows.append({k: v for k, v in rec.items() if k != "kind"})
        cols = list(dict.fromkeys(k for r in rows for k in r)) or ["epoch", "step"]
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
        atomic_write_bytes(self.path.with_suffix(".csv"), buf.getvalue().encode())

    def close(self) -> None:
        self.write_csv()  # also for a run stopped inside its first epoch (--max-steps): a header
        if self._tb is not None:
            self._tb.close()
            self._tb = None

    def truncate_after(self, step: int) -> None:
        """On resume: drop lines logged after the checkpoint's step (they will be logged again)."""
        self._purge = step + 1  # TensorBoard: events after the checkpoint are dropped as well
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
        self.write_csv()


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
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.table import Column

        def fixed(width: int) -> Column:  # never squeezed: step count, elapsed and remaining time stay readable
            return Column(no_wrap=True, min_width=width)

        def elastic(ratio: int) -> Column:  # shares what is left; cut with an ellipsis on narrow terminals
            return Column(no_wrap=True, overflow="ellipsis", ratio=ratio, min_width=10)

        self.console = Console(file=sys.stderr)
        self.progress = Progress(
            TextColumn("[bold]{task.description}", table_column=elastic(1)),
            BarColumn(bar_width=16, table_column=fixed(16)),
            MofNCompleteColumn(table_column=fixed(7)),
            TimeElapsedColumn(table_column=fixed(7)),
            TimeRemainingColumn(table_column=fixed(7)),
            TextColumn("{task.fields[info]}", table_column=elastic(1)),
            console=self.console,
            transient=False,
            refresh_per_second=4,
            expand=True,
            disable=not self.console.is_terminal,
        )
        self.progress.start()

    def start_epoch(self, epoch: int, epochs: int, total: int, done: int) -> None:
        self.start(f"{self.title} epoch {epoch + 1}/{epochs}", total, done)

    def start(self, description: str, total: int, done: int) -> None:
        if not self.progress:
            return
        from rich.markup import escape

        if self.task is not None:
            self.progress.remove_task(self.task)
        # escaped: a "[model name]" prefix is text, not a rich style tag
        self.task = self.progress.add_task(escape(description), total=total, completed=done, info="")

    def update(self, done: int, info: str) -> None:
        if self.progress and self.task is not None:
            from rich.markup import escape

            self.progress.update(self.task, completed=done, info=escape(info))

    def close(self) -> None:
        if self.progress:
            self.progress.stop()
            self.progress = None


def log_line(line: str, enabled: bool = True) -> None:
    if enabled:
        print(line, file=sys.stderr, flush=True)
