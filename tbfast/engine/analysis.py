"""What the recipe's accuracies mean: their uncertainty, the seeds' verdict, the score's routing.

Used by ``tbfast run`` (engine/recipe.py) on the evaluations it has made; every function is pure
(evaluation dicts in, JSON-ready dicts out), so a finished run's figures can be recomputed.

* :func:`single_run` — one seed: every model's 95 % interval over the test videos (Wilson) and an
  exact McNemar test for every pair of models (they are evaluated on the same videos).
* :func:`seed_summary` — several seeds: each model's top-1 per seed, mean ± std, TimeBalance's
  paired wins, and for the comparisons the method is about (TimeBalance against each
  single-teacher student and the supervised-only baseline; each single-teacher student against
  the baseline) a paired bootstrap over seeds *and* test videos (``tbfast.stats``). The verdict
  line says "better" only where that interval excludes 0.
* :func:`mechanism` — does s route videos as the method intends? Over the test videos (s from the
  self-supervised teachers, normalised with the training set's range): per class, the mean s
  against the fine-tuned teachers' accuracies; the correlation of s with "only the invariant
  teacher is right" minus "only the distinctive one is"; and the accuracy of the teachers' mixture
  weighted by s against fixed weights and against s shuffled over the videos.
"""

from __future__ import annotations

import statistics

from tbfast import stats

MODELS = ("supervised", "student_invariant", "student_distinctive", "timebalance")
# (A, B): the claims of the method: TimeBalance beats each single-teacher student and the baseline;
# distilling from a self-supervised teacher beats training on the labels alone
COMPARISONS = (
    ("timebalance", "student_invariant"),
    ("timebalance", "student_distinctive"),
    ("timebalance", "supervised"),
    ("student_invariant", "supervised"),
    ("student_distinctive", "supervised"),
)
SHORT = {
    "supervised": "supervised-only",
    "teacher_invariant": "T_I",
    "teacher_distinctive": "T_D",
    "student_invariant": "s=1",
    "student_distinctive": "s=0",
    "timebalance": "TimeBalance",
}


def single_run(evals: dict) -> tuple[dict, dict, dict]:
    """(95 % interval of every model's video top-1 in points, TimeBalance against every other model,
    every pair of models) from one seed's evaluations (``predictions`` per model)."""
    ci, vs_tb = {}, {}
    for k, v in evals.items():
        n = int(v.get("videos") or 0)
        lo, hi = stats.wilson_interval(int(round(v["video_top1"] * n)), n)
        ci[k] = [round(100 * lo, 2), round(100 * hi, 2)]
    preds = {k: v.get("predictions") for k, v in evals.items()}
    tb = preds.get("timebalance")
    for k, p in preds.items():
        if k != "timebalance" and tb and p:
            r = stats.paired_comparison(tb, p)
            verdict = {"A better": "TimeBalance better", "B better": "TimeBalance worse"}.get(
                r["verdict"], r["verdict"]
            )
            vs_tb[k] = {
                "videos": r["videos"],
                "only_timebalance": r["only_a"],
                "only_other": r["only_b"],
                "p": round(r["p"], 4),
                "verdict": verdict,
            }
    pairs = {key: {**r, "p": round(r["p"], 4)} for key, r in stats.pairwise(preds).items()}
    return ci, vs_tb, pairs


def seed_summary(seed_names: dict[str, list[str]], evals: dict, seeds: list[int], *, resamples: int = 10000) -> dict:
    """Video top-1 of every model for each seed, mean and standard deviation (over seeds, n-1),
    TimeBalance's paired wins / ties / losses (same seed), the seeds-and-videos bootstrap of every
    comparison in :data:`COMPARISONS`, the checks and the verdict line."""
    top1 = {m: [round(100 * evals[n]["video_top1"], 2) for n in names] for m, names in seed_names.items()}
    mean = {m: round(statistics.fmean(v), 2) for m, v in top1.items()}
    std = {m: round(statistics.stdev(v), 2) if len(v) > 1 else 0.0 for m, v in top1.items()}
    tb = top1["timebalance"]
    wins = {}
    for m, v in top1.items():
        if m != "timebalance":
            wins[m] = {
                "wins": sum(a > b for a, b in zip(tb, v)),
                "ties": sum(a == b for a, b in zip(tb, v)),
                "losses": sum(a < b for a, b in zip(tb, v)),
            }
    tests = {}
    correct = {}
    for m, names in seed_names.items():
        if all(evals[n].get("predictions") for n in names):
            correct[m] = stats.correct_matrix([evals[n]["predictions"] for n in names])
    for a, b in COMPARISONS:
        if a in correct and b in correct:
            if correct[a][0] != correct[b][0]:
                raise ValueError(f"{a} and {b} were not evaluated on the same videos")
            r = stats.seeds_videos_bootstrap(correct[a][1], correct[b][1], resamples=resamples)
            r["verdict"] = {"A better": f"{SHORT[a]} better", "B better": f"{SHORT[b]} better"}.get(
                r["verdict"], r["verdict"]
            )
            r["per_seed_mcnemar_p"] = [
                round(stats.paired_comparison(evals[x]["predictions"], evals[y]["predictions"])["p"], 4)
                for x, y in zip(seed_names[a], seed_names[b])
            ]
            tests[f"{a} vs {b}"] = r

    def better(a: str, b: str) -> bool | None:
        t = tests.get(f"{a} vs {b}")
        return None if t is None else t["verdict"] == f"{SHORT[a]} better"

    checks = {
        "timebalance_mean_ge_single_teacher": bool(
            mean["timebalance"] >= mean["student_invariant"] and mean["timebalance"] >= mean["student_distinctive"]
        ),
        "timebalance_mean_gt_supervised": bool(mean["timebalance"] > mean["supervised"]),
    }
    if tests:
        checks.update(
            {
                "timebalance_significantly_better_than_both_single_teachers": bool(
                    better("timebalance", "student_invariant") and better("timebalance", "student_distinctive")
                ),
                "timebalance_significantly_better_than_supervised": bool(better("timebalance", "supervised")),
                "both_single_teachers_significantly_better_than_supervised": bool(
                    better("student_invariant", "supervised") and better("student_distinctive", "supervised")
                ),
            }
        )
    out = {
        "seeds": seeds,
        "top1": top1,
        "mean": mean,
        "std": std,
        "timebalance_paired": wins,
        "tests": tests,
        "checks": checks,
    }
    out["verdict"] = verdict_line(out)
    return out


def verdict_line(sd: dict) -> str:
    """One sentence from the seed means and the bootstrap tests (never from one seed)."""
    n = len(sd["seeds"])
    tests = sd.get("tests") or {}
    videos = next(iter(tests.values()))["videos"] if tests else None
    head = f"Over {n} seed{'s' if n != 1 else ''}" + (f" and {videos} test videos" if videos else "") + ": "
    parts = []
    for key, t in tests.items():
        a, b = key.split(" vs ")
        rel = (
            f"{SHORT[a]} better than {SHORT[b]}"
            if t["verdict"] == f"{SHORT[a]} better"
            else f"{SHORT[b]} better than {SHORT[a]}"
            if t["verdict"] == f"{SHORT[b]} better"
            else f"{SHORT[a]} vs {SHORT[b]}: no significant difference"
        )
        parts.append(f"{rel} ({t['diff']:+.1f} points, 95 % interval {t['ci95'][0]:+.1f} to {t['ci95'][1]:+.1f})")
    if not parts:
        m = sd["mean"]
        return head + ", ".join(f"{SHORT[k]} {m[k]:.1f}" for k in MODELS if k in m) + " (no per-video predictions)"
    c = sd["checks"]
    claim = (
        "TimeBalance is significantly better than both single-teacher students"
        if c.get("timebalance_significantly_better_than_both_single_teachers")
        else "TimeBalance is not shown to be better than both single-teacher students"
    )
    return head + claim + ". " + "; ".join(parts) + "."


def mechanism(
    scores: dict[int, float], teacher_inv: dict, teacher_dis: dict, *, permutations: int = 2000, seed: int = 0
) -> dict:
    """How s relates to which fine-tuned teacher is right, over the videos both teachers were
    evaluated on and that have a score.

    ``scores``: manifest index -> s; ``teacher_inv``/``teacher_dis``: evaluations with
    ``predictions`` (and ``probs`` for the mixture accuracies) and ``classes``."""
    import numpy as np

    pi = {int(i): (int(y), int(p)) for i, y, p in teacher_inv["predictions"]}
    pd = {int(i): (int(y), int(p)) for i, y, p in teacher_dis["predictions"]}
    idx = sorted(i for i in pi if i in pd and i in scores)
    if not idx:
        raise ValueError("no video has both teachers' predictions and a similarity score")
    classes = teacher_inv.get("classes") or [str(c) for c in range(1 + max(y for y, _ in pi.values()))]
    s = np.array([scores[i] for i in idx])
    y = np.array([pi[i][0] for i in idx])
    ri = np.array([pi[i][1] == pi[i][0] for i in idx], dtype=np.float64)
    rd = np.array([pd[i][1] == pd[i][0] for i in idx], dtype=np.float64)
    per_class = {}
    for c, name in enumerate(classes):
        m = y == c
        if m.any():
            per_class[name] = {
                "videos": int(m.sum()),
                "mean_s": round(float(s[m].mean()), 4),
                "teacher_invariant": round(100 * float(ri[m].mean()), 2),
                "teacher_distinctive": round(100 * float(rd[m].mean()), 2),
            }
    cs = [v["mean_s"] for v in per_class.values()]
    cd = [v["teacher_invariant"] - v["teacher_distinctive"] for v in per_class.values()]
    only_i, only_d = (ri == 1) & (rd == 0), (rd == 1) & (ri == 0)

    def r4(x):
        return None if x is None else round(x, 4)

    out = {
        "videos": len(idx),
        "classes": per_class,
        "class_corr_s_vs_TI_minus_TD": {"pearson": r4(stats.pearson(cs, cd)), "spearman": r4(stats.spearman(cs, cd))},
        "video_corr_s_vs_TI_minus_TD": r4(stats.pearson(s, ri - rd)),
        "only_invariant_right": {
            "videos": int(only_i.sum()),
            "mean_s": round(float(s[only_i].mean()), 4) if only_i.any() else None,
        },
        "only_distinctive_right": {
            "videos": int(only_d.sum()),
            "mean_s": round(float(s[only_d].mean()), 4) if only_d.any() else None,
        },
    }
    qi = {int(i): p for (i, _, _), p in zip(teacher_inv["predictions"], teacher_inv.get("probs") or [])}
    qd = {int(i): p for (i, _, _), p in zip(teacher_dis["predictions"], teacher_dis.get("probs") or [])}
    if all(i in qi and i in qd for i in idx):
        a = np.array([qi[i] for i in idx])
        b = np.array([qd[i] for i in idx])

        def acc(w):  # top-1 of w * p_I + (1 - w) * p_D, w per video
            return float(((w[:, None] * a + (1 - w[:, None]) * b).argmax(1) == y).mean())

        rng = np.random.default_rng(seed)
        shuffled = np.array([acc(rng.permutation(s)) for _ in range(permutations)])
        observed = acc(s)
        out["mixture_top1"] = {
            "s": round(100 * observed, 2),
            "1 - s": round(100 * acc(1 - s), 2),
            "0.5": round(100 * acc(np.full_like(s, 0.5)), 2),
            "1 (T_I only)": round(100 * acc(np.ones_like(s)), 2),
            "0 (T_D only)": round(100 * acc(np.zeros_like(s)), 2),
            "s shuffled (mean)": round(100 * float(shuffled.mean()), 2),
        }
        # one-sided: how often routing by a random reassignment of the same scores is at least as good
        out["mixture_permutation_p"] = round(float((1 + (shuffled >= observed).sum()) / (1 + permutations)), 4)
        out["permutations"] = permutations
    return out


def mechanism_text(m: dict) -> list[str]:
    """The report's lines for :func:`mechanism`."""
    lines = [
        f"Over {m['videos']} test videos (s from the self-supervised teachers, normalised with the training "
        "set's range; T_I, T_D: the fine-tuned teachers):",
        "",
        "| class | test videos | mean s | T_I top-1 % | T_D top-1 % | T_I − T_D |",
        "|---|---|---|---|---|---|",
    ]
    for c, v in sorted(m["classes"].items(), key=lambda kv: -kv[1]["mean_s"]):
        lines.append(
            f"| {c} | {v['videos']} | {v['mean_s']:.3f} | {v['teacher_invariant']:.1f} | "
            f"{v['teacher_distinctive']:.1f} | {v['teacher_invariant'] - v['teacher_distinctive']:+.1f} |"
        )
    cc = m["class_corr_s_vs_TI_minus_TD"]
    fmt = lambda x: "-" if x is None else f"{x:+.2f}"  # noqa: E731
    oi, od = m["only_invariant_right"], m["only_distinctive_right"]
    ms = lambda x: "-" if x is None else f"{x:.3f}"  # noqa: E731
    lines += [
        "",
        f"- Correlation over classes of mean s with T_I − T_D: Pearson {fmt(cc['pearson'])}, "
        f"Spearman {fmt(cc['spearman'])}; over videos, of s with (T_I right) − (T_D right): "
        f"{fmt(m['video_corr_s_vs_TI_minus_TD'])}. Positive: the score gives the invariant teacher the "
        "videos it gets right, as the method intends.",
        f"- Videos only T_I gets right: {oi['videos']} (mean s {ms(oi['mean_s'])}); only T_D: "
        f"{od['videos']} (mean s {ms(od['mean_s'])}).",
    ]
    mt = m.get("mixture_top1")
    if mt:
        lines.append(
            "- Top-1 % of the teachers' mixture w·p_I + (1 − w)·p_D: "
            + ", ".join(f"w = {k} {v:.1f}" for k, v in mt.items())
            + f"; routing by s beats s shuffled over the videos with p = {m['mixture_permutation_p']:.3f} "
            f"({m['permutations']} permutations)."
        )
    return lines
