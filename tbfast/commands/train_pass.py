"""``tbfast train teachers`` and ``tbfast train students``: several models from one data pass.

Each video is decoded and augmented once per step for all the models that read it, each frozen
teacher runs once per batch, and every model ends exactly as its own ``tbfast train ...`` would
(tbfast/engine/shared.py). Each model has its own run directory under ``--out``.
"""

from __future__ import annotations

import argparse
import json

MODELS = ("supervised", "invariant", "distinctive", "timebalance")
RUN_NAMES = {
    "supervised": "supervised",
    "invariant": "student_invariant",
    "distinctive": "student_distinctive",
    "timebalance": "timebalance",
}

EPILOG = {
    "teachers": "example: tbfast train teachers --data prepared/ucf101 --out runs --preset ucf101_r3d18 "
    "--labeled prepared/ucf101/splits/labeled_5pct_seed0.txt\n"
    "  -> runs/invariant, runs/distinctive (one pass; --combined adds runs/combined), then\n"
    "     runs/finetune_invariant, runs/finetune_distinctive (one pass; only with --labeled)",
    "students": "example: tbfast train students --data prepared/ucf101 --out runs "
    "--labeled prepared/ucf101/splits/labeled_5pct_seed0.txt "
    "--teacher-invariant runs/ft_inv/checkpoints/last.pt "
    "--teacher-distinctive runs/ft_dis/checkpoints/last.pt --similarity runs/similarity.csv --seeds 3\n"
    "  -> runs/supervised, runs/student_invariant, runs/student_distinctive, runs/timebalance "
    "(+ _seed1, _seed2)",
}


def _models(text: str) -> list[str]:
    names = [m.strip() for m in text.split(",") if m.strip()]
    bad = [m for m in names if m not in MODELS]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"{text!r}: give a comma-separated subset of {','.join(MODELS)}")
    return list(dict.fromkeys(names))


def _positive(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give a whole number, 1 or more")
    return n


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    from tbfast.engine.cli_args import STUDENT_OVERRIDES, add_common, add_overrides

    which = command.split()[1]
    parser.epilog = EPILOG[which]
    parser.add_argument("--data", required=True, metavar="PREPARED", help="prepared dataset (from `tbfast data prep`)")
    parser.add_argument("--out", required=True, metavar="ROOT", help="folder of the models' run directories")
    parser.add_argument(
        "--resume",
        default=None,
        choices=["auto"],
        help="continue every model from its ROOT/NAME/checkpoints/last.pt (a fresh start where "
        "absent); models at different steps catch up, then share again",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace runs already in ROOT")
    if which == "teachers":
        parser.add_argument(
            "--combined", action="store_true", help="also train the combined model (L_I + L_D1 + L_D2) in the same pass"
        )
        parser.add_argument(
            "--labeled",
            default=None,
            metavar="SPLIT",
            help="then fine-tune both self-supervised models on this labeled split, in a second "
            "pass (the teachers of `tbfast train students`)",
        )
        add_common(parser, "invariant")
        return
    parser.add_argument(
        "--labeled",
        required=True,
        metavar="SPLIT",
        help="labeled split list (PREPARED/splits/labeled_*.txt, or its file name)",
    )
    parser.add_argument(
        "--unlabeled", default=None, metavar="SPLIT", help="unlabeled split list [default: train split minus --labeled]"
    )
    parser.add_argument("--teacher-invariant", metavar="FT_CKPT", help="fine-tuned invariant teacher")
    parser.add_argument("--teacher-distinctive", metavar="FT_CKPT", help="fine-tuned distinctive teacher")
    parser.add_argument("--similarity", metavar="FILE", help="scores CSV from `tbfast similarity`")
    parser.add_argument(
        "--init",
        default="scratch",
        metavar="scratch|CKPT",
        help="the students' initialisation (the supervised-only baseline starts from scratch)",
    )
    parser.add_argument(
        "--models",
        type=_models,
        default=list(MODELS),
        metavar="LIST",
        help=f"which models: a comma-separated subset of {','.join(MODELS)} (supervised = the "
        "supervised-only baseline; the others = the student's teacher weighting)",
    )
    parser.add_argument(
        "--seeds",
        type=_positive,
        default=1,
        metavar="N",
        help="train every model for N seeds (train.seed, +1, ...; one pass per seed; run "
        "directories NAME, NAME_seed1, ...)",
    )
    add_common(parser, "student")
    add_overrides(
        parser.add_argument_group("student loss"),
        "student",
        {k: v for k, v in STUDENT_OVERRIDES.items() if k != "--weighting"},
    )


def main(args: argparse.Namespace) -> int:
    from pathlib import Path

    from tbfast.engine import distributed as D
    from tbfast.engine import stages
    from tbfast.engine.cli_args import config_for
    from tbfast.engine.metrics import log_line
    from tbfast.errors import UserError

    which = args._command.split()[1]
    if args.overwrite and args.resume:
        raise UserError("--overwrite and --resume contradict each other; give one")
    resume = "overwrite" if args.overwrite else args.resume
    root = Path(args.out)
    if root.exists() and not root.is_dir():
        raise UserError(f"--out {root} is a file; give a folder (created if missing)")
    base = config_for("invariant" if which == "teachers" else "student", args)
    dist = D.setup(base.train.device)
    log = (lambda line: log_line(line)) if dist.main else (lambda line: None)

    def tagged(name):
        return lambda line: log(f"[{name}] {line}")

    passes = []  # [(name, builder(pool, teachers))] per pass
    if which == "teachers":
        kinds = ["invariant", "distinctive"] + (["combined"] if args.combined else [])
        passes.append(
            [
                (
                    k,
                    lambda pool, _t, k=k: stages.ssl_member(
                        config_for(k, args),
                        args.data,
                        root / k,
                        dist=dist,
                        resume=resume,
                        log=tagged(k),
                        pool=pool,
                        name=k,
                    ),
                )
                for k in kinds
            ]
        )
        if args.labeled:
            passes.append(
                [
                    (
                        f"finetune_{k}",
                        lambda pool, _t, k=k: stages.classifier_member(
                            config_for("finetune", args),
                            args.data,
                            root / f"finetune_{k}",
                            dist=dist,
                            labeled=args.labeled,
                            init=root / k / "checkpoints" / "last.pt",
                            resume=resume,
                            log=tagged(f"finetune_{k}"),
                            pool=pool,
                            name=f"finetune_{k}",
                        ),
                    )
                    for k in ("invariant", "distinctive")
                ]
            )
    else:
        for s in range(args.seeds):
            tag = f"_seed{s}" if s else ""
            group = []
            for m in args.models:
                name = RUN_NAMES[m] + tag
                if m == "supervised":
                    group.append(
                        (
                            name,
                            lambda pool, _t, name=name, s=s: stages.classifier_member(
                                _seeded(config_for("supervised", args), s),
                                args.data,
                                root / name,
                                dist=dist,
                                labeled=args.labeled,
                                init="scratch",
                                resume=resume,
                                log=tagged(name),
                                pool=pool,
                                name=name,
                            ),
                        )
                    )
                else:
                    group.append(
                        (
                            name,
                            lambda pool, teachers, name=name, s=s, m=m: stages.student_member(
                                _seeded(config_for("student", args), s, weighting=m),
                                args.data,
                                root / name,
                                dist=dist,
                                labeled=args.labeled,
                                unlabeled=args.unlabeled,
                                teacher_inv=args.teacher_invariant,
                                teacher_dis=args.teacher_distinctive,
                                similarity=args.similarity,
                                init=args.init,
                                resume=resume,
                                log=tagged(name),
                                pool=pool,
                                teachers=teachers,
                                name=name,
                            ),
                        )
                    )
            passes.append(group)
    summaries = {}
    try:
        for group in passes:
            summaries.update(stages.train_pass([build for _, build in group], log=log)[0])
    finally:
        D.cleanup(dist)
    if dist.main:
        for name, s in summaries.items():
            print(
                json.dumps(
                    {
                        "model": name,
                        **{k: s[k] for k in ("stage", "checkpoint", "epochs", "steps", "final_loss") if k in s},
                    }
                )
            )
    return 0


def _seeded(cfg, offset: int, weighting: str | None = None):
    cfg.train.seed += offset
    if weighting is not None:
        cfg.loss.weighting = weighting
    return cfg
