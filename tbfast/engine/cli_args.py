"""Command-line options shared by the training, similarity, eval and run commands.

Options that override the preset default to ``argparse.SUPPRESS`` so that only what the user
typed overrides the YAML; their help shows the default preset's value for the stage.
"""

from __future__ import annotations

import argparse
import functools

from tbfast.engine.config import DEFAULT_PRESET, list_presets, parse_set, resolve

# flag -> (section.key, type, help)
OVERRIDES: dict[str, tuple[str, type, str]] = {
    "--backbone": ("model.backbone", str, "backbone: tiny | r3d18 | r50"),
    "--size": ("data.size", int, "crop side in pixels"),
    "--batch-size": ("data.batch_size", int, "videos per step per process (student: labeled and unlabeled each)"),
    "--eval-batch-size": ("data.eval_batch_size", int, "videos per evaluation / similarity batch"),
    "--threads": (
        "data.num_threads",
        int,
        "loader threads per process (DALI's CPU threads; the host path's reader threads)",
    ),
    "--decoder": (
        "data.decoder",
        str,
        "video decoder: dali (in the graph) | pyav | torchcodec (on the host: "
        "faster on the CPU; see docs/PIPELINES.md)",
    ),
    "--resize": (
        "data.resize",
        str,
        "where clip views are cropped, resized and coloured: auto (host where it can) | dali (the DALI graph) | "
        "host (a host decoder on the CPU: the reader threads, no DALI)",
    ),
    "--epochs": ("train.epochs", int, "epochs"),
    "--lr": ("optim.lr", float, "base learning rate (Adam)"),
    "--warmup-epochs": ("optim.warmup_epochs", float, "linear warmup epochs (0.01 -> 1 x lr)"),
    "--patience": ("optim.plateau_patience", int, "epochs without loss improvement before the lr halves"),
    "--clip-grad": ("optim.clip_grad", float, "max global gradient norm, 0 = off"),
    "--precision": ("train.precision", str, "auto (bf16 on GPU, fp32 on CPU) | fp32 | bf16 | fp16"),
    "--device": ("train.device", str, "auto | cpu | cuda"),
    "--seed": ("train.seed", int, "seed of weights, order and augmentation"),
    "--log-every": ("train.log_every", int, "steps between metric lines"),
    "--ckpt-every": ("train.ckpt_every", int, "steps between mid-epoch checkpoints (0 = each epoch only)"),
    "--save-every": ("train.save_every", int, "epochs between epoch-end checkpoints (the last epoch always saves)"),
    "--max-steps": ("train.max_steps", int, "stop after this many steps (0 = no limit; for smoke tests)"),
}
SSL_OVERRIDES = {
    "--tau": ("loss.tau", float, "contrastive temperature"),
    "--ssl-impl": ("loss.ssl_impl", str, "loss implementation: auto | reference | fused | triton | compiled"),
    "--reduction": ("loss.reduction", str, "loss reductions: reference (the public code's sums) | mean"),
    "--bn-exec": (
        "model.group_bn_exec",
        str,
        "per-clip-group BatchNorm executed as: auto | calls | pass (--set model.group_bn=false: one set of statistics)",
    ),
}
STUDENT_OVERRIDES = {
    "--distill": ("loss.distill", str, "distillation distance: l2 | kl | js"),
    "--reduction": ("loss.reduction", str, "loss reductions: reference (KL over batch x classes) | mean"),
    "--bn-exec": (
        "model.group_bn_exec",
        str,
        "labeled / unlabeled BatchNorm groups executed as: auto | calls | "
        "pass (--set model.group_bn=false: one set of statistics)",
    ),
    "--weighting": (
        "loss.weighting",
        str,
        "teacher mix: timebalance (s from --similarity) | invariant (s=1) | distinctive (s=0)",
    ),
    "--w-labeled": ("loss.w_labeled", float, "weight of the labeled distillation term (omega_l)"),
    "--w-unlabeled": ("loss.w_unlabeled", float, "weight of the unlabeled distillation term (omega_u)"),
}
EVAL_OVERRIDES = {
    "--clips": ("eval.clips", int, "clips per video"),
    "--crops": ("eval.crops", int, "spatial crops per clip (1 = centre)"),
    "--chunk": ("eval.chunk", int, "clips per forward pass (bounds memory)"),
}


@functools.lru_cache(maxsize=None)
def _preset_cfg(stage: str, preset: str = DEFAULT_PRESET):
    try:
        return resolve(stage, preset)
    except Exception:  # a broken preset must not break --help
        return None


def _preset_value(stage: str, key: str, preset: str = DEFAULT_PRESET):
    cfg = _preset_cfg(stage, preset)
    if cfg is None:
        return "?"
    section, name = key.split(".")
    return getattr(getattr(cfg, section), name)


def add_overrides(parser: argparse.ArgumentParser, stage: str, table: dict, preset: str = DEFAULT_PRESET) -> None:
    """One flag per entry of ``table``; its help shows the value of ``preset`` (the default one)."""
    for flag, (key, typ, help_) in table.items():
        parser.add_argument(
            flag,
            dest="ov:" + key,
            type=typ,
            default=argparse.SUPPRESS,
            metavar=key.split(".")[1].upper(),
            help=f"{help_} [default: {preset}: {_preset_value(stage, key, preset)}]",
        )


def add_common(parser: argparse.ArgumentParser, stage: str, *, training: bool = True) -> None:
    g = parser.add_argument_group("configuration")
    g.add_argument(
        "--preset",
        default=None,
        help=f"YAML preset ({', '.join(list_presets())}) or a YAML file [default: {DEFAULT_PRESET}]",
    )
    g.add_argument(
        "--set",
        dest="set_items",
        action="append",
        metavar="SECTION.KEY=VALUE",
        default=[],
        help="override any config value, e.g. --set optim.lr=3e-4 (repeatable)",
    )
    add_overrides(
        g,
        stage,
        OVERRIDES
        if training
        else {
            k: OVERRIDES[k] for k in ("--size", "--eval-batch-size", "--threads", "--decoder", "--resize", "--device")
        },
    )
    if training:
        g.add_argument(
            "--compile",
            dest="ov:train.compile",
            action="store_const",
            const=True,
            default=argparse.SUPPRESS,
            help="torch.compile the model",
        )
        g.add_argument(
            "--no-channels-last",
            dest="ov:train.channels_last",
            action="store_const",
            const=False,
            default=argparse.SUPPRESS,
            help="keep contiguous (NCDHW) memory instead of channels-last",
        )
    add_no_progress(g)


def add_no_progress(g) -> None:
    g.add_argument(
        "--no-progress",
        dest="ov:train.progress",
        action="store_const",
        const=False,
        default=argparse.SUPPRESS,
        help="no progress bars (summary lines only)",
    )


def overrides(args: argparse.Namespace) -> dict:
    out = parse_set(getattr(args, "set_items", []))
    for name, value in vars(args).items():
        if name.startswith("ov:"):
            section, key = name[3:].split(".")
            out.setdefault(section, {})[key] = value
    return out


def config_for(stage: str, args: argparse.Namespace):
    return resolve(stage, getattr(args, "preset", None), overrides(args))
