"""`tbfast data splits PREPARED --fraction F --seed S`: a class-balanced labeled/unlabeled split."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    parser.add_argument("prepared", metavar="PREPARED", help="prepared dataset folder (from `tbfast data prep`)")
    parser.add_argument(
        "--fraction",
        nargs="+",
        default=["0.05"],
        help="labeled share of the train split, in (0,1] or a percent like 5%%; several allowed",
    )
    parser.add_argument("--seed", type=int, nargs="+", default=[0], help="seed(s)")


def main(args: argparse.Namespace) -> int:
    from tbfast.data.manifest import read_manifest
    from tbfast.data.splits import parse_fraction, write_label_split

    records = read_manifest(args.prepared)
    fracs = [parse_fraction(f) for f in args.fraction]
    for frac in fracs:
        for seed in args.seed:
            lab, unl, digest = write_label_split(args.prepared, frac, seed, records)
            n_lab = sum(1 for _ in open(lab))
            n_unl = sum(1 for _ in open(unl))
            print(f"{lab}  {n_lab} labeled / {n_unl} unlabeled  sha256 {digest}")
    return 0
