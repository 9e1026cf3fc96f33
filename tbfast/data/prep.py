"""``tbfast data prep``: transcode a dataset in parallel and write its manifest.

Safety: every output is written under a temporary name (``.<name>.partial-<pid>``) and renamed
only after it decoded with the expected frame count. Each finished video is then appended to a
journal (``OUT/.prep_journal.jsonl``, flushed and fsync'd), so completed work survives a kill -9;
a re-run trusts an output only when the journal has it with the same settings, the same source
size/mtime and the same output size. Temporary files are never trusted and are removed on start.
The manifest, classes and report are written atomically at the end.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict
from multiprocessing import get_context
from pathlib import Path

from tbfast.data.manifest import (
    REPORT,
    SHORT_FRAMES,
    VideoRecord,
    atomic_write_text,
    file_checksum,
    write_classes,
    write_manifest,
)
from tbfast.data.sources import SourceItem, list_source
from tbfast.data.transcode import CODECS, WRITE_ERRNOS, BadVideo, Settings, transcode
from tbfast.errors import UserError

JOURNAL = ".prep_journal.jsonl"
STAGING = ".staging"  # new outputs that will replace existing files when the run finishes


def _safe_dir(name: str) -> str:
    return name.replace("/", "_").replace("\\", "_").replace(" ", "_")


def output_paths(items: list[SourceItem], codec: str) -> list[str]:
    """``videos/<class>/<stem><ext>`` for each item, unique (a clash adds the source extension, then a number)."""
    ext = CODECS[codec][2]
    stems = [(_safe_dir(it.class_name), Path(it.source).stem) for it in items]
    count: dict[tuple[str, str], int] = {}
    for s in stems:
        count[s] = count.get(s, 0) + 1
    out, used = [], set()
    for it, (d, stem) in zip(items, stems):
        if count[(d, stem)] > 1:
            stem = f"{stem}_{Path(it.source).suffix.lstrip('.')}"
        name, n = f"videos/{d}/{stem}{ext}", 1
        while name in used:
            n += 1
            name = f"videos/{d}/{stem}_{n}{ext}"
        used.add(name)
        out.append(name)
    return out


def _source_id(path: Path) -> list:
    try:
        st = path.stat()
        return [st.st_size, st.st_mtime_ns]
    except OSError:
        return [None, None]


def _work(src: str, dst: str, settings: Settings) -> dict:
    """Worker: transcode to a temporary name, verify, rename. Returns a plain dict."""
    import av

    av.logging.set_level(av.logging.PANIC)
    dst_p = Path(dst)
    dst_p.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst_p.with_name(f".{dst_p.name}.partial-{os.getpid()}")
    try:
        res = transcode(src, tmp, settings)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, dst_p)
        return {"ok": True, **asdict(res), "size": dst_p.stat().st_size, "blake2b": file_checksum(dst_p)}
    except BadVideo as exc:
        return {"ok": False, "reason": str(exc)}
    except OSError as exc:
        if exc.errno in WRITE_ERRNOS:  # the disk, not the video: the whole run stops (see done())
            return {"ok": False, "fatal": [exc.errno, exc.strerror or str(exc), str(exc.filename or dst)]}
        return {"ok": False, "reason": f"unexpected error: {type(exc).__name__}: {exc}"}
    except Exception as exc:  # a crash on one video must not stop the others
        return {"ok": False, "reason": f"unexpected error: {type(exc).__name__}: {exc}"}
    finally:
        if tmp.exists():
            tmp.unlink()


def _entry_file(out: Path, e: dict | None) -> str | None:
    """The file (relative to ``out``) holding journal entry ``e``'s output, if it is intact: its
    staged copy or its final place, whichever has the recorded checksum."""
    if not e:
        return None
    rec = e.get("record", {})
    want = rec.get("blake2b")
    if not want:
        return None
    for rel in (e.get("staged"), rec.get("path")):
        if (
            rel
            and (out / rel).is_file()
            and (out / rel).stat().st_size == e.get("size", rec.get("bytes"))
            and file_checksum(out / rel) == want
        ):
            return rel
    return None


def _read_journal(path: Path) -> dict[str, dict]:
    entries: dict[str, dict] = {}
    if not path.is_file():
        return entries
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                e = json.loads(line)
                entries[e["source"]] = e
            except (ValueError, KeyError, TypeError):
                continue  # a torn last line after a kill
    return entries


def prepare(src: str | Path, out: str | Path, fmt: str, *, console=None, **kw) -> dict:
    """Prepare ``src`` into ``out``; return the report dict (also written to OUT/prep_report.json).
    Keyword arguments: those of :func:`_prepare`. One writer per OUT at a time (a lock file)."""
    from rich.console import Console

    from tbfast.lock import folder_lock

    console = console or Console(stderr=True)
    _check_options(
        Path(src),
        Path(out),
        kw.get("codec", "vp9"),
        kw.get("fps"),
        kw.get("gop", 16),
        kw.get("short_side", 128),
        kw.get("workers"),
        kw.get("crf"),
    )
    with folder_lock(Path(out), "tbfast data prep", note=lambda m: console.print(f"[yellow]note[/yellow] {m}")):
        return _prepare(src, out, fmt, console=console, **kw)


class _VideoNotes:
    """The per-video notes of a prep run on the console: the first few of each kind in full, one line
    each (not wrapped: a log file greps), then only counted; every note is in prep_report.json."""

    SHOWN = 3

    def __init__(self, console) -> None:
        self.console = console
        self.counts: Counter[str] = Counter()

    @staticmethod
    def kind(text: str) -> str:
        """'short: 53 frames < 64 (...)' -> 'short'; numbers do not make a new kind."""
        return re.sub(r"\d+(\.\d+)?", "N", text.split(":", 1)[0]).strip()[:60]

    def __call__(self, source: str, text: str) -> None:
        from rich.text import Text

        kind = self.kind(text)
        self.counts[kind] += 1
        if self.counts[kind] <= self.SHOWN:
            self.console.print(Text.assemble(("note", "yellow"), f" {source}: {text}"), soft_wrap=True)
        if self.counts[kind] == self.SHOWN:
            self.console.print(
                Text(f"     (more '{kind}' notes are counted at the end; all are in {REPORT})", style="dim"),
                soft_wrap=True,
            )

    def summary(self) -> None:
        from rich.text import Text

        for kind, n in self.counts.items():
            if n > self.SHOWN:
                self.console.print(
                    Text.assemble(
                        ("note", "yellow"),
                        f" {n} videos in all with '{kind}' "
                        f"({n - self.SHOWN} not shown above; every one is in {REPORT})",
                    ),
                    soft_wrap=True,
                )


def _check_options(src: Path, out: Path, codec, fps, gop, short_side, workers, crf) -> None:
    if not src.is_dir():
        raise UserError(f"source folder {src} does not exist or is not a folder")
    if codec not in CODECS:
        raise UserError(f"--codec {codec!r}: choose one of {', '.join(CODECS)}")
    if gop < 1:
        raise UserError("--gop must be at least 1")
    if short_side != 0 and short_side < 2:
        raise UserError("--short-side must be at least 2 (or 0 to keep the source size)")
    if fps is not None and not (math.isfinite(fps) and 0 < fps <= 1000):
        raise UserError(f"--fps {fps}: give a frame rate in (0, 1000]")
    crf_max = {"vp9": 63, "h264": 51}[codec]
    if crf is not None and not 0 <= crf <= crf_max:
        raise UserError(f"--crf {crf}: {codec} takes 0 (best) to {crf_max}")
    if short_side > 8192:
        raise UserError(f"--short-side {short_side}: at most 8192 (or 0 to keep the source size)")
    if workers is not None and workers < 1:
        raise UserError("--workers must be at least 1")
    if out.resolve() == src.resolve():
        raise UserError("OUT must differ from SRC")
    if src.resolve() in out.resolve().parents:
        raise UserError(
            f"OUT {out} is inside SRC {src}: its videos would be listed as source videos; put OUT elsewhere"
        )


def _prepare(
    src: str | Path,
    out: str | Path,
    fmt: str,
    *,
    splits: str | Path | None = None,
    split_id: int = 1,
    test_fraction: float = 0.0,
    seed: int = 0,
    codec: str = "vp9",
    fps: float | None = None,
    gop: int = 16,
    short_side: int = 128,
    workers: int | None = None,
    crf: int | None = None,
    console=None,
    show_progress: bool = True,
) -> dict:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    src, out = Path(src), Path(out)
    _check_options(src, out, codec, fps, gop, short_side, workers, crf)
    classes, listed = list_source(fmt, src, Path(splits) if splits else None, split_id, test_fraction, seed)
    items, seen = [], set()
    duplicates: list[dict] = []
    for it in listed:  # a video listed twice (e.g. in both train and test lists) is prepared once
        if it.source in seen:
            duplicates.append(
                {"source": it.source, "reason": f"listed more than once (again as {it.split}); kept where first listed"}
            )
            console.print(f"[yellow]note[/yellow] {it.source}: {duplicates[-1]['reason']}")
        else:
            seen.add(it.source)
            items.append(it)
    if not items:
        raise UserError(f"no videos listed in {src} for format {fmt}; check SRC, --format and --splits")
    for c in sorted(set(classes) - {it.class_name for it in items}):
        duplicates.append(
            {
                "source": c,
                "reason": "this class has no videos (it keeps its label, but no model can "
                "learn it); add its videos or remove the class",
            }
        )
        console.print(f"[yellow]note[/yellow] class {c}: {duplicates[-1]['reason']}")
    unlisted: list[str] = []
    if fmt == "folder":
        from tbfast.data.sources import unlisted_in_folders

        unlisted = unlisted_in_folders(src)
        if unlisted:
            shown = ", ".join(unlisted[:5]) + (", ..." if len(unlisted) > 5 else "")
            reason = (
                f"{len(unlisted)} file(s) or folder(s) in class folders are not videos by their extension "
                f"and were not listed: {shown}. If some are videos, give them a video extension "
                "(.mp4, .mkv, .avi, .mts, ...); videos in nested folders are not listed"
            )
            duplicates.append({"source": str(src), "reason": reason, "unlisted": unlisted})
            console.print(f"[yellow]note[/yellow] {reason}")
    bad_names = [it.source for it in items if any(ord(ch) < 32 or ch == "\x7f" for ch in it.source)]
    if bad_names:
        raise UserError(
            f"{len(bad_names)} video name(s) contain control characters (e.g. {bad_names[0]!r}), "
            "which split lists cannot hold; rename them"
        )
    workers = workers or os.cpu_count() or 1
    workers = max(1, min(workers, len(items)))
    settings = Settings(
        codec=codec, fps=fps, gop=gop, short_side=short_side, threads=max(1, (os.cpu_count() or 1) // workers), crf=crf
    )
    out.mkdir(parents=True, exist_ok=True)
    # temporary files of an interrupted run are never trusted (we hold OUT's lock: no other writer)
    for folder in (out / "videos", out / STAGING):
        if folder.is_dir():
            for p in folder.rglob(".*.partial-*"):
                p.unlink(missing_ok=True)
    for p in list(out.glob(".*.tmp*")) + list((out / "splits").glob(".*.tmp*")):  # manifest/journal/report writes
        if p.is_file():
            p.unlink(missing_ok=True)
    dsts = output_paths(items, codec)
    label = {c: i for i, c in enumerate(classes)}
    journal_path = out / JOURNAL
    journal = _read_journal(journal_path)
    key = settings.key()

    records: dict[int, VideoRecord] = {}
    failures, warnings, todo = [], list(duplicates), []
    kept: dict[str, dict] = {}  # journal entries of this run's valid outputs
    skipped = redo_settings = 0
    for i, (it, dst) in enumerate(zip(items, dsts)):
        e = journal.get(it.source)
        sid = _source_id(src / it.source)
        trusted = bool(e and e.get("key") == key and e.get("src_id") == sid and e.get("record", {}).get("path") == dst)
        where = _entry_file(out, e) if trusted else None
        if e is not None and trusted and where is None and not e["record"].get("blake2b"):
            # journals from before checksums: the size must match; the checksum is recorded now
            where = dst if (out / dst).is_file() and (out / dst).stat().st_size == e.get("size") else None
        trusted = where is not None
        if e is not None and where is not None:  # trusted: _entry_file checked the recorded checksum;
            # only pre-checksum journals are hashed here
            digest = e["record"].get("blake2b") or file_checksum(out / where)
            e = {**e, "record": {**e["record"], "bytes": e["size"], "blake2b": digest}}
            e.pop("staged", None)
            if where != dst:
                e["staged"] = where
            rec = VideoRecord.from_dict(e["record"])
            rec.label, rec.class_name, rec.split = label[it.class_name], it.class_name, it.split
            records[i] = rec
            kept[it.source] = e
            warnings.extend({"source": it.source, "reason": n} for n in e.get("notes", []))
            skipped += 1
        else:
            todo.append(i)
            if e and e.get("key") != key and e.get("src_id") == sid:
                redo_settings += 1
    if redo_settings:
        console.print(
            f"[yellow]note[/yellow] {redo_settings} video(s) were prepared with other settings or by an "
            "earlier version of prep: transcoded again (finished ones are kept if this run fails)"
        )
    if skipped:
        console.print(f"[green]skipping {skipped} video(s) already prepared and valid[/green]")

    t0 = time.time()
    jf = open(journal_path, "a", encoding="utf-8")

    kept_earlier: list[int] = []

    def _keep_earlier(i: int) -> None:
        """A video this run could not (re-)prepare keeps its earlier prepared file, if that is intact:
        a failed re-run (source unplugged, a decoder crash) never drops work that was done."""
        it, prev = items[i], journal.get(items[i].source)
        if prev is None or _entry_file(out, prev) is None:
            return
        path = prev["record"]["path"]
        rec = VideoRecord.from_dict(prev["record"])
        rec.label, rec.class_name, rec.split = label[it.class_name], it.class_name, it.split
        records[i] = rec
        kept[it.source] = prev
        kept_earlier.append(i)
        note = f"kept the earlier prepared file {path} (settings {prev.get('key')}); fix the failure and re-run"
        warnings.append({"source": it.source, "reason": note})
        console.print(f"[yellow]note[/yellow] {it.source}: {note}")

    # a new output never replaces an existing file while the run is under way: it is staged and moved
    # into place when the run finishes, so a run that stops (full disk, kill) leaves OUT as it was
    staged = {i: f"{STAGING}/{dsts[i]}" for i in todo if os.path.lexists(out / dsts[i])}

    def target(i: int) -> str:
        return str(out / staged.get(i, dsts[i]))

    video_notes = _VideoNotes(console)

    def done(i: int, res: dict) -> None:
        it, dst = items[i], dsts[i]
        if res.get("fatal"):  # e.g. the disk is full: stop; the journal keeps every finished video
            raise OSError(*res["fatal"])
        if not res["ok"]:
            failures.append(
                {"source": it.source, "class_name": it.class_name, "split": it.split, "reason": res["reason"]}
            )
            console.print(Text.assemble(("FAILED", "red"), f" {it.source}: {res['reason']}"), soft_wrap=True)
            _keep_earlier(i)
            return
        flags = ["short"] if res["frames"] < SHORT_FRAMES else []
        if res["src_width"] % 2 or res["src_height"] % 2:
            flags.append("odd_size")
        flags += res.get("flags", [])
        rec = VideoRecord(
            path=dst,
            label=label[it.class_name],
            class_name=it.class_name,
            split=it.split,
            frames=res["frames"],
            fps=round(res["fps"], 6),
            width=res["width"],
            height=res["height"],
            source=it.source,
            flags=flags,
            bytes=res["size"],
            blake2b=res["blake2b"],
        )
        records[i] = rec
        for n in res["notes"]:
            warnings.append({"source": it.source, "reason": n})
            video_notes(it.source, n)
        entry = {
            "source": it.source,
            "key": key,
            "src_id": _source_id(src / it.source),
            "size": res["size"],
            "record": asdict(rec),
            "notes": res["notes"],
        }
        if i in staged:
            entry["staged"] = staged[i]
        kept[it.source] = entry
        jf.write(json.dumps(entry) + "\n")
        jf.flush()
        os.fsync(jf.fileno())

    columns = (
        TextColumn("[bold]prep[/bold]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("videos"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    try:
        with Progress(*columns, console=console, disable=not show_progress or not todo) as bar:
            task = bar.add_task("prep", total=len(todo))
            if workers == 1 or len(todo) <= 1:
                for i in todo:
                    done(i, _work(str(src / items[i].source), target(i), settings))
                    bar.advance(task)
            elif todo:
                with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
                    futs = {pool.submit(_work, str(src / items[i].source), target(i), settings): i for i in todo}
                    try:
                        for fut in as_completed(futs):
                            try:
                                res = fut.result()
                            except Exception as exc:  # e.g. a decoder crash took the worker down
                                res = {"ok": False, "reason": f"worker process failed: {type(exc).__name__}: {exc}"}
                            done(futs[fut], res)
                            bar.advance(task)
                    except BaseException:  # a full disk, Ctrl-C: do not start the videos still queued
                        pool.shutdown(wait=True, cancel_futures=True)
                        raise
    finally:
        jf.close()
    video_notes.summary()

    # the run finished: move staged outputs into place (each move is atomic; a kill in between is
    # resumed: the journal still names the staged file, or the moved one has the recorded checksum)
    for e in kept.values():
        if e.get("staged"):
            os.replace(out / e["staged"], out / e["record"]["path"])
            del e["staged"]
    if (out / STAGING).is_dir():
        shutil.rmtree(out / STAGING, ignore_errors=True)
    # compact the journal to this run's outputs
    atomic_write_text(journal_path, "".join(json.dumps(kept[k]) + "\n" for k in sorted(kept)))
    ordered = [records[i] for i in sorted(records, key=lambda i: records[i].path)]
    write_manifest(out, ordered)
    write_classes(out, classes)
    counts = {
        "listed": len(items),
        "prepared": len(ordered),
        "transcoded": len(ordered) - skipped - len(kept_earlier),
        "kept_earlier": len(kept_earlier),
        "skipped": skipped,
        "failed": len(failures),
        "short": sum("short" in r.flags for r in ordered),
        "train": sum(r.split == "train" for r in ordered),
        "test": sum(r.split == "test" for r in ordered),
        "classes": len(classes),
        "unlisted": len(unlisted),
    }
    report = {
        "format": fmt,
        "source": str(src),
        "split_id": split_id,
        "settings": {"codec": codec, "fps": fps, "gop": gop, "short_side": short_side, "workers": workers},
        "counts": counts,
        "elapsed_s": round(time.time() - t0, 3),
        "failures": sorted(failures, key=lambda f: f["source"]),
        "warnings": sorted(warnings, key=lambda w: (w["source"], w["reason"])),
        "skipped": skipped,
    }
    atomic_write_text(out / REPORT, json.dumps(report, indent=1) + "\n")
    return report
