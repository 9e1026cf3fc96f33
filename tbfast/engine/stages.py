"""Each stage of the recipe as one function: build loaders, model and task, then train or score.

Used by the ``tbfast train ...``, ``similarity``, ``eval`` commands and by ``tbfast run``.
Every function returns a JSON-able summary (also written as ``summary.json`` in its run directory).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

import torch

from tbfast.engine import checkpoint as ck
from tbfast.engine.config import SSL_STAGES, Config, config_from_dict
from tbfast.engine.distributed import Dist
from tbfast.engine.nets import ClassNet, SSLNet, load_backbone
from tbfast.errors import UserError

CLASSIFIER_STAGES = ("finetune", "supervised", "student")


def _log_default(line: str) -> None:
    import sys

    print(line, file=sys.stderr, flush=True)


def augmented_spec(mode: str, cfg: Config):
    """METHOD.md's clip spec for ``mode`` (ssl | train) with the config's augmentation overrides."""
    from dataclasses import fields, replace

    from tbfast.data.plans import AugSpec, default_spec

    spec = default_spec(mode)
    crop = cfg.data.ssl_crop_scale if mode == "ssl" else cfg.data.train_crop_scale
    extra = dict(cfg.data.ssl_aug if mode == "ssl" else cfg.data.train_aug)
    if crop:
        extra.setdefault("crop_scale", crop)
    names = {f.name: type(getattr(spec.aug, f.name)) for f in fields(AugSpec)}
    for key, value in extra.items():
        if key not in names:
            raise UserError(f"data.{mode}_aug: unknown augmentation field {key!r} (fields: {', '.join(names)})")
        try:
            extra[key] = tuple(float(v) for v in value) if names[key] is tuple else names[key](value)
        except (TypeError, ValueError):
            raise UserError(f"data.{mode}_aug.{key}: bad value {value!r}") from None
    return replace(spec, aug=replace(spec.aug, **extra)) if extra else spec


def make_loader(
    prepared,
    mode: str,
    cfg: Config,
    dist: Dist,
    *,
    indices=None,
    split: str = "train",
    batch_size: int | None = None,
    shard: bool = True,
    records=None,
    spec=None,
    augment=None,
    pool=None,
):
    """``pool`` (a ``shared.LoaderPool``): models of one shared pass get views of one loader per
    distinct setting."""
    from dali_pipelines import build_loader

    gpu = dist.device.type == "cuda"
    kw = {"records": records} if records is not None else {}
    if spec is None and mode in ("ssl", "train"):
        spec = augmented_spec(mode, cfg)
    settings = dict(
        indices=indices,
        split=split,
        batch_size=batch_size or cfg.data.batch_size,
        size=cfg.data.size,
        device="gpu" if gpu else "cpu",
        device_id=dist.device.index if gpu else None,
        num_threads=cfg.data.num_threads,
        decoder=cfg.data.decoder,
        resize=cfg.data.resize,
        seed=cfg.train.seed,
        shard_id=dist.rank if shard else 0,
        num_shards=dist.world if shard else 1,
        augment=cfg.data.augment if augment is None else augment,
        spec=spec,
        **kw,
    )
    if pool is None:
        return build_loader(prepared, mode, **settings)
    return pool.get(
        lambda: build_loader(prepared, mode, **settings), prepared=str(Path(prepared).resolve()), mode=mode, **settings
    )


def split_list_indices(prepared, split_file, records, what: str):
    """Manifest indices of a split list (None for none); ``what`` names it in the error."""
    from tbfast.data.manifest import read_split_list

    return None if split_file is None else read_split_list(prepared, split_file, what)


def _check_prepared(prepared) -> tuple[list, list[str]]:
    from tbfast.data.manifest import read_classes, read_manifest

    p = Path(prepared)
    if not (p / "manifest.jsonl").is_file():
        raise UserError(f"{p} is not a prepared dataset (no manifest.jsonl); run `tbfast data prep` first")
    return read_manifest(p), read_classes(p)


def _inputs(prepared, **files) -> dict:
    """A run's input files for provenance.json: the prepared data's manifest and the given files
    (split lists found as every command finds them: ``manifest.resolve_split_list``)."""
    from tbfast.data.manifest import MANIFEST, resolve_split_list

    out: dict = {"data_manifest": Path(prepared) / MANIFEST}
    for name, f in files.items():
        if f is None or str(f) in ("", "scratch"):
            out[name] = None
            continue
        p = Path(str(f))
        if name in ("labeled", "unlabeled"):
            p = resolve_split_list(prepared, p) or p
        out[name] = p
    return out


def _seed(cfg: Config, dist: Dist) -> None:
    torch.manual_seed(cfg.train.seed + dist.rank)


def write_summary(run_dir: Path, summary: dict, dist: Dist) -> None:
    if dist.main:
        from tbfast.engine.checkpoint import atomic_write_bytes

        atomic_write_bytes(Path(run_dir) / "summary.json", json.dumps(summary, indent=2).encode())


def fit_alone(member) -> dict:
    ck.set_rng_state(member.rng)  # as it was when the member was built (dropout draws from it)
    return member.summarize(member.trainer.fit())


def train_together(members: list, *, pool=None, log=_log_default) -> dict[str, dict]:
    """Train the members (from the ``*_member`` builders, sharing ``pool``) in one data pass; returns
    their summaries by name. A member that failed is named in the error raised after the others ended."""
    from tbfast.engine.shared import fit_together

    res = fit_together(members, log=log, pool=pool)
    if pool is not None:
        c = res.counts
        log(
            f"one data pass for {len(members)} models: {c['decoded']} batches decoded for {c['served']} served "
            f"({c['loaders']} loader(s))"
        )
    if res.errors:
        done = ", ".join(res.summaries) or "none"
        raise UserError("; ".join(f"{n}: {e}" for n, e in res.errors.items()) + f" (finished: {done})")
    return res.summaries


def train_pass(builds: list, *, log=_log_default) -> tuple[dict[str, dict], dict]:
    """Build the members (each ``build(pool, teachers)``, sharing one ``LoaderPool`` and one teacher
    cache) and train them in one data pass; returns (summaries by name, the pool's batch counts). A
    member that cannot be built releases the run directories of those built before it."""
    from tbfast.engine.shared import LoaderPool

    pool, teachers = LoaderPool(), {}
    members = []
    try:
        for build in builds:
            members.append(build(pool, teachers))
    except BaseException:
        for m in members:
            m.trainer.close()
        raise
    return train_together(members, pool=pool, log=log), pool.counts()


def _fit_summary(res, cfg: Config, trainer) -> dict:
    return {
        "stage": cfg.stage,
        "run_dir": str(res.run_dir),
        "checkpoint": str(res.last),
        "best": str(res.best) if res.best else None,
        "epochs": res.epochs,
        "steps": res.steps,
        "train_seconds": round(res.seconds, 2),
        "seconds_with_validation": round(res.wall_seconds, 2),
        "clips": res.clips,
        "clips_per_s": round(res.clips_per_s, 2) if res.clips else None,
        "final_loss": res.final_loss,
        "precision": trainer.precision,
        "finished": res.epochs >= cfg.train.epochs,
        **_validation_summary(trainer),
    }


def _validation_summary(trainer) -> dict:
    """The run's last and best validation video top-1 (``--val``), from its metrics.jsonl, so a
    resumed run reports the epochs validated before the interruption too; nothing without --val."""
    from tbfast.engine.plots import read_metrics

    path = trainer.metrics.path
    if trainer.validate is None or path is None:
        return {}
    validated = [r for r in read_metrics(path) if r.get("val_top1") is not None]
    if not validated:
        return {}
    last = validated[-1]
    return {
        "val_top1": last["val_top1"],
        "val_epoch": last.get("epoch"),
        "best_val_top1": trainer.best if trainer.best >= 0 else None,
    }


def _validator(cfg: Config, prepared, dist: Dist, val, records, log) -> Callable | None:
    """``--val test`` (the test split) or a split list; evaluated on rank 0."""
    if not val:
        return None
    from tbfast.data.plans import default_spec

    idx = None if val == "test" else split_list_indices(prepared, val, records, "validation")
    spec = default_spec("eval", num_clips=cfg.eval.clips, views=cfg.eval.crops)
    loader = (
        make_loader(
            prepared,
            "eval",
            cfg,
            Dist(device=dist.device),
            indices=idx,
            split="test",
            batch_size=cfg.data.eval_batch_size,
            shard=False,
            records=records,
            spec=spec,
            augment=False,
        )
        if dist.main
        else None
    )
    from tbfast.engine.evaluation import evaluate

    def validate(model):
        return evaluate(model, loader, dist.device, clips=cfg.eval.clips, chunk=cfg.eval.chunk)

    return validate


# ------------------------------------------------------------------ SSL pretraining
def train_ssl(
    cfg: Config, prepared, run_dir, *, dist: Dist, resume: str | None = None, indices=None, log=_log_default
) -> dict:
    return fit_alone(ssl_member(cfg, prepared, run_dir, dist=dist, resume=resume, indices=indices, log=log))


def ssl_member(
    cfg: Config,
    prepared,
    run_dir,
    *,
    dist: Dist,
    resume: str | None = None,
    indices=None,
    log=_log_default,
    pool=None,
    name: str | None = None,
):
    from tbfast.engine.shared import Member
    from tbfast.engine.tasks import SSLTask
    from tbfast.engine.trainer import Trainer

    records, _ = _check_prepared(prepared)
    if cfg.stage not in SSL_STAGES:
        raise UserError(f"train_ssl: stage {cfg.stage!r} is not self-supervised")
    _seed(cfg, dist)
    model = _sync(SSLNet(cfg.model), cfg, dist, log)
    loader = make_loader(prepared, "ssl", cfg, dist, indices=indices, split="train", records=records, pool=pool)
    task = SSLTask(cfg, dist.device, loader, dist=dist)
    trainer = Trainer(
        cfg,
        task,
        model,
        Path(run_dir),
        dist,
        meta={"backbone": cfg.model.backbone, "num_classes": None, "inputs": _inputs(prepared)},
        resume=resume,
        on_log=log,
        show_progress=pool is None,
    )

    def summarize(res):
        summary = _fit_summary(res, cfg, trainer)
        write_summary(run_dir, summary, dist)
        return summary

    return Member(name or cfg.stage, trainer, summarize)


def _sync(model, cfg: Config, dist: Dist, log):
    """Synchronise the model's BatchNorm statistics across ranks when ``model.sync_bn`` asks."""
    from tbfast.engine.config import sync_bn
    from tbfast.models import set_sync_bn

    on = sync_bn(cfg, dist.world)
    if dist.enabled and dist.main:
        log(
            f"{dist.world} processes: BatchNorm statistics {'over all ranks' if on else 'per rank'} "
            f"(model.sync_bn={cfg.model.sync_bn})"
            + (
                f"; L_I negatives from {'all ranks' if cfg.loss.cross_rank else 'this rank only'}"
                if cfg.stage in ("invariant", "combined")
                else ""
            )
        )
    return set_sync_bn(model, on)


# ------------------------------------------------------------------ fine-tuning / supervised
def _load_init(net, init, cfg: Config, *, stages, what: str) -> str | None:
    """Load ``init``'s backbone into ``net``; return the stage it came from (None for scratch)."""
    if init in (None, "", "scratch"):
        return None
    state = ck.load_checkpoint(init, foreign_ok=True)  # read once, whatever it is
    if not (isinstance(state, dict) and state.get("format") == ck.FORMAT):
        from tbfast.engine.nets import load_external_backbone  # torchvision / pytorchvideo weights

        _log_default(load_external_backbone(net, state, init))
        return "external"
    ck.expect(state, init, stages=stages, backbone=cfg.model.backbone, what=what)
    load_backbone(net, state, init)
    return state.get("init_stage") if state.get("stage") == "finetune" else state.get("stage")


def train_classifier(
    cfg: Config,
    prepared,
    run_dir,
    *,
    dist: Dist,
    labeled=None,
    init=None,
    resume: str | None = None,
    val=None,
    log=_log_default,
) -> dict:
    """``finetune`` (init = an SSL checkpoint; its projection head is dropped) or ``supervised``."""
    return fit_alone(
        classifier_member(
            cfg, prepared, run_dir, dist=dist, labeled=labeled, init=init, resume=resume, val=val, log=log
        )
    )


def classifier_member(
    cfg: Config,
    prepared,
    run_dir,
    *,
    dist: Dist,
    labeled=None,
    init=None,
    resume: str | None = None,
    val=None,
    log=_log_default,
    pool=None,
    name: str | None = None,
):
    from tbfast.engine.shared import Member
    from tbfast.engine.tasks import ClassifyTask
    from tbfast.engine.trainer import Trainer

    records, classes = _check_prepared(prepared)
    if cfg.stage == "finetune" and init in (None, "", "scratch"):
        raise UserError(
            "train finetune needs --init SSL_CKPT (a self-supervised checkpoint); "
            "for training from scratch use `tbfast train supervised`"
        )
    idx = split_list_indices(prepared, labeled, records, "labeled")
    _seed(cfg, dist)
    model = _sync(ClassNet(cfg.model, len(classes)), cfg, dist, log)
    # resume overrides the weights; the SSL stage a fine-tuned model comes from is recorded so that
    # `train student` can refuse a teacher given in the other role
    init_stage = _load_init(model, init, cfg, stages=SSL_STAGES + CLASSIFIER_STAGES, what="--init checkpoint")
    loader = make_loader(prepared, "train", cfg, dist, indices=idx, split="train", records=records, pool=pool)
    task = ClassifyTask(cfg, dist.device, loader)
    meta = {
        "backbone": cfg.model.backbone,
        "num_classes": len(classes),
        "classes": list(classes),
        "inputs": _inputs(prepared, labeled=labeled, init=init),
    }
    if cfg.stage == "finetune" and init_stage:
        meta["init_stage"] = init_stage
    trainer = Trainer(
        cfg,
        task,
        model,
        Path(run_dir),
        dist,
        meta=meta,
        resume=resume,
        validate=_validator(cfg, prepared, dist, val, records, log),
        on_log=log,
        show_progress=pool is None,
    )

    def summarize(res):
        summary = _fit_summary(res, cfg, trainer)
        summary["labeled_videos"] = len(idx) if idx is not None else None
        write_summary(run_dir, summary, dist)
        return summary

    return Member(name or cfg.stage, trainer, summarize)


# ------------------------------------------------------------------ student
def load_classifier(
    path,
    device: torch.device,
    num_classes: int,
    what: str,
    with_config: bool = False,
    not_from: str | None = None,
    state: dict | None = None,
):
    """``not_from``: refuse a fine-tuned model whose SSL initialisation was that stage (a teacher given
    in the other role: an invariant teacher fine-tuned from the distinctive model, or the reverse).
    ``state``: the checkpoint already loaded from ``path`` (read once)."""
    state = ck.load_checkpoint(path) if state is None else state
    ck.expect(state, path, stages=CLASSIFIER_STAGES, num_classes=num_classes, what=what)
    if not_from and state.get("init_stage") == not_from:
        raise UserError(
            f"{what} {path} was fine-tuned from the {not_from} self-supervised model; "
            f"give it as --teacher-{not_from} instead (or fine-tune the right model)"
        )
    tcfg = config_from_dict(state["config"])
    net = ClassNet(tcfg.model, num_classes)
    net.load_state_dict(state["model"])
    net = net.to(device)
    return (net, tcfg) if with_config else net


def load_ssl(path, device: torch.device, what: str, with_config: bool = False, stages=SSL_STAGES):
    state = ck.load_checkpoint(path)
    ck.expect(state, path, stages=stages, what=what)
    tcfg = config_from_dict(state["config"])
    net = SSLNet(tcfg.model)
    net.load_state_dict(state["model"])
    net = net.to(device).eval()
    return (net, tcfg) if with_config else net


def train_student(
    cfg: Config,
    prepared,
    run_dir,
    *,
    dist: Dist,
    labeled,
    unlabeled=None,
    teacher_inv=None,
    teacher_dis=None,
    similarity=None,
    init="scratch",
    resume: str | None = None,
    val=None,
    log=_log_default,
) -> dict:
    return fit_alone(
        student_member(
            cfg,
            prepared,
            run_dir,
            dist=dist,
            labeled=labeled,
            unlabeled=unlabeled,
            teacher_inv=teacher_inv,
            teacher_dis=teacher_dis,
            similarity=similarity,
            init=init,
            resume=resume,
            val=val,
            log=log,
        )
    )


def student_member(
    cfg: Config,
    prepared,
    run_dir,
    *,
    dist: Dist,
    labeled,
    unlabeled=None,
    teacher_inv=None,
    teacher_dis=None,
    similarity=None,
    init="scratch",
    resume: str | None = None,
    val=None,
    log=_log_default,
    pool=None,
    teachers: dict | None = None,
    name: str | None = None,
):
    """``teachers``: a dict shared by the students of one pass, so each teacher is loaded (and run on
    a batch) once."""
    from tbfast.engine.evaluation import read_scores
    from tbfast.engine.shared import Member
    from tbfast.engine.tasks import StudentTask, Teacher
    from tbfast.engine.trainer import Trainer

    records, classes = _check_prepared(prepared)
    if labeled is None:
        raise UserError("train student needs --labeled SPLIT (from `tbfast data splits`)")
    lab = split_list_indices(prepared, labeled, records, "labeled")
    if unlabeled is not None:
        unl = split_list_indices(prepared, unlabeled, records, "unlabeled")
    else:
        lab_set = set(lab)
        unl = [i for i, r in enumerate(records) if r.split == "train" and i not in lab_set]
    if not unl:
        raise UserError("the unlabeled set is empty (every training video is labeled)")
    w = cfg.loss.weighting
    if w == "timebalance":
        if similarity is None:
            raise UserError(
                "train student needs --similarity FILE (from `tbfast similarity`), "
                "or --weighting invariant|distinctive for a single teacher"
            )
        scores = read_scores(similarity, records)
    else:
        scores = torch.full((len(records),), 1.0 if w == "invariant" else 0.0)
    nc = len(classes)
    t_inv = t_dis = None
    teachers = {} if teachers is None else teachers

    def teacher(path, role: str, other: str):
        key = (str(Path(path).resolve()), role, cfg.train.teacher_half)
        if key not in teachers:
            teachers[key] = Teacher(
                load_classifier(path, dist.device, nc, f"{role} teacher", not_from=other),
                dist.device,
                cfg.train.teacher_half,
            )
        return teachers[key]

    if w != "distinctive":
        if teacher_inv is None:
            raise UserError("train student needs --teacher-invariant FT_CKPT")
        t_inv = teacher(teacher_inv, "invariant", "distinctive")
    if w != "invariant":
        if teacher_dis is None:
            raise UserError("train student needs --teacher-distinctive FT_CKPT")
        t_dis = teacher(teacher_dis, "distinctive", "invariant")
    _seed(cfg, dist)
    model = _sync(ClassNet(cfg.model, nc), cfg, dist, log)
    _load_init(model, init, cfg, stages=SSL_STAGES + CLASSIFIER_STAGES, what="--init checkpoint")
    lab_loader = make_loader(prepared, "train", cfg, dist, indices=lab, records=records, pool=pool)
    unl_loader = make_loader(prepared, "train", cfg, dist, indices=unl, records=records, pool=pool)
    task = StudentTask(cfg, dist.device, lab_loader, unl_loader, t_inv, t_dis, scores)
    inputs = _inputs(
        prepared,
        labeled=labeled,
        unlabeled=unlabeled,
        teacher_invariant=teacher_inv,
        teacher_distinctive=teacher_dis,
        similarity=similarity,
        init=init,
    )
    trainer = Trainer(
        cfg,
        task,
        model,
        Path(run_dir),
        dist,
        meta={"backbone": cfg.model.backbone, "num_classes": nc, "classes": list(classes), "inputs": inputs},
        resume=resume,
        validate=_validator(cfg, prepared, dist, val, records, log),
        on_log=log,
        show_progress=pool is None,
    )

    def summarize(res):
        summary = _fit_summary(res, cfg, trainer)
        summary.update(
            {"labeled_videos": len(lab), "unlabeled_videos": len(unl), "weighting": w, "distill": cfg.loss.distill}
        )
        write_summary(run_dir, summary, dist)
        return summary

    return Member(name or f"student_{w}", trainer, summarize)


# ------------------------------------------------------------------ similarity
def compute_similarity(
    cfg: Config,
    prepared,
    out,
    *,
    invariant,
    distinctive,
    dist: Dist,
    indices=None,
    size: int | None = None,
    log=_log_default,
    split: str = "train",
    reference: Path | None = None,
) -> dict:
    """s for every video of ``split`` (METHOD.md §5), written to ``out`` (CSV) with a histogram.

    The raw scores are min-max normalised over the scored videos, or, with ``reference`` (the
    training set's similarity file), over the reference's raw range (clamped to [0, 1]): what s
    would be for these videos had they been in the training set (the recipe's mechanism report
    scores the test videos this way)."""
    from tbfast.data.plans import default_spec
    from tbfast.engine.evaluation import similarity_scores, write_scores
    from tbfast.engine.plots import plot_histogram
    from tbfast.timebalance import normalize_scores

    records, classes = _check_prepared(prepared)
    out = Path(out)
    # the roles matter (s = similarity under the invariant model, weighting the invariant teacher): a
    # swapped pair would silently turn every weight around
    net_i, icfg = load_ssl(
        invariant, dist.device, "--invariant checkpoint", with_config=True, stages=("invariant", "combined")
    )
    net_d = load_ssl(distinctive, dist.device, "--distinctive checkpoint", stages=("distinctive", "combined"))
    if size is None:
        cfg.data.size = icfg.data.size  # the resolution the teachers were trained at
    loader = make_loader(
        prepared,
        "similarity",
        cfg,
        dist,
        indices=indices,
        split=split,
        shard=False,
        batch_size=cfg.data.eval_batch_size,
        records=records,
        spec=default_spec("similarity"),
        augment=False,
    )
    idx, raw, timing = similarity_scores(net_i, net_d, loader, dist.device, progress=cfg.train.progress)
    if reference is None:
        scores = normalize_scores(raw.float()).double()
    else:
        ref_raw = reference_raw_range(Path(reference))
        span = ref_raw[1] - ref_raw[0]
        scores = ((raw - ref_raw[0]) / span).clamp(0.0, 1.0) if span > 0 else torch.full_like(raw, 0.5)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_scores(out, idx, [records[i].path for i in idx], raw, scores)
    hist = out.with_suffix(".png")
    by_class: dict[str, list[float]] = {}
    for i, s in zip(idx, scores.tolist()):
        by_class.setdefault(records[i].class_name, []).append(s)
    class_mean = {c: round(sum(v) / len(v), 4) for c, v in sorted(by_class.items())}
    try:
        plot_histogram(scores.tolist(), raw.tolist(), hist, title=f"temporal similarity ({len(idx)} videos)")
    except Exception as exc:
        log(f"(histogram skipped: {exc})")
    summary = {
        "stage": "similarity",
        "file": str(out),
        "histogram": str(hist),
        "videos": len(idx),
        "mean_score": float(scores.mean()) if len(idx) else None,
        "class_mean_score": class_mean,
        "seconds": round(timing["seconds"], 2),
        "clips": timing["clips"],
        "clips_per_s": round(timing["clips_per_s"], 2) if timing["clips_per_s"] else None,
    }
    log(f"similarity: {len(idx)} videos, mean s {summary['mean_score']:.3f} -> {out}")
    return summary


def reference_raw_range(path: Path) -> tuple[float, float]:
    """(min, max) of the raw column of a similarity file."""
    import csv

    with open(path, newline="") as f:
        raw = [float(r["raw"]) for r in csv.DictReader(f)]
    if not raw:
        raise UserError(f"{path}: similarity file without scores")
    return min(raw), max(raw)


# ------------------------------------------------------------------ evaluation
def evaluate_checkpoint(
    cfg: Config,
    prepared,
    checkpoint,
    *,
    dist: Dist,
    split: str = "test",
    indices_file=None,
    size: int | None = None,
    log=_log_default,
    keep_probs: bool = False,
) -> dict:
    from tbfast.data.plans import default_spec
    from tbfast.engine.evaluation import evaluate

    records, classes = _check_prepared(prepared)
    net, ccfg = load_classifier(checkpoint, dist.device, len(classes), "checkpoint", with_config=True)
    if size is None:
        cfg.data.size = ccfg.data.size  # evaluate at the resolution it was trained at
    if cfg.train.channels_last:
        net = net.to(memory_format=torch.channels_last_3d)
    idx = split_list_indices(prepared, indices_file, records, "evaluation") if indices_file else None
    spec = default_spec("eval", num_clips=cfg.eval.clips, views=cfg.eval.crops)
    loader = make_loader(
        prepared,
        "eval",
        cfg,
        dist,
        indices=idx,
        split=split,
        shard=False,
        batch_size=cfg.data.eval_batch_size,
        records=records,
        spec=spec,
        augment=False,
    )
    t0 = time.perf_counter()
    res = evaluate(
        net,
        loader,
        dist.device,
        clips=cfg.eval.clips,
        chunk=cfg.eval.chunk,
        progress=cfg.train.progress,
        keep_probs=keep_probs,
    )
    # per video [manifest index, label, predicted class]: paired tests between models need them
    res["predictions"] = [list(map(int, t)) for t in res["predictions"]]
    res["class_top1"] = {name: acc for name, acc in zip(classes, res["class_top1"])}
    res["classes"] = list(classes)
    res.update(
        {
            "checkpoint": str(checkpoint),
            "split": split if idx is None else str(indices_file),
            "stage": "eval",
            "wall_seconds": round(time.perf_counter() - t0, 2),
        }
    )
    lo, hi = res.get("video_top1_ci95", (0.0, 1.0))
    log(
        f"eval {checkpoint}: {res['videos']} videos, video top-1 {100 * res['video_top1']:.2f}% "
        f"(95% interval {100 * lo:.1f}-{100 * hi:.1f}) "
        f"top-5 {100 * res['video_top5']:.2f}% | clip top-1 {100 * res['clip_top1']:.2f}% "
        f"top-5 {100 * res['clip_top5']:.2f}% | mean class top-1 {100 * res['mean_class_top1']:.2f}% "
        f"({res['clips_per_s']:.1f} clips/s)"
    )
    return res
