"""``tbfast run``: the whole TimeBalance recipe end to end, resumable stage by stage.

data (synthetic + prep when no --data) -> labeled split -> SSL invariant, distinctive ->
fine-tune both -> similarity -> supervised-only baseline -> students (s=1, s=0, TimeBalance)
-> evaluation -> report.md + results.json. Stages that read the same data train in one data
pass (SSL pair, fine-tuning pair, baseline + students of a seed: tbfast/engine/shared.py). A
finished stage (its summary.json) is reused when the same OUT is run again; an interrupted one
resumes from its last.pt.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import torch

from tbfast.engine import analysis, stages
from tbfast.engine.checkpoint import atomic_write_bytes
from tbfast.engine.config import DEMO_PRESET, resolve
from tbfast.engine.distributed import Dist, on_main
from tbfast.errors import UserError

STUDENTS = {"student_invariant": "invariant", "student_distinctive": "distinctive", "timebalance": "timebalance"}
LABELS = {
    "supervised": "supervised only (labeled data)",
    "teacher_invariant": "fine-tuned invariant teacher",
    "teacher_distinctive": "fine-tuned distinctive teacher",
    "student_invariant": "student, invariant teacher only (s=1)",
    "student_distinctive": "student, distinctive teacher only (s=0)",
    "timebalance": "TimeBalance student",
}


def _done(run_dir: Path) -> dict | None:
    p = run_dir / "summary.json"
    if p.is_file():
        s = json.loads(p.read_text())
        if s.get("finished"):
            return s
    return None


FINGERPRINT = "recipe_fingerprint.txt"
# settings that do not change what a stage computes
# (DALI's thread count changes how fast the planned clips are made, not which clips: plans are pure Python)
_COSMETIC = {
    "train": ("progress", "log_every", "ckpt_every", "save_every", "val_every"),
    "eval": ("chunk",),
    "data": ("num_threads",),
}


def fingerprint(cfg, **inputs) -> str:
    """What a stage computes: its resolved config (less display settings) and its inputs (split digest,
    upstream stages' fingerprints). Stored with the stage; a re-run reuses it only if they agree."""
    import hashlib

    d = cfg.to_dict()
    d.pop("preset", None)
    d.pop("recipe", None)  # what it selects enters as inputs (manifest, split digest, init)
    for section, keys in _COSMETIC.items():
        for k in keys:
            d.get(section, {}).pop(k, None)
    if not d.get("model", {}).get("width", 1):  # the default: fingerprints from before the option stay valid
        d["model"].pop("width")
    if d.get("data", {}).get("decoder") == "dali":  # the default: fingerprints from before the option stay valid
        d["data"].pop("decoder")
        if d["data"].get("resize") in ("auto", "dali"):  # with DALI's decoder both resize in the graph, as before
            d["data"].pop("resize")
    blob = json.dumps({"config": d, "inputs": inputs}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _refuse(name: str, where: Path, why: str) -> UserError:
    return UserError(
        f"{where} holds the {name} stage of another recipe ({why}): this run's settings or inputs "
        f"differ (e.g. --fraction, --set, the preset or an upstream stage). Use another --out, or "
        f"delete {where} to compute it again"
    )


def _decide(name: str, run_dir: Path, fp: str) -> dict | None:
    """A finished stage with this fingerprint: its summary (reuse it). Otherwise None, after checking
    that an interrupted run there is this stage's (resume it) and marking the folder as this stage's."""
    prev = _done(run_dir)
    marker = run_dir / FINGERPRINT
    was = marker.read_text().strip() if marker.is_file() else None
    if prev is not None and (run_dir / "checkpoints" / "last.pt").exists():
        got = prev.get("fingerprint") or was
        if got != fp:
            raise _refuse(
                name, run_dir, "made by an older tbfast" if got is None else f"fingerprint {got}, this run {fp}"
            )
        return prev
    if (run_dir / "checkpoints" / "last.pt").exists() and was != fp:  # interrupted: resume only the same
        raise _refuse(
            name, run_dir, f"an interrupted run with fingerprint {was or 'none (an older tbfast)'}, this run {fp}"
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(marker, (fp + "\n").encode())
    return None


def _stages_together(group: list[tuple], log, timings: dict, summaries: dict, dist: Dist, shared: bool) -> None:
    """``group``: (name, run_dir, build(pool, teachers) -> shared.Member, fingerprint) of stages that
    read the same data. Finished ones are reused; the others train in one data pass (``shared``) or
    one after the other. Each ends exactly as it would alone (tests/test_shared_pass.py)."""
    if not shared:
        for name, run_dir, build, fp in group:
            _stage(
                name,
                run_dir,
                lambda build=build: stages.fit_alone(build(None, None)),
                log,
                timings,
                summaries,
                fp,
                dist,
            )
        return
    todo = []
    for name, run_dir, build, fp in group:
        prev = on_main(dist, lambda name=name, run_dir=run_dir, fp=fp: _decide(name, run_dir, fp))
        if prev is not None:
            log(f"== {name}: already done ({run_dir}), reusing")
            summaries[name] = prev
            # a stage of a shared pass records the pass's wall time: count the pass once
            timings[" + ".join(prev.get("shared_pass") or [name])] = prev.get("wall_seconds", 0.0)
        else:
            todo.append((name, run_dir, build, fp))
    if not todo:
        return
    names = [t[0] for t in todo]
    log(f"== {' + '.join(names)}" + (" (one data pass)" if len(todo) > 1 else ""))
    t0 = time.perf_counter()
    done, counts = stages.train_pass([build for _, _, build, _ in todo], log=log)
    wall = round(time.perf_counter() - t0, 2)
    for name, run_dir, _, fp in todo:
        s = done[name]
        s.update(fingerprint=fp, wall_seconds=wall, shared_pass=names, pass_batches=counts)
        stages.write_summary(run_dir, s, dist)
        summaries[name] = s
    timings[" + ".join(names)] = wall


def _stage(name: str, run_dir: Path, fn, log, timings: dict, summaries: dict, fp: str, dist: Dist) -> dict:
    prev = on_main(dist, lambda: _decide(name, run_dir, fp))  # rank 0 reads and writes; every rank follows
    if prev is not None:
        log(f"== {name}: already done ({run_dir}), reusing")
        summaries[name] = prev
        timings[name] = prev.get("wall_seconds", 0.0)
        return prev
    log(f"== {name}")
    t0 = time.perf_counter()
    s = fn()
    s["fingerprint"] = fp
    s["wall_seconds"] = round(time.perf_counter() - t0, 2)
    stages.write_summary(run_dir, s, dist)
    summaries[name] = s
    timings[name] = s["wall_seconds"]
    return s


def _digest(path: Path) -> str:
    from tbfast.data.manifest import file_checksum

    return file_checksum(path) if path.is_file() else ""


def prepare_synthetic(out: Path, cfg, log) -> Path:
    from tbfast.data.prep import prepare
    from tbfast.data.synthetic import make_synthetic_dataset

    raw = out / "data" / "synthetic"
    prepared = out / "data" / "prepared"
    if not (prepared / "manifest.jsonl").is_file():
        log(f"== data: synthetic videos -> {raw}")
        make_synthetic_dataset(raw, **cfg.recipe.synthetic)
        log(f"== data: prep -> {prepared}")
        report = prepare(raw, prepared, "ucf101", show_progress=cfg.train.progress, **cfg.recipe.prep)
        if (report.get("counts") or {}).get("failed") or report.get("failures"):
            raise UserError(f"preparing the synthetic data failed: see {prepared / 'prep_report.json'}")
    return prepared


def run_recipe(
    out,
    *,
    data=None,
    preset: str | None = None,
    fraction: float | None = None,
    overrides: dict | None = None,
    log=print,
    seeds: int | None = None,
) -> dict:
    from tbfast.data.splits import parse_fraction

    t_start = time.perf_counter()
    out = Path(out)
    if fraction is not None:  # before any work: a wrong --fraction is found in a second, not after prep
        fraction = parse_fraction(fraction)
    if seeds is not None and int(seeds) < 1:
        raise UserError(f"--seeds {seeds}: give 1 or more")
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; give a folder (created if missing)")
    out.mkdir(parents=True, exist_ok=True)
    preset = preset or (DEMO_PRESET if data is None else "ucf101_r3d18")
    ov = overrides or {}

    def cfg_of(stage: str, extra: dict | None = None):
        merged = json.loads(json.dumps(ov))
        for section, values in (extra or {}).items():
            merged.setdefault(section, {}).update(values)
        return resolve(stage, preset, merged)

    base = cfg_of("run")
    if seeds is None:
        seeds = base.recipe.seeds
    from tbfast.engine.distributed import cleanup, setup

    # under torchrun: the training stages run on every rank (DDP); data, splits, similarity,
    # evaluation and the reports on rank 0, which hands its results to the others
    dist = setup(base.train.device)
    try:
        return _run(
            out,
            data,
            preset,
            fraction,
            cfg_of,
            base,
            dist,
            log if dist.main else (lambda line: None),
            t_start,
            int(seeds),
        )
    finally:
        cleanup(dist)


def _clock(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m // 60}:{m % 60:02d}:{s:02d}" if m >= 60 else f"{m}:{s:02d}"


class _Steps:
    """The recipe's "[k/n] what" lines, with the time so far; once a seed's student pass has run, the
    time the remaining passes will take at its pace."""

    def __init__(self, total: int, log, t_start: float):
        self.k, self.total, self.log, self.t_start = 0, total, log, t_start

    def next(self, what: str) -> None:
        self.k += 1
        self.log(f"== [{self.k}/{self.total}] {what} ({_clock(time.perf_counter() - self.t_start)} so far)")

    def pass_done(self, seconds: float, left: int) -> None:
        if left:  # (whatever the pass took: a test must not depend on the machine's speed)
            self.log(
                f"   that pass took {_clock(seconds)}: about {_clock(seconds * left)} more for the "
                f"{left} remaining seed{'s' if left != 1 else ''}, then the evaluation"
            )


def _run(out, data, preset, fraction, cfg_of, base, dist: Dist, log, t_start, seeds: int = 1) -> dict:
    from tbfast.data.splits import write_label_split

    local = Dist(device=dist.device)  # one-process work on rank 0
    timings: dict[str, float] = {}
    summaries: dict[str, dict] = {}
    steps = _Steps(5 + seeds, log, t_start)
    steps.next("data" + (" (the built-in synthetic videos)" if data is None else f" ({data})"))
    t0 = time.perf_counter()
    prepared = Path(on_main(dist, lambda: str(Path(data) if data is not None else prepare_synthetic(out, base, log))))
    timings["data"] = round(time.perf_counter() - t0, 2)
    frac = base.recipe.fraction if fraction is None else fraction
    labeled, unlabeled, digest = on_main(dist, lambda: write_label_split(prepared, frac, base.recipe.split_seed))
    log(f"== labeled split {labeled.name} ({frac:g}, seed {base.recipe.split_seed}), sha256 {digest[:12]}")

    d = {
        n: out / n
        for n in ("invariant", "distinctive", "finetune_invariant", "finetune_distinctive", "supervised", *STUDENTS)
    }
    ck = {n: d[n] / "checkpoints" / "last.pt" for n in d}
    student_init = base.recipe.student_init
    if student_init in ("invariant", "distinctive"):
        student_init = ck[student_init]
    elif student_init != "scratch" and not Path(student_init).is_file():
        raise UserError(
            f"recipe.student_init {student_init!r}: use scratch, invariant, distinctive or a checkpoint file"
        )
    data_id = {"prepared": str(Path(prepared).resolve()), "manifest": _digest(Path(prepared) / "manifest.jsonl")}
    shared = base.recipe.shared_passes

    def tagged(name):
        def emit(line: str) -> None:
            if line.startswith("no checkpoint in "):  # every fresh stage of a recipe starts so; a resumed one says so
                return
            log(f"[{name}] {line}")

        return emit

    fps = {n: fingerprint(cfg_of(n), **data_id) for n in ("invariant", "distinctive")}
    steps.next("self-supervised pretraining: invariant and distinctive teachers")
    _stages_together(
        [
            (
                kind,
                d[kind],
                lambda pool, _t, kind=kind: stages.ssl_member(
                    cfg_of(kind), prepared, d[kind], dist=dist, resume="auto", log=tagged(kind), pool=pool, name=kind
                ),
                fps[kind],
            )
            for kind in ("invariant", "distinctive")
        ],
        log,
        timings,
        summaries,
        dist,
        shared,
    )
    group = []
    for kind in ("invariant", "distinctive"):
        name = f"finetune_{kind}"
        fps[name] = fingerprint(cfg_of("finetune"), **data_id, split=digest, init=fps[kind])
        group.append(
            (
                name,
                d[name],
                lambda pool, _t, kind=kind, name=name: stages.classifier_member(
                    cfg_of("finetune"),
                    prepared,
                    d[name],
                    dist=dist,
                    labeled=labeled,
                    init=ck[kind],
                    resume="auto",
                    log=tagged(name),
                    pool=pool,
                    name=name,
                ),
                fps[name],
            )
        )
    steps.next("fine-tuning both teachers on the labeled videos")
    _stages_together(group, log, timings, summaries, dist, shared)
    sim_file = out / "similarity.csv"
    fps["similarity"] = fingerprint(cfg_of("similarity"), **data_id, ssl=[fps["invariant"], fps["distinctive"]])

    def similarity():
        sim_prev = json.loads((out / "similarity.json").read_text()) if (out / "similarity.json").is_file() else None
        if sim_file.is_file() and sim_prev is not None:
            if sim_prev.get("fingerprint") != fps["similarity"]:
                raise _refuse("similarity", out / "similarity.json", "scores of other self-supervised teachers")
            return sim_prev, sim_prev.get("seconds", 0.0)
        log("== similarity")
        t0 = time.perf_counter()
        summary = stages.compute_similarity(
            cfg_of("similarity"),
            prepared,
            sim_file,
            invariant=ck["invariant"],
            distinctive=ck["distinctive"],
            dist=local,
            log=log,
        )
        summary["fingerprint"] = fps["similarity"]
        atomic_write_bytes(out / "similarity.json", json.dumps(summary, indent=2).encode())
        return summary, round(time.perf_counter() - t0, 2)

    steps.next("temporal-similarity scores")
    summaries["similarity"], timings["similarity"] = on_main(dist, similarity)
    init_id = fps.get(base.recipe.student_init, str(student_init))
    # the supervised-only baseline and the three students, for each seed (seed k: train.seed + k;
    # run directories NAME for the first seed, NAME_seedK after it)
    seed_names: dict[str, list[str]] = {n: [] for n in ("supervised", *STUDENTS)}
    for k in range(seeds):
        extra = {"train": {"seed": base.train.seed + k}} if k else {}
        tag = f"_seed{k}" if k else ""
        name = "supervised" + tag
        seed_names["supervised"].append(name)
        d[name] = out / name
        ck[name] = d[name] / "checkpoints" / "last.pt"
        fps[name] = fingerprint(cfg_of("supervised", extra), **data_id, split=digest)
        group = [
            (
                name,
                d[name],
                lambda pool, _t, name=name, extra=extra: stages.classifier_member(
                    cfg_of("supervised", extra),
                    prepared,
                    d[name],
                    dist=dist,
                    labeled=labeled,
                    init="scratch",
                    resume="auto",
                    log=tagged(name),
                    pool=pool,
                    name=name,
                ),
                fps[name],
            )
        ]
        for student, weighting in STUDENTS.items():
            name = student + tag
            seed_names[student].append(name)
            d[name] = out / name
            ck[name] = d[name] / "checkpoints" / "last.pt"
            scfg = cfg_of("student", {"loss": {"weighting": weighting}, **extra})
            fps[name] = fingerprint(
                scfg,
                **data_id,
                split=digest,
                init=init_id,
                similarity=fps["similarity"],
                teachers=[fps["finetune_invariant"], fps["finetune_distinctive"]],
            )
            group.append(
                (
                    name,
                    d[name],
                    lambda pool, teachers, name=name, scfg=scfg: stages.student_member(
                        scfg,
                        prepared,
                        d[name],
                        dist=dist,
                        labeled=labeled,
                        unlabeled=unlabeled,
                        teacher_inv=ck["finetune_invariant"],
                        teacher_dis=ck["finetune_distinctive"],
                        similarity=sim_file,
                        init=student_init,
                        resume="auto",
                        log=tagged(name),
                        pool=pool,
                        teachers=teachers,
                        name=name,
                    ),
                    fps[name],
                )
            )
        steps.next(
            f"supervised-only baseline and the three students, seed {base.train.seed + k}"
            + (f" ({k + 1} of {seeds})" if seeds > 1 else "")
        )
        t0 = time.perf_counter()
        _stages_together(group, log, timings, summaries, dist, shared)
        steps.pass_done(time.perf_counter() - t0, seeds - k - 1)

    def mechanism_report(evals: dict) -> dict | None:
        """s of the test videos (normalised with the training set's range) against the fine-tuned
        teachers' test predictions (tbfast/engine/analysis.py)."""
        sim_test = out / "similarity_test.csv"
        meta = out / "similarity_test.json"
        prev = json.loads(meta.read_text()) if meta.is_file() else None
        if not (sim_test.is_file() and prev is not None and prev.get("fingerprint") == fps["similarity"]):
            scfg = cfg_of("similarity")
            scfg.train.progress = False
            summary = stages.compute_similarity(
                scfg,
                prepared,
                sim_test,
                invariant=ck["invariant"],
                distinctive=ck["distinctive"],
                dist=local,
                log=log,
                split="test",
                reference=sim_file,
            )
            summary["fingerprint"] = fps["similarity"]
            atomic_write_bytes(meta, json.dumps(summary, indent=2).encode())
        import csv

        with open(sim_test, newline="") as f:
            scores = {int(r["index"]): float(r["score"]) for r in csv.DictReader(f)}
        try:
            return analysis.mechanism(scores, evals["teacher_invariant"], evals["teacher_distinctive"])
        except ValueError as exc:
            log(f"(mechanism report skipped: {exc})")
            return None

    def evaluate_and_report():
        steps.next("evaluation on the test videos and the report")
        evals = {}
        t0 = time.perf_counter()
        extra_seeds = [(n, n) for names in seed_names.values() for n in names[1:]]
        for name, src in (
            ("supervised", "supervised"),
            ("teacher_invariant", "finetune_invariant"),
            ("teacher_distinctive", "finetune_distinctive"),
            *((n, n) for n in STUDENTS),
            *extra_seeds,
        ):
            res_file = d[src] / "eval.json"
            ecfg = cfg_of("eval")
            efp = fingerprint(ecfg, **data_id, model=fps[src])
            probs = name.startswith("teacher_")  # the mechanism report mixes the teachers' probabilities
            if res_file.is_file():
                prev = json.loads(res_file.read_text())
                # older files lack predictions (or the teachers' probabilities): redo
                if prev.get("fingerprint") == efp and "predictions" in prev and (not probs or "probs" in prev):
                    evals[name] = prev
                    continue
            ecfg.train.progress = False
            evals[name] = stages.evaluate_checkpoint(
                ecfg, prepared, ck[src], dist=local, split="test", log=log, keep_probs=probs
            )
            evals[name]["fingerprint"] = efp
            atomic_write_bytes(res_file, json.dumps(evals[name], indent=2).encode())
        mech = mechanism_report(evals)
        timings["eval"] = round(time.perf_counter() - t0, 2)
        call = round(time.perf_counter() - t_start, 2)
        # the recipe's time: every stage's recorded wall time (a reused stage counts the time it took when
        # it ran), so a second call that reuses everything reports the recipe's time, not its own
        total = round(sum(timings.values()), 2)
        per_seed = {k: v for k, v in evals.items() if "_seed" in k}
        results = build_results(
            out,
            prepared,
            preset,
            frac,
            summaries,
            {k: v for k, v in evals.items() if k not in per_seed},
            timings,
            total,
        )
        results["student_init"] = base.recipe.student_init
        ecfg = cfg_of("eval")
        results["eval"] = {"clips": ecfg.eval.clips, "crops": ecfg.eval.crops}
        results["world"] = dist.world
        results["seeds_trained"] = seeds
        results["call_seconds"] = call
        if mech is not None:
            results["mechanism"] = mech
        if seeds > 1:
            results["seeds"] = analysis.seed_summary(seed_names, evals, [base.train.seed + k for k in range(seeds)])
            try:
                from tbfast.engine.plots import plot_seeds

                plot_seeds(results["seeds"], out / "seeds.png")
            except Exception as exc:  # a plot is a convenience, never a failure
                log(f"(seed plot skipped: {exc})")
        try:  # pictures are a convenience, never a failure
            from tbfast.engine.plots import plot_confusion, plot_mechanism, plot_models

            plot_models(results, out / "models.png")
            if mech is not None:
                plot_mechanism(mech, out / "mechanism.png")
            for name, label in LABELS.items():  # one picture per model: confusion_MODEL.png
                ev = evals.get(name) or {}
                if ev.get("confusion"):
                    plot_confusion(
                        ev["confusion"],
                        ev.get("classes") or [str(i) for i in range(len(ev["confusion"]))],
                        out / f"confusion_{name}.png",
                        f"{label}{' (first seed)' if seeds > 1 and name in seed_names else ''}: test videos",
                    )
        except Exception as exc:
            log(f"(pictures skipped: {exc})")
        atomic_write_bytes(out / "results.json", json.dumps(results, indent=2).encode())
        atomic_write_bytes(out / "report.md", render_report(results).encode())
        return results

    return on_main(dist, evaluate_and_report)


def build_results(out, prepared, preset, frac, summaries, evals, timings, total) -> dict:
    acc = {k: round(100 * v["video_top1"], 2) for k, v in evals.items()}
    acc5 = {k: round(100 * v["video_top5"], 2) for k, v in evals.items()}
    clip_acc = {k: round(100 * v["clip_top1"], 2) for k, v in evals.items()}
    cps = {k: v.get("clips_per_s") for k, v in summaries.items()}
    cps["eval"] = round(
        sum(v["clips"] for v in evals.values()) / max(sum(v["seconds"] for v in evals.values()), 1e-9), 2
    )
    tb, si, sd, sup = (acc.get(k) for k in ("timebalance", "student_invariant", "student_distinctive", "supervised"))
    ci, paired, pairs = analysis.single_run(evals)
    sig = {m: v["verdict"] == "TimeBalance better" for m, v in paired.items()}
    return {
        "preset": preset,
        "prepared": str(prepared),
        "fraction": frac,
        "test_videos": next(iter(evals.values()))["videos"] if evals else 0,
        "top1": {
            k: acc[k] for k in ("supervised", "student_invariant", "student_distinctive", "timebalance") if k in acc
        },
        "top1_all": acc,
        "top5_all": acc5,
        "clip_top1_all": clip_acc,
        "class_top1_all": {
            k: {c: round(100 * a, 2) if a is not None else None for c, a in v["class_top1"].items()}
            for k, v in evals.items()
            if isinstance(v.get("class_top1"), dict)
        },
        "clips_per_s": cps,
        "seconds": timings,
        "total_seconds": total,
        "top1_ci95": ci,
        "timebalance_paired": paired,
        "paired_all": pairs,
        "checks": {
            "timebalance_ge_single_teacher": None if None in (tb, si, sd) else bool(tb >= si and tb >= sd),
            "timebalance_gt_supervised": None if None in (tb, sup) else bool(tb > sup),
            # the same claims where they hold beyond the test set's noise (McNemar, p < 0.05)
            "timebalance_significantly_better_than_both_single_teachers": bool(
                sig.get("student_invariant") and sig.get("student_distinctive")
            )
            if paired
            else None,
            "timebalance_significantly_better_than_supervised": bool(sig.get("supervised")) if paired else None,
        },
        "similarity": {k: summaries.get("similarity", {}).get(k) for k in ("mean_score", "class_mean_score")},
        "machine": {
            "platform": platform.platform(),
            "cpus": __import__("os").cpu_count(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        },
    }


def _short_pair(key: str) -> str:
    a, b = key.split(" vs ")
    return f"{analysis.SHORT.get(a, a)} vs {analysis.SHORT.get(b, b)}"


def _short_verdict(verdict: str) -> str:
    head = verdict.removesuffix(" better")
    return f"{analysis.SHORT.get(head, head)} better" if verdict.endswith(" better") else verdict


def _eval_text(e: dict | None) -> str:
    if not e:
        return "evaluation settings not recorded"
    crops = "centre crop" if e["crops"] == 1 else f"{e['crops']} crops per clip (averaged)"
    return f"{e['clips']} clip{'s' if e['clips'] != 1 else ''} per video, {crops}"


def render_summary(r: dict, out: str | Path) -> str:
    """What ``tbfast run`` prints at the end: one screen, at most 80 columns (report.md has the rest)."""
    import textwrap

    sd = r.get("seeds")
    ci = r.get("top1_ci95") or {}
    n = len(sd["seeds"]) if sd else 1
    first = f"seed {sd['seeds'][0]}" if sd else "top-1"
    head = f"{'video top-1 %':<40} {first:>7} {'95 % interval':>13}" + (f" {f'{n} seeds':>14}" if sd else "")
    lines = [
        f"tbfast run: {r['preset']}, {r['fraction']:g} labeled, {r['test_videos']} test videos, "
        f"{r['total_seconds']:.0f} s",
        "",
        head,
        "-" * len(head),
    ]
    for k, label in LABELS.items():
        if k not in r["top1_all"]:
            continue
        iv = f"{ci[k][0]:.1f}-{ci[k][1]:.1f}" if k in ci else "-"
        row = f"{label:<40} {r['top1_all'][k]:>7.2f} {iv:>13}"
        if sd and k in sd["mean"]:
            spread = f"{sd['mean'][k]:.2f} ± {sd['std'][k]:.2f}"
            row += f" {spread:>14}"
        lines.append(row)
    lines.append("")
    verdict = (
        f"Verdict: {sd['verdict']}"
        if sd
        else "One seed: its intervals cover the test set's noise, not the training's; run --seeds 3 for a verdict."
    )
    lines += textwrap.wrap(verdict, 80, break_long_words=False)
    lines += [
        "Full report (per class, paired tests, mechanism, pictures) and figures:",
        f"  {Path(out) / 'report.md'}",
        f"  {Path(out) / 'results.json'}",
    ]
    return "\n".join(lines)


def render_report(r: dict) -> str:
    lines = [
        f"# tbfast run: TimeBalance recipe ({r['preset']}, {r['fraction']:g} labeled)",
        "",
        f"Data: `{r['prepared']}`; {r['test_videos']} test videos; " + _eval_text(r.get("eval")) + ".",
        f"Students initialised from: {r.get('student_init', 'scratch')} (supervised-only baseline: scratch).",
        f"Total wall time: {r['total_seconds']:.0f} s on {r['machine']['cpus']} CPU(s)"
        + (f", GPU {r['machine']['cuda']}" if r["machine"]["cuda"] else "")
        + ".",
        "",
        (
            f"**Verdict.** {r['seeds']['verdict']}"
            if r.get("seeds")
            else "**One seed** (`--seeds 1`): the figures below are one training run; their intervals cover the test "
            "set's noise, not the training's. Run with `--seeds 3` (the default) for a verdict."
        ),
        "",
        "| model | video top-1 % | 95 % interval (test videos) | video top-5 % | clip top-1 % |",
        "|---|---|---|---|---|",
    ]
    n_classes = len(next(iter((r.get("class_top1_all") or {"": {}}).values())) or {})
    ci = r.get("top1_ci95") or {}
    for k, label in LABELS.items():
        if k in r["top1_all"]:
            iv = f"{ci[k][0]:.1f}–{ci[k][1]:.1f}" if k in ci else "-"
            lines.append(
                f"| {label} | {r['top1_all'][k]:.2f} | {iv} | {r['top5_all'][k]:.2f} | {r['clip_top1_all'][k]:.2f} |"
            )
    if n_classes:
        lines += ["", f"Chance level: {100 / n_classes:.1f} % ({n_classes} classes)."]
    pw = r.get("timebalance_paired") or {}
    if pw:
        lines += [
            "",
            "TimeBalance against each model on the same test videos (exact McNemar test: videos only "
            'one of the two gets right; "better" only where p < 0.05):',
            "",
            "| other model | only TimeBalance right | only the other right | p | verdict |",
            "|---|---|---|---|---|",
        ]
        for k, v in pw.items():
            lines.append(
                f"| {LABELS.get(k, k)} | {v['only_timebalance']} | {v['only_other']} | {v['p']:.3f} | {v['verdict']} |"
            )
    allp = r.get("paired_all") or {}
    if allp:
        sig = [(k, v) for k, v in allp.items() if v["verdict"] != "no significant difference"]
        lines += [
            "",
            f"Every pair of models on the same test videos (exact McNemar): {len(sig)} of {len(allp)} pairs "
            "differ significantly"
            + (
                ": "
                + "; ".join(
                    f"{_short_pair(k)}: {_short_verdict(v['verdict'])} ({v['only_a']} vs {v['only_b']} videos, "
                    f"p = {v['p']:.3f})"
                    for k, v in sig
                )
                if sig
                else ""
            )
            + " (results.json: paired_all).",
        ]
    c = r["checks"]
    sd = r.get("seeds")
    if sd:
        n = len(sd["seeds"])
        lines += [
            "",
            f"## Over {n} seeds",
            "",
            f"train.seed {', '.join(map(str, sd['seeds']))} (the tables above are the first seed), video top-1 %:",
            "",
            "| model | " + " | ".join(f"seed {x}" for x in sd["seeds"]) + " | mean ± std |",
            "|---|" + "---|" * (n + 1),
        ]
        for k in ("supervised", "student_invariant", "student_distinctive", "timebalance"):
            lines.append(
                f"| {LABELS[k]} | "
                + " | ".join(f"{v:.2f}" for v in sd["top1"][k])
                + f" | {sd['mean'][k]:.2f} ± {sd['std'][k]:.2f} |"
            )
        pw = sd["timebalance_paired"]
        lines += [
            "",
            "TimeBalance against each model on the same seed (wins / ties / losses): "
            + "; ".join(f"{LABELS[m]} {w['wins']}/{w['ties']}/{w['losses']}" for m, w in pw.items())
            + ".",
        ]
        tests = sd.get("tests") or {}
        if tests:
            t0_ = next(iter(tests.values()))
            lines += [
                "",
                f"Paired bootstrap over seeds and test videos ({t0_['resamples']} resamples: seeds drawn with "
                "replacement, then test videos; the interval holds both the training noise and the test "
                'set\'s; "better" only where it excludes 0):',
                "",
                "| comparison | mean difference (points) | 95 % interval | p | McNemar p per seed | verdict |",
                "|---|---|---|---|---|---|",
            ]
            for k, t in tests.items():
                lines.append(
                    f"| {_short_pair(k)} | {t['diff']:+.2f} | {t['ci95'][0]:+.2f} to {t['ci95'][1]:+.2f} | "
                    f"{t['p']:.3f} | {', '.join(f'{p:.3f}' for p in t['per_seed_mcnemar_p'])} | "
                    f"{t['verdict']} |"
                )
        lines += [
            "",
            f"**Verdict.** {sd['verdict']}",
            "",
            f"- TimeBalance's mean ≥ both single-teacher students' means: "
            f"**{sd['checks']['timebalance_mean_ge_single_teacher']}**",
            f"- TimeBalance's mean > the supervised-only baseline's mean: "
            f"**{sd['checks']['timebalance_mean_gt_supervised']}**",
        ]
        for key, text in (
            (
                "timebalance_significantly_better_than_both_single_teachers",
                "TimeBalance significantly better than both single-teacher students",
            ),
            (
                "both_single_teachers_significantly_better_than_supervised",
                "both single-teacher students significantly better than supervised-only",
            ),
        ):
            if key in sd["checks"]:
                lines.append(f"- {text} (seeds and videos): **{sd['checks'][key]}**")
        lines += ["", "First seed only (one seed is not evidence: the seeds' spread above is the noise):"]
    lines += [
        "",
        f"- TimeBalance ≥ both single-teacher students: **{c['timebalance_ge_single_teacher']}**"
        + (
            f" (significantly better than both: **{c['timebalance_significantly_better_than_both_single_teachers']}**)"
            if c.get("timebalance_significantly_better_than_both_single_teachers") is not None
            else ""
        ),
        f"- TimeBalance > supervised-only baseline: **{c['timebalance_gt_supervised']}**"
        + (
            f" (significantly: **{c['timebalance_significantly_better_than_supervised']}**)"
            if c.get("timebalance_significantly_better_than_supervised") is not None
            else ""
        ),
        "",
        "| stage | wall s | clips/s (training) |",
        "|---|---|---|",
    ]
    for k, sec in r["seconds"].items():
        cps = r["clips_per_s"].get(k)
        lines.append(f"| {k} | {sec:.1f} | {cps if cps is not None else '-'} |")
    sim = (r.get("similarity") or {}).get("class_mean_score") or {}
    per = r.get("class_top1_all") or {}
    models = [k for k in LABELS if k in per]
    classes = list(next(iter(per.values()))) if per else list(sim)
    if classes:
        short = {
            "supervised": "sup.",
            "teacher_invariant": "T_I",
            "teacher_distinctive": "T_D",
            "student_invariant": "s=1",
            "student_distinctive": "s=0",
            "timebalance": "TB",
        }
        lines += [
            "",
            "Per class: mean temporal-similarity score s of its training videos (1 = all weight on the "
            "invariant teacher) and video top-1 % (T_I, T_D: fine-tuned teachers; s=1, s=0, TB: students)"
            + (f"; mean s over all videos {r['similarity']['mean_score']:.3f}." if sim else "."),
            "",
            "| class | mean s | " + " | ".join(short[m] for m in models) + " |",
            "|---|---|" + "---|" * len(models),
        ]
        for c_ in classes:
            cells = [f"{per[m][c_]:.1f}" if per[m].get(c_) is not None else "-" for m in models]
            s_ = f"{sim[c_]:.3f}" if c_ in sim else "-"
            lines.append(f"| {c_} | {s_} | " + " | ".join(cells) + " |")
    if r.get("mechanism"):
        lines += ["", "## Does s route videos to the teacher that is right on them?", ""]
        lines += analysis.mechanism_text(r["mechanism"])
    lines += [
        "",
        "Pictures: `models.png` (every model's top-1 with its interval, the seed means, chance level), "
        "`mechanism.png` (per class: mean s against T_I − T_D), `confusion_MODEL.png` (one per model), "
        "`seeds.png`, "
        "`similarity.png`.",
    ]
    lines += [
        "",
        "Each stage's run directory holds config.yaml, metrics.jsonl, loss.png, checkpoints/ "
        "and summary.json; results.json has every figure of this page.",
        "",
    ]
    return "\n".join(lines)
