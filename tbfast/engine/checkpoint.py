"""Checkpoints: one dict per file, written atomically, loaded with ``weights_only=True``.

Keys (docs/ARCHITECTURE.md): ``format``, ``stage``, ``backbone``, ``num_classes`` (None for SSL),
``model``, ``optimizer``, ``scheduler``, ``scaler``, ``epoch``, ``step``, ``rng``, ``config``,
plus ``batch`` (batches of ``epoch`` already done: the loader position), ``epoch_state``
(running sums of the epoch in progress), ``best`` (best validation top-1) and ``finished``;
classifiers also ``classes`` (the class names) and, when fine-tuned, ``init_stage``.
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tbfast.errors import UserError

FORMAT = "tbfast-ckpt-1"


def _atomic_write(path: Path, write) -> None:
    """Call ``write(file)`` on a temporary file in ``path``'s folder, fsync, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600: give the file what open() would
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _read_umask() -> int:
    mask = os.umask(0)  # reading the umask means setting it; put it back at once (at import, before
    os.umask(mask)  # any thread of ours creates files)
    return mask


_UMASK = _read_umask()


def remove_stale_temps(folder: Path) -> int:
    """Delete the temporary files a killed atomic write left in ``folder`` (``.NAME.*.tmp``); call
    only while holding the folder's lock. Returns how many were removed."""
    n = 0
    for p in Path(folder).glob(".*.tmp"):
        if p.is_file():
            p.unlink(missing_ok=True)
            n += 1
    return n


def atomic_write_bytes(path: Path, data: bytes) -> None:
    _atomic_write(path, lambda f: f.write(data))


def save_checkpoint(obj: dict, path: Path) -> None:
    """torch.save to a temporary file in the same folder, fsync, then rename over ``path``."""
    _atomic_write(path, lambda f: torch.save(obj, f))


def load_checkpoint(path: str | Path, *, foreign_ok: bool = False) -> dict:
    """A tbfast checkpoint (else a UserError); ``foreign_ok``: also return any other readable torch
    file's content (e.g. torchvision weights for ``--init``), for the caller to check."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated file, not a torch file, unsafe pickle
        first = str(exc).strip().split("\n")[0].split(". ")[0][:160]  # torch's first sentence, not its essay
        raise UserError(
            f"cannot read checkpoint {path} ({exc.__class__.__name__}: {first}); "
            "is it a tbfast checkpoint (checkpoints/last.pt or best.pt)?"
        ) from None
    if not foreign_ok and (not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT):
        raise UserError(f"{path} is not a tbfast checkpoint (format {FORMAT!r} expected)")
    return ckpt


def expect(
    ckpt: dict,
    path: str | Path,
    *,
    stages: tuple[str, ...] | None = None,
    backbone: str | None = None,
    num_classes: int | None = None,
    what: str = "checkpoint",
) -> None:
    """Raise a UserError when ``ckpt`` does not fit where it is used."""
    if stages is not None and ckpt.get("stage") not in stages:
        raise UserError(
            f"{what} {path} comes from stage {ckpt.get('stage')!r}, but {' or '.join(stages)} is needed here"
        )
    if backbone is not None and ckpt.get("backbone") != backbone:
        raise UserError(
            f"{what} {path} has backbone {ckpt.get('backbone')!r}, but this run uses {backbone!r}; "
            f"pass --backbone {ckpt.get('backbone')} (or the matching --preset)"
        )
    if num_classes is not None and ckpt.get("num_classes") != num_classes:
        raise UserError(
            f"{what} {path} predicts {ckpt.get('num_classes')} classes, but the dataset has "
            f"{num_classes}; use a checkpoint trained on this dataset"
        )


# RNG states: torch tensors and plain python values only (weights_only-loadable)
def rng_state() -> dict:
    py = random.getstate()
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": [py[0], list(py[1]), py[2]],
        "numpy": [
            np_state[0],
            torch.from_numpy(np_state[1].astype(np.int64)),
            int(np_state[2]),
            int(np_state[3]),
            float(np_state[4]),
        ],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    v, internal, gauss = state["python"]
    random.setstate((v, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
