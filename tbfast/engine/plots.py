"""PNG plots of a run's metrics.jsonl: loss terms and lr per step, epoch loss and accuracy."""
from __future__ import annotations

import json
from pathlib import Path

NON_LOSS = {"kind", "epoch", "step", "time", "lr", "clips_per_s", "data_share", "batch", "rank", "world",
            "val_top1", "val_top5", "val_clip_top1", "val_clip_top5", "seconds", "clips"}


def read_metrics(path: Path) -> list[dict]:
    out = []
    if not Path(path).exists():
        return out
    for line in Path(path).read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return out


def plot_run(run_dir: Path) -> list[Path]:
    """Write ``loss.png`` (and ``accuracy.png`` when validated) next to metrics.jsonl."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    recs = read_metrics(run_dir / "metrics.jsonl")
    steps = [r for r in recs if r.get("kind") == "step"]
    epochs = [r for r in recs if r.get("kind") == "epoch"]
    written = []
    if steps:
        keys = [k for k in steps[-1] if k not in NON_LOSS and isinstance(steps[-1][k], (int, float))]
        fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4))
        for k in keys:
            xs = [r["step"] for r in steps if r.get(k) is not None]
            ax.plot(xs, [r[k] for r in steps if r.get(k) is not None], label=k)
        if epochs:
            ax.plot([r["step"] for r in epochs if r.get("loss") is not None],
                    [r["loss"] for r in epochs if r.get("loss") is not None], "ko-", ms=3, label="epoch mean")
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        if keys and all(r.get("loss", 1) and r.get("loss", 1) > 0 for r in steps):
            ax.set_yscale("log")
        ax.legend(fontsize=7)
        ax.set_title(f"{run_dir.name}: training losses")
        ax2.plot([r["step"] for r in steps], [r.get("lr", 0) for r in steps])
        ax2.set_xlabel("step")
        ax2.set_ylabel("learning rate")
        fig.tight_layout()
        fig.savefig(run_dir / "loss.png", dpi=90)
        plt.close(fig)
        written.append(run_dir / "loss.png")
    acc = [r for r in epochs if r.get("val_top1") is not None]
    if acc:
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot([r["epoch"] for r in acc], [100 * r["val_top1"] for r in acc], "o-", label="video top-1")
        if any(r.get("val_top5") is not None for r in acc):
            ax.plot([r["epoch"] for r in acc], [100 * r.get("val_top5", 0) for r in acc], "s--", label="video top-5")
        ax.set_xlabel("epoch")
        ax.set_ylabel("validation accuracy (%)")
        ax.legend()
        fig.tight_layout()
        fig.savefig(run_dir / "accuracy.png", dpi=90)
        plt.close(fig)
        written.append(run_dir / "accuracy.png")
    return written


def plot_histogram(scores: list[float], raw: list[float], out: Path, title: str = "temporal similarity") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.5))
    a.hist(raw, bins=30, color="tab:gray")
    a.set_xlabel("raw score (mean off-diagonal cosine)")
    b.hist(scores, bins=30, range=(0, 1), color="tab:blue")
    b.set_xlabel("s (normalised; 1 = invariant teacher)")
    for ax in (a, b):
        ax.set_ylabel("videos")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return Path(out)


def plot_seeds(seeds: dict, out: Path) -> Path:
    """Video top-1 of each model for every seed (points) with the mean ± std (bar), tbfast run --seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = ["supervised", "student_invariant", "student_distinctive", "timebalance"]
    labels = ["supervised\nonly", "student\ns=1", "student\ns=0", "TimeBalance"]
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for i, m in enumerate(models):
        vals = seeds["top1"][m]
        ax.errorbar([i], [seeds["mean"][m]], yerr=[seeds["std"][m]], fmt="s", color="black", capsize=6, zorder=3)
        ax.scatter([i + 0.12 * (j - (len(vals) - 1) / 2) for j in range(len(vals))], vals, s=22, alpha=0.7,
                   color="tab:blue", zorder=2, label="one seed" if i == 0 else None)
    ax.set_xticks(range(len(models)), labels)
    ax.set_ylabel("video top-1 %")
    ax.set_title(f"{len(seeds['seeds'])} seeds: each seed (dots), mean ± std (black)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
