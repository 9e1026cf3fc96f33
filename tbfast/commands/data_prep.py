"""`tbfast data prep SRC OUT`: transcode a dataset to VP9 (or H.264) and write its manifest."""

from __future__ import annotations

import argparse

from tbfast.argtypes import positive_int


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    from tbfast.data.sources import FORMATS

    parser.add_argument("src", metavar="SRC", help="source dataset folder")
    parser.add_argument("out", metavar="OUT", help="prepared dataset folder (created; re-runs resume)")
    parser.add_argument("--format", choices=FORMATS, default="ucf101", help="source layout and split files")
    parser.add_argument(
        "--splits",
        default=None,
        help="split files: ucf101 the ucfTrainTestlist folder (default SRC/ucfTrainTestlist), "
        "hmdb51 the testTrainMulti_7030_splits folder (default SRC/testTrainMulti_7030_splits), "
        "kinetics a CSV or a folder of CSVs (default SRC/*.csv)%(default).0s",
    )
    parser.add_argument("--split-id", type=positive_int, default=1, help="official split number (ucf101, hmdb51: 1-3)")
    parser.add_argument(
        "--test-fraction",
        type=float,
        default=0.0,
        help="folder format: class-balanced share of each class held out as test",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the --test-fraction holdout")
    parser.add_argument(
        "--codec", choices=("vp9", "h264"), default="vp9", help="vp9 (.webm; DALI CPU and GPU) or h264 (.mp4; GPU only)"
    )
    parser.add_argument(
        "--fps",
        type=float,
        default=None,
        help="output frame rate (default: the source's real average rate, measured from its "
        "timestamps; needed for sources outside 1-240 fps)%(default).0s",
    )
    parser.add_argument("--gop", type=int, default=16, help="keyframe interval in frames")
    parser.add_argument(
        "--short-side", type=int, default=128, help="output short side in pixels (sizes even); 0 keeps the source size"
    )
    parser.add_argument("--crf", type=int, default=None, help="quality (default: 32 for vp9, 23 for h264)%(default).0s")
    parser.add_argument(
        "--workers", type=int, default=None, help="parallel processes (default: CPU cores)%(default).0s"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def main(args: argparse.Namespace) -> int:
    from rich.console import Console

    from tbfast.data.prep import prepare

    console = Console(stderr=True)
    rep = prepare(
        args.src,
        args.out,
        args.format,
        splits=args.splits,
        split_id=args.split_id,
        test_fraction=args.test_fraction,
        seed=args.seed,
        codec=args.codec,
        fps=args.fps,
        gop=args.gop,
        short_side=args.short_side,
        workers=args.workers,
        crf=args.crf,
        console=console,
        show_progress=not args.no_progress,
    )
    c = rep["counts"]
    print(
        f"prepared {c['prepared']} of {c['listed']} videos ({c['transcoded']} transcoded, {c['skipped']} skipped "
        f"as already done, {c['failed']} failed, {c['short']} short) in {rep['elapsed_s']:.1f} s: "
        f"{c['train']} train / {c['test']} test, {c['classes']} classes -> {args.out}"
    )
    if rep["failures"]:
        console.print(f"[red]{len(rep['failures'])} video(s) failed[/red] (reasons in {args.out}/prep_report.json):")
        for f in rep["failures"]:
            console.print(f"  {f['source']}: {f['reason']}")
        return 1
    return 0
