"""``tbfast similarity``: per-video temporal-similarity scores s in [0, 1] (METHOD.md §5).

Both *self-supervised* teachers embed 4 consecutive 16-frame centre clips of every training video;
the raw score is the mean off-diagonal entry of (C_I + C_D)/2, min-max normalised over the videos.
Writes FILE (CSV ``index,path,raw,score``) and FILE with suffix .png (histograms).
"""

from __future__ import annotations

import argparse
import json

from tbfast.argtypes import output_file


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    from tbfast.engine.cli_args import add_common

    parser.epilog = (
        "example: tbfast similarity --invariant runs/inv/checkpoints/last.pt "
        "--distinctive runs/dis/checkpoints/last.pt --data prepared/ucf101 --out runs/similarity.csv"
    )
    parser.add_argument("--invariant", required=True, metavar="SSL_CKPT", help="self-supervised invariant teacher")
    parser.add_argument("--distinctive", required=True, metavar="SSL_CKPT", help="self-supervised distinctive teacher")
    parser.add_argument("--data", required=True, metavar="PREPARED", help="prepared dataset")
    parser.add_argument(
        "--out", required=True, metavar="FILE", type=output_file, help="scores CSV to write (histogram next to it)"
    )
    parser.add_argument(
        "--videos",
        default=None,
        metavar="SPLIT",
        help="score only the videos of this split list [default: every training video]",
    )
    add_common(parser, "similarity", training=False)


def main(args: argparse.Namespace) -> int:
    from tbfast.engine import distributed as D
    from tbfast.engine import stages
    from tbfast.engine.cli_args import config_for
    from tbfast.engine.metrics import log_line

    cfg = config_for("similarity", args)
    # under torchrun rank 0 scores in one process (the same file as a plain call); the others wait
    world = D.setup(cfg.train.device)
    local = D.Dist(device=world.device)

    def run():
        idx = None
        if args.videos:
            idx = stages.split_list_indices(args.data, args.videos, None, "--videos")
        size = getattr(args, "ov:data.size", None)
        summary = stages.compute_similarity(
            cfg,
            args.data,
            args.out,
            invariant=args.invariant,
            distinctive=args.distinctive,
            dist=local,
            indices=idx,
            size=size,
            log=log_line,
        )
        print(json.dumps(summary))

    try:
        D.on_main(world, run)
    finally:
        D.cleanup(world)
    return 0
