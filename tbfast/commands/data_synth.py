"""`tbfast data synth OUT`: the built-in synthetic dataset in UCF101's official layout."""

from __future__ import annotations

import argparse


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: write the frame size as WxH, e.g. 64x48") from None
    return w, h


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    from tbfast.data.synthetic import SynthOptions

    d = SynthOptions()
    parser.add_argument("out", metavar="OUT", help="output folder (gets UCF-101/ and ucfTrainTestlist/)")
    parser.add_argument(
        "--classes",
        type=int,
        default=d.classes,
        help="number of classes (about 30%% are temporal-order pairs, the rest appearance)",
    )
    parser.add_argument(
        "--order-pairs",
        type=int,
        default=None,
        help="number of time-reversal class pairs (default: round(0.3 * classes), at most 4)%(default).0s",
    )
    parser.add_argument("--videos-per-class", type=int, default=d.videos_per_class, help="videos per class")
    parser.add_argument(
        "--groups", type=int, default=d.groups, help="UCF101 groups per class; groups 1-7 form the test split"
    )
    parser.add_argument(
        "--extra-test-videos",
        type=int,
        default=d.extra_test_videos,
        help="more test videos per class (groups 1-7 only), for a tighter accuracy estimate",
    )
    parser.add_argument("--size", type=_size, default="%dx%d" % d.size, help="frame size WxH (even)")
    parser.add_argument(
        "--frames",
        type=int,
        nargs=2,
        default=list(d.frames),
        metavar=("MIN", "MAX"),
        help="video length range in frames",
    )
    parser.add_argument(
        "--short-fraction",
        type=float,
        default=d.short_fraction,
        help="share of videos made shorter than 64 frames (when MIN >= 64)",
    )
    parser.add_argument(
        "--difficulty",
        type=float,
        default=d.difficulty,
        help="scales noise, distractor objects, camera jitter and background texture (0 = clean)",
    )
    parser.add_argument("--fps", type=int, default=d.fps, help="frame rate")
    parser.add_argument("--seed", type=int, default=d.seed, help="random seed (output is deterministic)")
    parser.add_argument("--force", action="store_true", help="replace a different dataset already in OUT")


def main(args: argparse.Namespace) -> int:
    import time

    from tbfast.data.synthetic import class_names, make_synthetic_dataset, SynthOptions

    opts = dict(
        classes=args.classes,
        videos_per_class=args.videos_per_class,
        size=tuple(args.size),
        frames=tuple(args.frames),
        seed=args.seed,
        groups=args.groups,
        fps=args.fps,
        order_pairs=args.order_pairs,
        short_fraction=args.short_fraction,
        difficulty=args.difficulty,
        extra_test_videos=args.extra_test_videos,
    )
    t0 = time.time()
    out = make_synthetic_dataset(args.out, force=args.force, progress=True, **opts)
    names = class_names(SynthOptions(**opts))
    print(
        f"{len(names) * args.videos_per_class} videos, {len(names)} classes ({', '.join(names)}) "
        f"in {out} ({time.time() - t0:.1f} s)"
    )
    print(f"next: tbfast data prep {out} PREPARED --format ucf101")
    return 0
