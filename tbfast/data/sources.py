"""Official split-file parsers: which source video belongs to which class and split.

Each ``list_<format>`` returns ``(classes, items)``: the class names in label order and one
:class:`SourceItem` per listed video (the file may be missing; prep reports that).

Formats (SRC = the folder given to ``tbfast data prep``):

* ``ucf101``: videos under ``SRC/UCF-101/<Class>/v_<Class>_gGG_cCC.avi`` (or ``SRC/<Class>/...``);
  split files ``classInd.txt``, ``trainlistNN.txt``, ``testlistNN.txt`` in ``--splits`` (default
  ``SRC/ucfTrainTestlist``). CRLF or LF. Labels follow classInd.txt (1-based there, 0-based here).
* ``hmdb51``: videos under ``SRC/<class>/<video>.avi``; split files ``<class>_test_splitN.txt`` with
  lines ``<video> <tag>`` (1 train, 2 test, 0 unused) in ``--splits`` (default
  ``SRC/testTrainMulti_7030_splits``). Labels = sorted class names.
* ``kinetics``: Kinetics-400 CSV(s) ``label,youtube_id,time_start,time_end,split`` (``--splits`` = a
  CSV file or a folder of them, default every ``*.csv`` in SRC). Files are looked up as the
  ActivityNet downloader names them, ``SRC/<split>/<label>/<youtube_id>_<start:06d>_<end:06d>.mp4``
  (also without the ``<split>/`` level, with spaces in the label as ``_``, and .mkv/.webm).
  split ``train`` -> train, ``val``/``validate`` -> test, ``test`` rows are not used.
  Labels = sorted class names of the train rows.
* ``folder``: ``SRC/<class>/<video>``; everything is train unless ``test_fraction`` > 0 holds out a
  class-balanced, seeded share of each class as test. Labels = sorted class names.
"""

from __future__ import annotations

import csv
import random
import re
from dataclasses import dataclass
from pathlib import Path

from tbfast.errors import UserError

# matched case-insensitively; cameras and broadcast (.ts .mts .m2ts .mxf .vob .mod .tod .dv) included
VIDEO_EXTS = {
    ".avi",
    ".mp4",
    ".mkv",
    ".webm",
    ".mov",
    ".qt",
    ".mpg",
    ".mpeg",
    ".m2v",
    ".m4v",
    ".flv",
    ".f4v",
    ".wmv",
    ".asf",
    ".ogv",
    ".3gp",
    ".3g2",
    ".ts",
    ".mts",
    ".m2ts",
    ".mxf",
    ".vob",
    ".mod",
    ".tod",
    ".dv",
    ".divx",
    ".rm",
    ".rmvb",
    ".y4m",
}
FORMATS = ("ucf101", "hmdb51", "kinetics", "folder")


@dataclass(frozen=True)
class SourceItem:
    source: str  # path relative to SRC (posix); may not exist
    class_name: str
    split: str  # "train" | "test"


def _lines(path: Path) -> list[str]:
    # utf-8-sig drops a BOM; splitlines() handles CRLF, LF and stray CR
    return [ln.strip() for ln in path.read_text(encoding="utf-8-sig", errors="replace").splitlines() if ln.strip()]


def _resolve_ci(root: Path, rel: str) -> str:
    """``rel`` as it exists under ``root``, matching each component case-insensitively if needed."""
    if (root / rel).exists():
        return rel
    cur, parts = root, []
    for part in rel.split("/"):
        if (cur / part).exists():
            parts.append(part)
        else:
            try:
                match = next((p.name for p in cur.iterdir() if p.name.lower() == part.lower()), None)
            except OSError:
                match = None
            if match is None:
                return rel
            parts.append(match)
        cur = cur / parts[-1]
    return "/".join(parts)


def list_source(
    fmt: str, src: Path, splits: Path | None = None, split_id: int = 1, test_fraction: float = 0.0, seed: int = 0
) -> tuple[list[str], list[SourceItem]]:
    src = Path(src)
    if not src.is_dir():
        raise UserError(f"source folder {src} does not exist or is not a folder")
    if fmt == "ucf101":
        return list_ucf101(src, splits, split_id)
    if fmt == "hmdb51":
        return list_hmdb51(src, splits, split_id)
    if fmt == "kinetics":
        return list_kinetics(src, splits)
    if fmt == "folder":
        return list_folder(src, test_fraction, seed)
    raise UserError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")


# --- UCF101 -----------------------------------------------------------------------------------


def parse_ucf101_splits(split_dir: Path, split_id: int = 1) -> tuple[list[str], list[tuple[str, str, str]]]:
    """Return (classes, [(relpath 'Class/v_...avi', class_name, split)]) from the official files."""
    split_dir = Path(split_dir)
    ci = split_dir / "classInd.txt"
    train = split_dir / f"trainlist{split_id:02d}.txt"
    test = split_dir / f"testlist{split_id:02d}.txt"
    for f in (ci, train, test):
        if not f.is_file():
            raise UserError(
                f"UCF101 split file {f} not found; pass the ucfTrainTestlist folder with --splits "
                "(and --split-id 1|2|3)"
            )
    classes: dict[int, str] = {}
    for ln in _lines(ci):
        parts = ln.split()
        if len(parts) != 2 or not parts[0].isdigit():
            raise UserError(f"{ci}: expected lines '<index> <ClassName>', got {ln!r}")
        if int(parts[0]) in classes:
            raise UserError(f"{ci}: class index {parts[0]} is listed twice")
        if parts[1].lower() in (c.lower() for c in classes.values()):
            raise UserError(f"{ci}: class {parts[1]!r} is listed twice")
        classes[int(parts[0])] = parts[1]
    if sorted(classes) != list(range(1, len(classes) + 1)):
        raise UserError(f"{ci}: class indices must be 1..N without gaps")
    names = [classes[i] for i in range(1, len(classes) + 1)]
    lower = {n.lower(): n for n in names}
    out = []
    for split, f in (("train", train), ("test", test)):
        for ln in _lines(f):
            parts = ln.split()
            rel = parts[0].replace("\\", "/")
            folder = rel.split("/")[0]
            # the official lists write e.g. HandstandPushups/v_HandStandPushups_...: match case-insensitively
            cls = lower.get(folder.lower())
            if cls is None:
                raise UserError(f"{f}: class folder {folder!r} of {rel!r} is not in classInd.txt")
            if split == "train" and len(parts) > 1 and parts[1].isdigit() and classes.get(int(parts[1])) != cls:
                raise UserError(f"{f}: {rel!r} has label {parts[1]} but its folder says {cls!r}")
            out.append((rel, cls, split))
    return names, out


def list_ucf101(src: Path, splits: Path | None, split_id: int) -> tuple[list[str], list[SourceItem]]:
    split_dir = Path(splits) if splits else src / "ucfTrainTestlist"
    classes, rows = parse_ucf101_splits(split_dir, split_id)
    video_root = "UCF-101/" if (src / "UCF-101").is_dir() else ""
    items = [SourceItem(_resolve_ci(src, video_root + rel), cls, split) for rel, cls, split in rows]
    return classes, items


# --- HMDB51 -----------------------------------------------------------------------------------

_HMDB_RE = re.compile(r"^(?P<cls>.+)_test_split(?P<n>\d+)\.txt$")


def parse_hmdb51_splits(split_dir: Path, split_id: int = 1) -> tuple[list[str], list[tuple[str, str, str]]]:
    split_dir = Path(split_dir)
    if not split_dir.is_dir():
        raise UserError(f"HMDB51 split folder {split_dir} not found; pass testTrainMulti_7030_splits with --splits")
    files = {}
    for f in split_dir.iterdir():
        m = _HMDB_RE.match(f.name)
        if m and int(m["n"]) == split_id:
            files[m["cls"]] = f
    if not files:
        raise UserError(f"no <class>_test_split{split_id}.txt files in {split_dir}; check --splits and --split-id")
    classes = sorted(files)
    out = []
    for cls in classes:
        for ln in _lines(files[cls]):
            parts = ln.split()
            if len(parts) < 2 or parts[1] not in ("0", "1", "2"):
                raise UserError(f"{files[cls]}: expected '<video> <0|1|2>', got {ln!r}")
            if parts[1] == "0":
                continue
            out.append((f"{cls}/{parts[0]}", cls, "train" if parts[1] == "1" else "test"))
    return classes, out


def list_hmdb51(src: Path, splits: Path | None, split_id: int) -> tuple[list[str], list[SourceItem]]:
    split_dir = Path(splits) if splits else src / "testTrainMulti_7030_splits"
    classes, rows = parse_hmdb51_splits(split_dir, split_id)
    return classes, [SourceItem(_resolve_ci(src, rel), cls, split) for rel, cls, split in rows]


# --- Kinetics ---------------------------------------------------------------------------------


def parse_kinetics_csv(paths: list[Path]) -> list[dict]:
    rows = []
    for p in paths:
        with open(p, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            need = {"label", "youtube_id", "time_start", "time_end", "split"}
            if not reader.fieldnames or not need <= set(reader.fieldnames):
                raise UserError(f"{p}: expected a CSV header with {','.join(sorted(need))}")
            for row in reader:
                where = f"{p}:{reader.line_num}"
                if None in row or any(row.get(k) in (None, "") for k in ("label", "youtube_id", "split")):
                    raise UserError(
                        f"{where}: a row without label, youtube_id or split (or with extra fields): "
                        f"{row}; fix or remove that line"
                    )
                try:
                    start, end = float(row["time_start"]), float(row["time_end"])
                except (TypeError, ValueError):
                    raise UserError(
                        f"{where}: time_start/time_end {row.get('time_start')!r}/{row.get('time_end')!r} "
                        "are not numbers; fix or remove that line"
                    ) from None
                if not (0 <= start < end):
                    raise UserError(f"{where}: time_start {start} must be >= 0 and below time_end {end}")
                rows.append(row)
    return rows


def kinetics_name(youtube_id: str, start: str, end: str) -> str:
    return f"{youtube_id}_{int(float(start)):06d}_{int(float(end)):06d}.mp4"


def list_kinetics(src: Path, splits: Path | None) -> tuple[list[str], list[SourceItem]]:
    if splits is None:
        csvs = sorted(src.glob("*.csv"))
    elif Path(splits).is_dir():
        csvs = sorted(Path(splits).glob("*.csv"))
    else:
        csvs = [Path(splits)]
    if not csvs or not all(p.is_file() for p in csvs):
        raise UserError(
            f"no Kinetics CSV found ({splits or src}); pass the annotation CSV (or its folder) with --splits"
        )
    rows = parse_kinetics_csv(csvs)
    split_map = {"train": "train", "val": "test", "validate": "test", "valid": "test", "validation": "test"}
    classes = sorted({r["label"] for r in rows if r["split"] == "train"}) or sorted({r["label"] for r in rows})
    known = set(classes)
    items = []
    for r in rows:
        split = split_map.get(r["split"].strip().lower())
        if split is None or r["label"] not in known:
            continue
        name = kinetics_name(r["youtube_id"], r["time_start"], r["time_end"])
        label = r["label"]
        cands = []
        for sdir in (r["split"], "val" if split == "test" else "train", "validate" if split == "test" else "train", ""):
            for ldir in (label, label.replace(" ", "_")):
                for ext in (".mp4", ".mkv", ".webm"):
                    cands.append("/".join(p for p in (sdir, ldir, name[:-4] + ext) if p))
        rel = next((c for c in cands if (src / c).is_file()), cands[0])
        items.append(SourceItem(rel, label, split))
    return classes, items


# --- folder -----------------------------------------------------------------------------------


def list_folder(src: Path, test_fraction: float = 0.0, seed: int = 0) -> tuple[list[str], list[SourceItem]]:
    if not 0.0 <= test_fraction < 1.0:
        raise UserError(f"--test-fraction must be in [0, 1), got {test_fraction}")
    classes = sorted(p.name for p in src.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise UserError(f"{src} has no class folders; the folder format is SRC/<class>/<video>")
    real: dict[Path, str] = {}
    for cls in classes:  # a class folder that links to another (or to SRC itself) would label videos twice
        r = (src / cls).resolve()
        if r in real:
            raise UserError(
                f"class folder {src / cls} is a link to class folder {real[r]}: its videos would get "
                "two labels; remove the link or make it a real folder"
            )
        if r == src.resolve() or r in src.resolve().parents:
            raise UserError(f"class folder {src / cls} links to SRC itself (or above it); remove the link")
        real[r] = cls
    items: list[SourceItem] = []
    for cls in classes:
        # a broken symlink or unreadable file still counts: prep reports it instead of skipping it silently
        vids = sorted(
            p.name for p in (src / cls).iterdir() if not p.name.startswith(".") and p.suffix.lower() in VIDEO_EXTS
        )
        n_test = int(round(len(vids) * test_fraction)) if test_fraction > 0 else 0
        if test_fraction > 0 and len(vids) >= 2:
            n_test = min(max(n_test, 1), len(vids) - 1)
        rng = random.Random(f"{seed}:{cls}")
        test = set(rng.sample(vids, n_test)) if n_test else set()
        items.extend(SourceItem(f"{cls}/{v}", cls, "test" if v in test else "train") for v in vids)
    owner: dict[Path, str] = {}
    for it in items:  # the same file (through links) in two classes: one video, two labels
        r = (src / it.source).resolve()
        prev = owner.setdefault(r, it.source)
        if prev != it.source and prev.split("/")[0] != it.class_name:
            raise UserError(
                f"{it.source} and {prev} are the same file (a link) in two classes; a video has one "
                "label: remove one of them"
            )
    return classes, items


def unlisted_in_folders(src: Path) -> list[str]:
    """Files and folders inside the class folders of a ``folder`` source that are not listed as
    videos (an unknown extension, or a nested folder), as paths relative to ``src``. Hidden names
    (``.DS_Store``) are left out."""
    out = []
    for cls in sorted(p for p in src.iterdir() if p.is_dir() and not p.name.startswith(".")):
        try:
            entries = sorted(cls.iterdir())
        except OSError:
            continue
        for p in entries:
            if p.name.startswith("."):
                continue
            if p.suffix.lower() not in VIDEO_EXTS:  # (a folder named like a video is listed; prep reports it)
                out.append(f"{cls.name}/{p.name}" + ("/" if p.is_dir() else ""))
    return out
