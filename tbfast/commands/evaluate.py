"""``tbfast eval``: clip- and video-level top-1/top-5 of a classifier checkpoint.

Each video gives ``--clips`` evenly spaced 8-frame clips (centre crop); video-level accuracy
averages the softmax over its clips (METHOD.md §2). Clips go through the model ``--chunk`` at a time.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tbfast.argtypes import output_file


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    from tbfast.engine.cli_args import EVAL_OVERRIDES, add_common, add_overrides

    parser.epilog = "example: tbfast eval --checkpoint runs/student/checkpoints/last.pt --data prepared/ucf101"
    parser.add_argument(
        "--checkpoint", required=True, metavar="CKPT", help="fine-tuned, supervised or student checkpoint"
    )
    parser.add_argument("--data", required=True, metavar="PREPARED", help="prepared dataset")
    parser.add_argument("--split", default="test", choices=("test", "train"), help="manifest split to evaluate")
    parser.add_argument("--videos", default=None, metavar="SPLIT", help="evaluate only the videos of this split list")
    parser.add_argument("--json", default=None, metavar="FILE", type=output_file, help="also write the results as JSON")
    parser.add_argument(
        "--compare",
        action="append",
        default=[],
        metavar="EVAL_JSON",
        help="another model's `tbfast eval --json` file on the same videos: an exact McNemar "
        "test of the two (repeatable)",
    )
    add_common(parser, "eval", training=False)
    add_overrides(parser.add_argument_group("evaluation"), "eval", EVAL_OVERRIDES)


def main(args: argparse.Namespace) -> int:
    from tbfast.errors import UserError

    for other in args.compare:  # before the evaluation: a wrong path is found at once
        if not Path(other).is_file():
            raise UserError(f"--compare {other}: no such file")
        _read_predictions(Path(other))

    from tbfast.engine import distributed as D
    from tbfast.engine import stages
    from tbfast.engine.checkpoint import atomic_write_bytes
    from tbfast.engine.cli_args import config_for
    from tbfast.engine.metrics import log_line

    cfg = config_for("eval", args)
    # under torchrun rank 0 evaluates in one process (the same numbers as a plain call); the others wait
    world = D.setup(cfg.train.device)
    local = D.Dist(device=world.device)

    def run():
        res = stages.evaluate_checkpoint(
            cfg,
            args.data,
            args.checkpoint,
            dist=local,
            split=args.split,
            indices_file=args.videos,
            size=getattr(args, "ov:data.size", None),
            log=log_line,
        )
        if args.json:  # the file keeps the per-video predictions; the terminal gets the summary
            atomic_write_bytes(Path(args.json), json.dumps(res, indent=2).encode())
        print(summary_text(res))
        for other in args.compare:
            print(compare_text(res, Path(other)))

    try:
        D.on_main(world, run)
    finally:
        D.cleanup(world)
    return 0


def summary_text(res: dict) -> str:
    """The terminal's one-screen summary of an evaluation (``--json FILE`` keeps everything)."""
    pct = lambda x: "-" if x is None else f"{100 * x:.1f} %"  # noqa: E731
    ci = res.get("video_top1_ci95")
    lines = [
        f"eval of {res.get('checkpoint', '?')} on {res.get('split', '?')}: {res['videos']} videos, "
        f"{res['clips']} clips ({res.get('crops', 1)} crop{'s' if res.get('crops', 1) != 1 else ''} each), "
        f"{res.get('wall_seconds', res.get('seconds', 0)):.1f} s",
        f"  video top-1 {pct(res['video_top1'])}"
        + (f" (95 % interval {100 * ci[0]:.1f}-{100 * ci[1]:.1f})" if ci else "")
        + f"   top-5 {pct(res.get('video_top5'))}",
        f"  clip top-1  {pct(res.get('clip_top1'))}   top-5 {pct(res.get('clip_top5'))}",
    ]
    if res.get("class_top1"):
        lines.append(
            f"  mean class top-1 {pct(res.get('mean_class_top1'))}; per class: "
            + ", ".join(f"{c} {100 * v:.0f}" for c, v in res["class_top1"].items())
        )
    return "\n".join(lines)


def _read_predictions(path: Path) -> list:
    from tbfast.errors import UserError

    try:
        preds = json.loads(path.read_text()).get("predictions")
    except (OSError, ValueError, AttributeError) as exc:
        raise UserError(f"--compare {path}: not a `tbfast eval --json` file ({exc})") from None
    if not preds:
        raise UserError(f"--compare {path}: no per-video predictions in it; write it with `tbfast eval --json`")
    return preds


def compare_text(res: dict, other: Path) -> str:
    """This evaluation against another model's on the same videos (exact McNemar, tbfast.stats)."""
    from tbfast.errors import UserError
    from tbfast.stats import paired_comparison

    try:
        r = paired_comparison(res["predictions"], _read_predictions(other))
    except ValueError:
        raise UserError(
            f"--compare {other}: evaluated on other videos; compare evaluations of the same "
            "--data, --split and --videos"
        ) from None
    verdict = {"A better": "this model better", "B better": "the other model better"}.get(r["verdict"], r["verdict"])
    return (
        f"  vs {other}: {r['videos']} videos, only this model right on {r['only_a']}, only the other on "
        f"{r['only_b']}; McNemar p = {r['p']:.3f}: {verdict}"
    )
