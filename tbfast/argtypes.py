"""argparse types that refuse nonsense counts at parse time (exit 2 with the value named)."""

from __future__ import annotations

import argparse


def _int_at_least(low: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{value} is below the minimum {low}")
        return value

    parse.__name__ = f"integer >= {low}"
    return parse


positive_int = _int_at_least(1)
nonneg_int = _int_at_least(0)


def output_file(text: str) -> str:
    """A file path to write at the end of a command: refused at parse time if a folder stands there
    or a file stands where one of its folders should be (found before the work, not after it)."""
    import os
    from pathlib import Path

    p = Path(text)
    if p.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder; give a file path (e.g. {p / 'results'}.json)")
    for parent in p.parents:
        if os.path.lexists(parent):
            if not parent.is_dir():
                raise argparse.ArgumentTypeError(f"{parent} is a file, not a folder: cannot write {text}")
            break
    return text
