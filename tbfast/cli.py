"""`tbfast` command line.

Commands are listed in one table and their modules are imported only when chosen, so
`tbfast --help` and the data tools start without importing torch or DALI. Each command
module (``tbfast/commands/*.py`` or ``benchmarks/*.py``) provides

    add_arguments(parser: argparse.ArgumentParser, command: str) -> None
    main(args: argparse.Namespace) -> int      # process exit status
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

# "group name": (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "data synth": ("tbfast.commands.data_synth", "generate the built-in synthetic dataset (UCF101 layout)"),
    "data prep": ("tbfast.commands.data_prep", "transcode a dataset to VP9 and write its manifest"),
    "data splits": ("tbfast.commands.data_splits", "write a class-balanced labeled/unlabeled split"),
    "data show": ("tbfast.commands.data_show", "contact sheet of the clips a pipeline produces"),
    "train invariant": ("tbfast.commands.train", "self-supervised pretraining with L_I"),
    "train distinctive": ("tbfast.commands.train", "self-supervised pretraining with L_D1 + L_D2"),
    "train combined": ("tbfast.commands.train", "self-supervised pretraining with L_I + L_D1 + L_D2"),
    "train finetune": ("tbfast.commands.train", "fine-tune a self-supervised teacher on the labeled subset"),
    "train supervised": ("tbfast.commands.train", "supervised-only baseline on the labeled subset"),
    "train student": ("tbfast.commands.train", "TimeBalance student: CE + distillation from both teachers"),
    "train teachers": ("tbfast.commands.train_pass", "invariant + distinctive SSL models in one data pass"),
    "train students": (
        "tbfast.commands.train_pass",
        "supervised-only baseline + s=1, s=0 and TimeBalance students in one data pass (optionally several seeds)",
    ),
    "similarity": ("tbfast.commands.similarity", "per-video temporal-similarity scores from the SSL teachers"),
    "eval": ("tbfast.commands.evaluate", "clip- and video-level top-1/top-5 of a checkpoint"),
    "predict": ("tbfast.commands.predict", "top-k classes of video files (any format PyAV reads) with a classifier"),
    "run": ("tbfast.commands.run", "the whole recipe end to end (default: built-in synthetic data on the CPU)"),
    "bench loader": ("tbfast_benchmarks.loader", "DALI loader vs reference-style and per-clip loaders"),
    "bench losses": ("tbfast_benchmarks.losses", "reference vs fused self-supervised and distillation losses"),
    "bench step": ("tbfast_benchmarks.step", "training-step throughput per precision/layout, with gradient checks"),
    "bench objectives": ("tbfast_benchmarks.objectives", "the recipe under each loss reduction x BatchNorm mode"),
    "bench dist": ("tbfast_benchmarks.dist", "cost of cross-rank negatives and synchronised BatchNorm per step"),
    "bench shared": ("tbfast_benchmarks.shared", "one data pass for several models vs one pass per model"),
    "bench machines": ("tbfast_benchmarks.machines", "what is bit-identical across CPU kinds and thread counts"),
    "bench teachers": (
        "tbfast_benchmarks.teachers",
        "the teachers' s-weighted mixture against each teacher (calibration)",
    ),
    "bench all": ("tbfast_benchmarks.all", "every benchmark plus the recipe; writes RESULTS.md"),
}


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows an option's default, except where there is none to show (required options, None, flags)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.required or action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def _groups() -> dict[str, dict[str, str]]:
    groups: dict[str, dict[str, str]] = {}
    for name, (_, help_) in COMMANDS.items():
        head, _, tail = name.partition(" ")
        groups.setdefault(head, {})[tail] = help_
    return groups


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    """Build the parser; only the module of the command named in ``argv`` is imported."""
    from tbfast import __version__

    parser = argparse.ArgumentParser(
        prog="tbfast",
        description="Semi-supervised video action recognition with TimeBalance, built for throughput.",
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=f"tbfast {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    words = [a for a in argv if not a.startswith("-")]
    for head, tails in _groups().items():
        if "" in tails:  # a single command
            p = sub.add_parser(head, help=tails[""], description=tails[""], formatter_class=_Formatter)
            if words[:1] == [head]:
                _attach(p, head)
            continue
        gp = sub.add_parser(head, help=f"{head} commands: " + ", ".join(tails), formatter_class=_Formatter)
        gsub = gp.add_subparsers(dest="subcommand", metavar="SUBCOMMAND")
        gsub.required = True
        for tail, help_ in tails.items():
            p = gsub.add_parser(tail, help=help_, description=help_, formatter_class=_Formatter)
            if words[:2] == [head, tail]:
                _attach(p, f"{head} {tail}")
    return parser


def _attach(parser: argparse.ArgumentParser, command: str) -> None:
    module = importlib.import_module(COMMANDS[command][0])
    module.add_arguments(parser, command)
    parser.set_defaults(_module=module, _command=command)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    from tbfast import provenance
    from tbfast.errors import UserError

    provenance.COMMAND = ["tbfast", *argv]  # what provenance.json records (also when called in-process)

    try:
        return int(args._module.main(args) or 0)
    except UserError as exc:
        print(f"tbfast: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except OSError as exc:  # permissions, a full disk, a file where a folder should be: one line
        print(f"tbfast: error: {_os_error(exc)}", file=sys.stderr)
        return 2


def _os_error(exc: OSError) -> str:
    import errno

    where = " -> ".join(str(f) for f in (exc.filename, exc.filename2) if f is not None)
    what = exc.strerror or str(exc)
    hint = {
        errno.ENOSPC: "free some space (or choose another --out) and run the same command again: completed "
        "work is kept and resumed",
        errno.EACCES: "check the permissions of that path",
        errno.EPERM: "check the permissions of that path",
        errno.EROFS: "choose a writable folder",
        errno.ENOTDIR: "a file stands where a folder is needed",
        errno.EISDIR: "a folder stands where a file is needed",
        errno.EEXIST: "a file stands where a folder is needed",
        errno.ENOENT: "check that the path exists",
    }.get(exc.errno, "")
    return f"{what}" + (f": {where}" if where else "") + (f" ({hint})" if hint else "")


if __name__ == "__main__":
    sys.exit(main())
