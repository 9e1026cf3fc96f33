"""Class-balanced labeled / unlabeled subsets of a manifest's train split (METHOD.md §7).

Within each class, train videos are ranked by sha256(f"{seed}:{path}") and the first
max(1, round(fraction * n_class)) are labeled. Ranking by a hash keeps the result identical on
every Python version and platform, and makes the subsets nested: for one seed the 5 % labeled set
is contained in the 10 % one.
"""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from pathlib import Path
from typing import Sequence

from tbfast.data.manifest import SPLITS_DIR, VideoRecord, atomic_write_text, read_manifest
from tbfast.errors import UserError


def parse_fraction(value: str | float) -> float:
    """'5%' -> 0.05, '0.05' -> 0.05, 1 -> 1.0; must lie in (0, 1]."""
    text = str(value).strip()
    try:
        frac = float(text[:-1]) / 100.0 if text.endswith("%") else float(text)
    except ValueError:
        raise UserError(f"fraction {value!r} is not a number; write e.g. 0.05 or 5%") from None
    if not (0.0 < frac <= 1.0) or math.isnan(frac):
        raise UserError(f"fraction {value!r} must be in (0, 1] (or a percent in (0%, 100%]); write e.g. 0.05 or 5%")
    return frac


def pct_tag(fraction: float) -> str:
    """File-name form of a fraction: 0.05 -> '5', 0.005 -> '0.5', 1.0 -> '100'."""
    return f"{round(fraction * 100, 6):g}"


def split_names(fraction: float, seed: int) -> tuple[str, str]:
    tag = f"{pct_tag(fraction)}pct_seed{seed}"
    return f"labeled_{tag}.txt", f"unlabeled_{tag}.txt"


def _rank(seed: int, path: str) -> str:
    return hashlib.sha256(f"{seed}:{path}".encode()).hexdigest()


def make_label_split(records: Sequence[VideoRecord], fraction: float | str, seed: int) -> tuple[list[int], list[int]]:
    """Manifest indices (sorted) of the labeled and unlabeled train videos.

    At least one labeled video per class that has train videos.
    """
    frac = parse_fraction(fraction)
    by_class: dict[int, list[int]] = defaultdict(list)
    for i, r in enumerate(records):
        if r.split == "train":
            by_class[r.label].append(i)
    if not by_class:
        raise UserError("the manifest has no train videos; nothing to split")
    labeled: list[int] = []
    for _, idx in sorted(by_class.items()):
        idx = sorted(idx, key=lambda i: _rank(seed, records[i].path))
        k = min(len(idx), max(1, math.floor(frac * len(idx) + 0.5)))
        labeled.extend(idx[:k])
    lab = set(labeled)
    unlabeled = [i for idx in by_class.values() for i in idx if i not in lab]
    return sorted(labeled), sorted(unlabeled)


def write_label_split(
    prepared: str | Path, fraction: float | str, seed: int, records: Sequence[VideoRecord] | None = None
) -> tuple[Path, Path, str]:
    """Write PREPARED/splits/{labeled,unlabeled}_<pct>pct_seed<S>.txt; return both paths and a sha256.

    Each file lists manifest paths, sorted, one per line (LF). The checksum covers both files:
    sha256 of the labeled file's bytes followed by the unlabeled file's bytes.
    """
    prepared = Path(prepared)
    frac = parse_fraction(fraction)
    records = read_manifest(prepared) if records is None else records
    lab, unl = make_label_split(records, frac, seed)
    out = prepared / SPLITS_DIR
    out.mkdir(parents=True, exist_ok=True)
    names = split_names(frac, seed)
    texts = ["".join(p + "\n" for p in sorted(records[i].path for i in ids)) for ids in (lab, unl)]
    paths = []
    for name, text in zip(names, texts):
        atomic_write_text(out / name, text)
        paths.append(out / name)
    digest = hashlib.sha256("".join(texts).encode()).hexdigest()
    return paths[0], paths[1], digest
