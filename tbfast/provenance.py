"""Where a run came from: the command, the software, and every input file with its checksum.

Written as ``provenance.json`` in every training run directory (and refreshed on each resume), so
that a result can be traced to the exact data, split, scores and checkpoints it was computed from.
"""

from __future__ import annotations

import platform
import sys
from pathlib import Path


COMMAND: list[str] | None = None  # the tbfast command line being run (set by tbfast.cli.main)


def git_commit(start: Path | None = None) -> str | None:
    """The commit of the git checkout tbfast runs from (read from .git, no subprocess), else None."""
    here = (start or Path(__file__)).resolve()
    for folder in (here, *here.parents):
        git = folder / ".git"
        if git.is_file():  # a worktree: "gitdir: PATH"
            text = git.read_text(encoding="utf-8", errors="replace").strip()
            git = (folder / text.split(":", 1)[1].strip()) if text.startswith("gitdir:") else git
        if git.is_dir():
            try:
                head = (git / "HEAD").read_text(encoding="utf-8").strip()
                if not head.startswith("ref:"):
                    return head
                ref = head.split(":", 1)[1].strip()
                for base in (git, _common_dir(git)):
                    f = base / ref
                    if f.is_file():
                        return f.read_text(encoding="utf-8").strip()
                    packed = base / "packed-refs"
                    if packed.is_file():
                        for line in packed.read_text(encoding="utf-8").splitlines():
                            if line.endswith(" " + ref):
                                return line.split(" ", 1)[0]
            except OSError:
                return None
            return None
    return None


def _common_dir(git: Path) -> Path:
    f = git / "commondir"
    return (git / f.read_text(encoding="utf-8").strip()).resolve() if f.is_file() else git


def provenance(inputs: dict[str, str | Path | None] | None = None) -> dict:
    """The command line, tbfast's version and commit, the main packages' versions, and for every
    named input that is a file its absolute path, size and checksum (the manifest's BLAKE2b) (a folder: the path only)."""
    import tbfast
    from tbfast.data.manifest import file_checksum

    versions = {"python": platform.python_version()}
    for mod in ("torch", "nvidia.dali", "numpy"):
        m = sys.modules.get(mod)
        if m is not None:
            versions[mod.split(".")[-1]] = getattr(m, "__version__", "?")
    files: dict[str, dict | None] = {}
    for name, p in (inputs or {}).items():
        if p in (None, "", "scratch"):
            files[name] = None
            continue
        path = Path(p).resolve()
        if path.is_file():
            files[name] = {"path": str(path), "bytes": path.stat().st_size, "blake2b": file_checksum(path)}
        else:
            files[name] = {"path": str(path)}
    command = COMMAND if COMMAND is not None else [Path(sys.argv[0]).name, *sys.argv[1:]]
    return {
        "command": list(command),
        "tbfast": tbfast.__version__,
        "git_commit": git_commit(),
        "versions": versions,
        "inputs": files,
    }
