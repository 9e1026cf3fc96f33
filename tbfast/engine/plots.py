"""PNG plots of a run's metrics.jsonl: loss terms and lr per step, epoch loss and accuracy."""

from __future__ import annotations

import json
from pathlib import Path

NON_LOSS = {
    "kind",
    "epoch",
    "step",
    "time",
    "lr",
    "clips_per_s",
    "data_share",
    "batch",
    "rank",
    "world",
    "val_top1",
    "val_top5",
    "val_clip_top1",
    "val_clip_top5",
    "seconds",
    "clips",
    "acc",
}


def _plain_log_ticks(ax) -> None:
    """Log-scale y ticks as plain numbers (0.5, 2, 9), not 9×10⁰."""
    from matplotlib.ticker import FuncFormatter

    f = FuncFormatter(lambda v, _pos: f"{v:g}")
    ax.yaxis.set_major_formatter(f)
    ax.yaxis.set_minor_formatter(f)
    ax.tick_params(axis="y", which="minor", labelsize=6)


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
        terms = [k for k in keys if k != "loss"]
        fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4))
        for k in keys:
            if k == "loss" and len(terms) == 1:
                continue  # the total is the one term (e.g. L_I): drawn once, under the term's name
            xs = [r["step"] for r in steps if r.get(k) is not None]
            style = {"color": "black", "lw": 1.6} if k == "loss" else {"lw": 1.0}
            ax.plot(xs, [r[k] for r in steps if r.get(k) is not None], label=k, **style)
        if epochs:
            ax.plot(
                [r["step"] for r in epochs if r.get("loss") is not None],
                [r["loss"] for r in epochs if r.get("loss") is not None],
                "ko",
                ms=3,
                label="epoch mean (loss)",
            )
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        if keys and all(r.get(k) is None or r[k] > 0 for r in steps for k in keys):
            ax.set_yscale("log")
            _plain_log_ticks(ax)
        ax.legend(fontsize=7, framealpha=0.6, loc="upper right")
        ax.set_title(f"{run_dir.name}: training losses")
        ax2.plot([r["step"] for r in steps], [r.get("lr", 0) for r in steps])
        ax2.set_xlabel("step")
        ax2.set_ylabel("learning rate")
        fig.tight_layout()
        fig.savefig(run_dir / "loss.png", dpi=90)
        plt.close(fig)
        written.append(run_dir / "loss.png")
    acc = [r for r in epochs if r.get("val_top1") is not None]
    train_acc = [r for r in epochs if isinstance(r.get("acc"), (int, float))]
    if acc or train_acc:
        fig, ax = plt.subplots(figsize=(6, 4))
        if train_acc:
            ax.plot(
                [r["epoch"] for r in train_acc],
                [100 * r["acc"] for r in train_acc],
                "-",
                color="tab:gray",
                label="training (clips, augmented)",
            )
        if acc:
            ax.plot([r["epoch"] for r in acc], [100 * r["val_top1"] for r in acc], "o-", label="validation video top-1")
        if any(r.get("val_top5") is not None for r in acc):
            ax.plot(
                [r["epoch"] for r in acc],
                [100 * r.get("val_top5", 0) for r in acc],
                "s--",
                label="validation video top-5",
            )
        ax.set_xlabel("epoch")
        ax.set_ylabel("accuracy (%)")
        ax.set_ylim(0, 100)
        ax.set_title(f"{run_dir.name}: accuracy")
        ax.legend(fontsize=8, framealpha=0.6)
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
        ax.scatter(
            [i + 0.12 * (j - (len(vals) - 1) / 2) for j in range(len(vals))],
            vals,
            s=22,
            alpha=0.7,
            color="tab:blue",
            zorder=2,
            label="one seed" if i == 0 else None,
        )
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


def plot_models(results: dict, out: Path) -> Path:
    """``tbfast run``: every model's video top-1 with its 95 % interval over the test videos, the seed
    means ± std when there are several seeds, and chance level."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    short = {
        "supervised": "supervised\nonly",
        "teacher_invariant": "T_I",
        "teacher_distinctive": "T_D",
        "student_invariant": "student\ns=1",
        "student_distinctive": "student\ns=0",
        "timebalance": "TimeBalance",
    }
    models = [m for m in short if m in results.get("top1_all", {})]
    ci = results.get("top1_ci95") or {}
    sd = results.get("seeds") or {}
    fig, ax = plt.subplots(figsize=(7.5, 4))
    for i, m in enumerate(models):
        v = results["top1_all"][m]
        lo, hi = ci.get(m, (v, v))
        ax.bar(i, v, color="tab:blue" if m == "timebalance" else "tab:gray", alpha=0.8)
        ax.errorbar([i], [v], yerr=[[v - lo], [hi - v]], color="black", capsize=4, lw=1)
        if m in (sd.get("mean") or {}):
            ax.errorbar([i + 0.25], [sd["mean"][m]], yerr=[sd["std"][m]], fmt="D", color="tab:red", ms=4, capsize=3)
    n_classes = len(next(iter((results.get("class_top1_all") or {"": {}}).values())) or {}) or None
    if n_classes:
        ax.axhline(100 / n_classes, ls=":", color="black", lw=1)
        ax.text(
            len(models) - 0.5, 100 / n_classes, f"chance {100 / n_classes:.1f} %", ha="right", va="bottom", fontsize=7
        )
    ax.set_xticks(range(len(models)), [short[m] for m in models], fontsize=8)
    ax.set_ylabel("video top-1 (%)")
    ax.set_ylim(0, 100)
    seeds = f"; red: mean ± std over {len(sd['seeds'])} seeds" if sd else ""
    ax.set_title(f"{results.get('test_videos')} test videos: first seed with 95 % interval{seeds}", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return Path(out)


def plot_mechanism(mech: dict, out: Path) -> Path:
    """Per class: mean s of its test videos against T_I's minus T_D's top-1 (the method wants the
    points to rise to the right: the invariant teacher better where videos are stable)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cls = mech["classes"]
    xs = [v["mean_s"] for v in cls.values()]
    ys = [v["teacher_invariant"] - v["teacher_distinctive"] for v in cls.values()]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.axhline(0, color="black", lw=0.8)
    ax.scatter(xs, ys, color="tab:blue")
    for (name, _v), x, y in zip(cls.items(), xs, ys):
        ax.annotate(name, (x, y), textcoords="offset points", xytext=(4, 3), fontsize=7)
    cc = mech["class_corr_s_vs_TI_minus_TD"]
    ax.set_xlabel("mean similarity score s of the class's test videos")
    ax.set_ylabel("T_I top-1 − T_D top-1 (points)")
    r = "-" if cc["pearson"] is None else f"{cc['pearson']:+.2f}"
    ax.set_title(f"does s route videos to the teacher that is right? (Pearson r = {r})", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return Path(out)


def plot_confusion(confusion: list[list[int]], classes: list[str], out: Path, title: str) -> Path:
    """Video-level confusion matrix (rows: true class), counts in the cells."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(classes)
    size = max(4.0, 0.45 * n + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    im = ax.imshow(confusion, cmap="Blues")
    if n <= 30:
        ax.set_xticks(range(n), classes, rotation=90, fontsize=7)
        ax.set_yticks(range(n), classes, fontsize=7)
        top = max(max(row) for row in confusion) or 1
        for i, row in enumerate(confusion):
            for j, c in enumerate(row):
                if c:
                    ax.text(
                        j, i, str(c), ha="center", va="center", fontsize=7, color="white" if c > top / 2 else "black"
                    )
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return Path(out)
