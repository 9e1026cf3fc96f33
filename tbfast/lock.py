"""One writer per output folder: a lock file naming its holder (pid, host, command, start time).

``with folder_lock(OUT, "data prep"):`` around everything that writes into OUT. A second writer
gets a :class:`~tbfast.errors.UserError` naming the holder and how to clear a stale lock; a lock
left by a killed process on this host (its pid no longer runs) is taken over with a note.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

from tbfast.errors import UserError

LOCK_NAME = ".tbfast.lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    except OSError:
        return False
    return True


def _holder(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def acquire(folder: Path, what: str, note: Callable[[str], None] | None = None) -> Path:
    """Create FOLDER/.tbfast.lock for this process or raise UserError naming the holder."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        why = exc.strerror or str(exc)
        if isinstance(exc, (FileExistsError, NotADirectoryError)):
            why += " (a file stands where a folder is needed)"
        raise UserError(f"cannot create folder {folder}: {why}") from exc
    path = folder / LOCK_NAME
    me = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "what": what,
        "command": " ".join(sys.argv[:6]),
        "since": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            h = _holder(path)
            if h.get("pid") == os.getpid() and h.get("host") == me["host"]:
                return path  # this process already holds it (e.g. the recipe around a stage)
            stale = h.get("host") == me["host"] and isinstance(h.get("pid"), int) and not _alive(h["pid"])
            if stale or not h:  # a killed writer, or a lock file cut while being written
                if note:
                    note(
                        f"removed a stale lock of {h.get('what', 'an unknown writer')} "
                        f"(pid {h.get('pid', '?')}, no longer running) on {folder}"
                    )
                path.unlink(missing_ok=True)
                continue
            raise UserError(
                f"{folder} is in use by {h.get('what', 'another tbfast process')} (pid {h.get('pid')} on "
                f"{h.get('host')}, since {h.get('since')}: {h.get('command', '')}); wait for it to "
                f"finish, or, if that process is gone, delete {path}"
            ) from None
        except OSError as exc:
            raise UserError(f"cannot write in {folder}: {exc.strerror or exc}") from exc
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(me))
        return path
    raise UserError(f"cannot take the lock {path}; delete it if no tbfast process uses {folder}")


def release(path: Path | None) -> None:
    if path is None:
        return
    h = _holder(path)
    if h.get("pid") == os.getpid() and h.get("host") == socket.gethostname():
        path.unlink(missing_ok=True)


@contextlib.contextmanager
def folder_lock(folder, what: str, note: Callable[[str], None] | None = None) -> Iterator[Path]:
    """Hold FOLDER's lock for the block. A folder this call created is removed again if the block
    fails before writing anything into it (a refused command leaves no empty output folder)."""
    path = Path(folder) / LOCK_NAME
    held_before = _holder(path).get("pid") == os.getpid() and path.exists()
    created = not os.path.lexists(folder)
    path = acquire(Path(folder), what, note)
    ok = False
    try:
        yield path
        ok = True
    finally:
        if not held_before:
            release(path)
            if created and not ok:
                try:
                    Path(folder).rmdir()  # only if empty
                except OSError:
                    pass
