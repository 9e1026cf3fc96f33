"""``tbfast train invariant|distinctive|combined|finetune|supervised|student``.

Single process: ``tbfast train ...``; several (CPU gloo or GPU NCCL):
``torchrun --nproc_per_node N -m tbfast train ...`` (each rank reads its own shard).
"""

from __future__ import annotations

import argparse
import json

EPILOG = {
    "invariant": "example: tbfast train invariant --data prepared/ucf101 --out runs/inv --preset ucf101_r3d18",
    "distinctive": "example: tbfast train distinctive --data prepared/ucf101 --out runs/dis",
    "combined": "example: tbfast train combined --data prepared/ucf101 --out runs/comb",
    "finetune": "example: tbfast train finetune --init runs/inv/checkpoints/last.pt "
    "--labeled prepared/ucf101/splits/labeled_5pct_seed0.txt --data prepared/ucf101 --out runs/ft_inv",
    "supervised": "example: tbfast train supervised --labeled prepared/ucf101/splits/labeled_5pct_seed0.txt "
    "--data prepared/ucf101 --out runs/sup",
    "student": "example: tbfast train student --teacher-invariant runs/ft_inv/checkpoints/last.pt "
    "--teacher-distinctive runs/ft_dis/checkpoints/last.pt --similarity runs/similarity.csv "
    "--labeled prepared/ucf101/splits/labeled_5pct_seed0.txt --data prepared/ucf101 --out runs/student",
}


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    from tbfast.engine.cli_args import SSL_OVERRIDES, STUDENT_OVERRIDES, add_common, add_overrides

    stage = command.split()[1]
    parser.epilog = EPILOG.get(stage)
    parser.add_argument("--data", required=True, metavar="PREPARED", help="prepared dataset (from `tbfast data prep`)")
    parser.add_argument(
        "--out",
        required=True,
        metavar="RUN",
        help="run directory: config.yaml, metrics.jsonl, checkpoints/, plots, summary.json",
    )
    parser.add_argument(
        "--resume",
        default=None,
        metavar="auto|CKPT",
        help="continue from RUN/checkpoints/last.pt ('auto', a fresh start if absent) or a checkpoint",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a run already in RUN (its checkpoints, metrics and summary); without it, "
        "a RUN holding a checkpoint needs --resume",
    )
    if stage in ("finetune", "supervised", "student"):
        parser.add_argument(
            "--labeled",
            required=True,
            metavar="SPLIT",
            help="labeled split list (PREPARED/splits/labeled_*.txt, or its file name)",
        )
        parser.add_argument(
            "--val",
            default=None,
            metavar="test|SPLIT",
            help="validate each epoch on the test split or a split list; keeps checkpoints/best.pt",
        )
    if stage == "finetune":
        parser.add_argument(
            "--init",
            required=True,
            metavar="SSL_CKPT",
            help="self-supervised checkpoint; its projection head is dropped, a new classifier added",
        )
    if stage == "supervised":
        parser.add_argument(
            "--init", default="scratch", metavar="scratch|CKPT", help="random init or any checkpoint's backbone"
        )
    if stage == "student":
        parser.add_argument("--teacher-invariant", metavar="FT_CKPT", help="fine-tuned invariant teacher")
        parser.add_argument("--teacher-distinctive", metavar="FT_CKPT", help="fine-tuned distinctive teacher")
        parser.add_argument("--similarity", metavar="FILE", help="scores CSV from `tbfast similarity`")
        parser.add_argument(
            "--unlabeled",
            default=None,
            metavar="SPLIT",
            help="unlabeled split list [default: train split minus --labeled]",
        )
        parser.add_argument(
            "--init",
            default="scratch",
            metavar="scratch|CKPT",
            help="student initialisation: random or a checkpoint's backbone (e.g. `train combined`)",
        )
    add_common(parser, stage)
    if stage in ("invariant", "distinctive", "combined"):
        add_overrides(parser.add_argument_group("self-supervised loss"), stage, SSL_OVERRIDES)
    if stage == "student":
        add_overrides(parser.add_argument_group("student loss"), stage, STUDENT_OVERRIDES)


def main(args: argparse.Namespace) -> int:
    from tbfast.engine import distributed as D
    from tbfast.engine import stages
    from tbfast.engine.cli_args import config_for
    from tbfast.engine.metrics import log_line

    stage = args._command.split()[1]
    cfg = config_for(stage, args)
    if args.overwrite and args.resume:
        from tbfast.errors import UserError

        raise UserError("--overwrite and --resume contradict each other; give one")
    if args.overwrite:
        args.resume = "overwrite"
    dist = D.setup(cfg.train.device)
    log = (lambda line: log_line(line)) if dist.main else (lambda line: None)
    try:
        if stage in ("invariant", "distinctive", "combined"):
            summary = stages.train_ssl(cfg, args.data, args.out, dist=dist, resume=args.resume, log=log)
        elif stage in ("finetune", "supervised"):
            summary = stages.train_classifier(
                cfg,
                args.data,
                args.out,
                dist=dist,
                labeled=args.labeled,
                init=args.init,
                resume=args.resume,
                val=args.val,
                log=log,
            )
        else:
            summary = stages.train_student(
                cfg,
                args.data,
                args.out,
                dist=dist,
                labeled=args.labeled,
                unlabeled=args.unlabeled,
                teacher_inv=args.teacher_invariant,
                teacher_dis=args.teacher_distinctive,
                similarity=args.similarity,
                init=args.init,
                resume=args.resume,
                val=args.val,
                log=log,
            )
    finally:
        D.cleanup(dist)
    if dist.main:
        print(
            json.dumps(
                {
                    k: summary[k]
                    for k in ("stage", "checkpoint", "epochs", "steps", "clips_per_s", "final_loss")
                    if k in summary
                }
            )
        )
    return 0
