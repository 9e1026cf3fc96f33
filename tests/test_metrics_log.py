"""metrics.jsonl, metrics.csv and TensorBoard events of a run directory, across a resume."""

import csv
import json

import pytest

from tbfast.engine.metrics import MetricsLog


def _records(log: MetricsLog, steps, epoch_every=2):
    for s in steps:
        log.write({"kind": "step", "epoch": (s - 1) // epoch_every + 1, "step": s, "loss": 10.0 - s, "lr": 0.1})
        if s % epoch_every == 0:
            log.write(
                {
                    "kind": "epoch",
                    "epoch": s // epoch_every,
                    "step": s,
                    "loss": 10.0 - s,
                    **({"val_top1": 0.5} if s >= 4 else {}),
                }
            )


def test_csv_has_one_row_per_epoch_and_survives_a_resume(tmp_path):
    log = MetricsLog(tmp_path / "metrics.jsonl", tensorboard=False)
    _records(log, range(1, 7))  # epochs 1, 2, 3
    log.truncate_after(4)  # resumed from the checkpoint of step 4: epoch 3 is trained again
    _records(log, range(5, 9))  # epochs 3, 4
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    assert list(rows[0]) == ["epoch", "step", "loss", "time", "val_top1"]  # columns in order of first use
    assert rows[0]["val_top1"] == "" and float(rows[-1]["val_top1"]) == 0.5
    assert not (tmp_path / "tensorboard").exists()
    steps = [
        json.loads(x)["step"]
        for x in (tmp_path / "metrics.jsonl").read_text().splitlines()
        if json.loads(x)["kind"] == "step"
    ]
    assert steps == list(range(1, 9))


def test_tensorboard_events_hold_the_scalars_once_per_step_after_a_resume(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    log = MetricsLog(tmp_path / "metrics.jsonl")
    _records(log, range(1, 7))
    log.close()
    log = MetricsLog(tmp_path / "metrics.jsonl")  # a new process resuming from step 4
    log.truncate_after(4)
    _records(log, range(5, 9))
    log.close()
    acc = EventAccumulator(str(tmp_path / "tensorboard"))
    acc.Reload()
    assert {"step/loss", "step/lr", "epoch/loss", "epoch/val_top1"} <= set(acc.Tags()["scalars"])
    loss = acc.Scalars("step/loss")
    assert [e.step for e in loss] == list(range(1, 9)) and [e.value for e in loss] == [10.0 - s for s in range(1, 9)]
    assert [e.step for e in acc.Scalars("epoch/loss")] == [2, 4, 6, 8]


def test_progress_bar_keeps_step_count_and_times_at_80_columns(monkeypatch):
    """A narrow terminal cuts the description and the loss terms, never the step count or the times;
    a "[model]" prefix is shown as text, not taken for a style tag."""
    import io

    from rich.console import Console

    from tbfast.engine import metrics

    view = metrics.ProgressView(True, "student")
    view.progress.stop()
    view.start("[student_invariant_seed1] student epoch 3/120", total=14, done=5)
    view.update(5, "loss=1.234 ce=0.55 distill_u=0.33 distill_l=0.22 lr=1.00e-03 20.1 clips/s [data 3%]")
    out = io.StringIO()
    Console(file=out, width=80, force_terminal=True, color_system=None).print(
        view.progress.make_tasks_table(view.progress.tasks)
    )
    line = out.getvalue().splitlines()[0]
    assert len(line) <= 80 and "5/14" in line and "0:00:" in line and "-:--:--" in line
    assert line.startswith("[student_inv") and "loss=1.234" in line
