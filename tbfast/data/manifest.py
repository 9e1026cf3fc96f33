"""The prepared-dataset manifest: one JSON object per video, order = manifest index.

Layout and fields are fixed in docs/ARCHITECTURE.md ("Prepared dataset").
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable

from tbfast.errors import UserError

MANIFEST = "manifest.jsonl"
CLASSES = "classes.txt"
REPORT = "prep_report.json"
SPLITS_DIR = "splits"
SHORT_FRAMES = 64  # one self-supervised sample spans 64 frames (METHOD.md §2)


@dataclass
class VideoRecord:
    path: str  # relative to the prepared folder, posix
    label: int  # 0-based, line number in classes.txt
    class_name: str
    split: str  # "train" | "test"
    frames: int
    fps: float
    width: int
    height: int
    source: str = ""  # relative to the source folder
    flags: list[str] = field(default_factory=list)
    bytes: int = 0  # size of the prepared file (0: unknown, a manifest from before checksums)
    blake2b: str = ""  # content checksum of the prepared file ("" unknown); loaders verify both

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=False)

    @classmethod
    def from_dict(cls, d: dict) -> "VideoRecord":
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in known})


def content_checksum(data: bytes) -> str:
    """The manifest's checksum of a prepared file's bytes (BLAKE2b, 16-byte digest, hex)."""
    import hashlib

    return hashlib.blake2b(data, digest_size=16).hexdigest()


def file_checksum(path: Path) -> str:
    """``content_checksum`` of a file, read in 1 MiB blocks (checkpoints can be large)."""
    import hashlib

    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temporary file in the same folder, fsync, then rename."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:  # a full disk or a kill: no half-written temporary file is left behind
        tmp.unlink(missing_ok=True)
        raise


def write_manifest(prepared: str | Path, records: Iterable[VideoRecord]) -> Path:
    path = Path(prepared) / MANIFEST
    atomic_write_text(path, "".join(r.to_json() + "\n" for r in records))
    return path


def write_classes(prepared: str | Path, classes: list[str]) -> Path:
    path = Path(prepared) / CLASSES
    atomic_write_text(path, "".join(c + "\n" for c in classes))
    return path


def read_manifest(prepared: str | Path) -> list[VideoRecord]:
    path = Path(prepared) / MANIFEST
    if not path.is_file():
        raise UserError(
            f"no {MANIFEST} in {prepared}; prepare the dataset first with `tbfast data prep SRC {prepared}`"
        )
    records = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = VideoRecord.from_dict(json.loads(line))
            except (ValueError, TypeError, AttributeError) as exc:
                raise UserError(f"{path}:{n}: not a manifest line ({exc}); re-run `tbfast data prep`") from exc
            bad = _invalid(rec)
            if bad:
                raise UserError(f"{path}:{n}: {bad}; re-run `tbfast data prep` to rewrite the manifest")
            records.append(rec)
    classes_file = Path(prepared) / CLASSES
    if records and classes_file.is_file():
        n_classes = len(read_classes(prepared))
        over = next((r for r in records if r.label >= n_classes), None)
        if over is not None:
            raise UserError(
                f"{path}: {over.path} has label {over.label} but {classes_file} lists {n_classes} "
                "classes; the two files come from different preparations - re-run `tbfast data prep`"
            )
    return records


def _invalid(r: VideoRecord) -> str | None:
    """Why a manifest record cannot be right (None if it can)."""
    import math

    def is_int(v):
        return isinstance(v, int) and not isinstance(v, bool)

    if not isinstance(r.path, str) or not r.path or r.path.startswith("/") or ".." in r.path.split("/"):
        return f"path {r.path!r} must be a relative path inside the prepared folder"
    if any(ord(ch) < 32 for ch in r.path):
        return f"path {r.path!r} contains control characters"
    if not is_int(r.label) or r.label < 0:
        return f"label {r.label!r} must be an integer >= 0"
    if r.split not in ("train", "test"):
        return f"split {r.split!r} must be train or test"
    if not is_int(r.frames) or r.frames < 1:
        return f"frames {r.frames!r} must be a positive integer"
    if not is_int(r.width) or not is_int(r.height) or r.width < 1 or r.height < 1:
        return f"size {r.width!r}x{r.height!r} must be positive integers"
    if not isinstance(r.fps, (int, float)) or isinstance(r.fps, bool) or not math.isfinite(r.fps) or r.fps <= 0:
        return f"fps {r.fps!r} must be a positive number"
    if not isinstance(r.flags, list):
        return f"flags {r.flags!r} must be a list"
    return None


def read_classes(prepared: str | Path) -> list[str]:
    path = Path(prepared) / CLASSES
    if not path.is_file():
        raise UserError(f"no {CLASSES} in {prepared}; prepare the dataset first with `tbfast data prep`")
    return [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]


def resolve_split_list(prepared: str | Path, file: str | Path) -> Path | None:
    """Where a split list named on the command line is: the path as given (absolute or relative to
    the working directory), else PREPARED/splits/FILE, PREPARED/FILE, or PREPARED/splits/<its name>;
    None if none of them is a file. The one rule for every command and for provenance.json."""
    prepared = Path(prepared)
    file = Path(file)
    cands = [file] if file.is_absolute() else [file, prepared / SPLITS_DIR / file, prepared / file]
    cands.append(prepared / SPLITS_DIR / file.name)
    return next((c for c in cands if c.is_file()), None)


def read_split_list(prepared: str | Path, file: str | Path, what: str = "") -> list[int]:
    """Manifest indices of the paths listed in ``file`` (found by :func:`resolve_split_list`)."""
    prepared = Path(prepared)
    found = resolve_split_list(prepared, file)
    if found is None:
        raise UserError(
            f"{what + ' ' if what else ''}split list {file} does not exist; make one with "
            f"`tbfast data splits {prepared} --fraction F --seed S`"
        )
    file = found
    index = {r.path: i for i, r in enumerate(read_manifest(prepared))}
    out, unknown = [], []
    for ln in file.read_text(encoding="utf-8").splitlines():
        ln = ln.strip()
        if not ln:
            continue
        if ln in index:
            out.append(index[ln])
        else:
            unknown.append(ln)
    if unknown:
        raise UserError(
            f"{file}: {len(unknown)} path(s) not in {prepared / MANIFEST}, e.g. {unknown[0]!r}; "
            "the split list belongs to another prepared dataset - regenerate it with `tbfast data splits`"
        )
    return out


def split_indices(records: list[VideoRecord], split: str) -> list[int]:
    if split not in ("train", "test"):
        raise UserError(f"split must be 'train' or 'test', not {split!r}")
    return [i for i, r in enumerate(records) if r.split == split]
