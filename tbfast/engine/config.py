"""Configuration: one dataclass per concern, YAML presets, CLI overrides.

A resolved config is ``defaults <- preset common sections <- preset stages[<stage>] <- CLI``;
it is written as ``config.yaml`` in every run directory and stored in every checkpoint.
Presets live in ``tbfast/configs/<name>.yaml`` (or any path to a YAML file).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tbfast.errors import UserError

STAGES = ("invariant", "distinctive", "combined", "finetune", "supervised", "student")
SSL_STAGES = ("invariant", "distinctive", "combined")
# SSL loss weights (w_inv, w_ll, w_gl) per stage: METHOD.md §4
SSL_WEIGHTS = {"invariant": (1.0, 0.0, 0.0), "distinctive": (0.0, 1.0, 1.0), "combined": (1.0, 1.0, 1.0)}
CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
DEFAULT_PRESET = "ucf101_r3d18"


@dataclass
class ModelConfig:
    backbone: str = "r3d18"  # tiny | r3d18 | r50
    # the tiny backbone's first stage width w (stages w, 2w, 4w, 8w; feature size 8w); 0 = its
    # default, 16. Only the tiny backbone has it
    width: int = 0
    tclr: bool = True  # TCLR layer4 (keeps T'=4 for 16 frames), METHOD.md §1
    proj_hidden: int = 512
    proj_out: int = 128
    dropout: float = 0.5
    # BatchNorm statistics per clip group, as the reference's separate calls of the network take
    # them (METHOD.md §4): the 10 clip groups of an SSL step, the labeled / unlabeled clips of a
    # student step. false = one set of statistics over the whole step ("mixed")
    group_bn: bool = True
    # how grouped statistics are computed (same numbers): calls (one network call per group) |
    # pass (one call, BatchNorm split per group) | auto (the one measured faster: on the CPU calls
    # from 16 clips per group on, pass below; pass on CUDA)
    group_bn_exec: str = "auto"
    # several processes (torchrun): BatchNorm statistics over every rank (per clip group), so N
    # processes normalise as one: auto (the SSL stages) | on (every stage) | off (per rank)
    sync_bn: str = "auto"


@dataclass
class DataConfig:
    size: int = 112  # crop side fed to the model
    num_threads: int = 2  # DALI CPU threads per rank
    # video decoder: dali (inside the graph: FFmpeg on the CPU, NVDEC on a GPU) | pyav | torchcodec
    # (on the host, in the loader's reader threads; the graph starts from their frames). Same frames
    # and plans; pixel values differ by the decoders' colour conversion (docs/PIPELINES.md)
    decoder: str = "dali"
    # where clip views are cut, cropped and resized: auto (host with a host decoder on the CPU, else
    # dali) | dali (in the graph) | host (torch's uint8 kernel in the reader threads; crop edges
    # rounded to whole pixels, docs/PIPELINES.md)
    resize: str = "auto"
    batch_size: int = 16  # videos per rank per step (student: labeled and unlabeled each)
    eval_batch_size: int = 8  # videos per eval/similarity batch
    augment: bool = True
    # random-crop side factor range (METHOD.md §3: ssl [0.5, 1], train [0.4, 1]); empty = METHOD's
    ssl_crop_scale: tuple = ()
    train_crop_scale: tuple = ()
    # other augmentation fields to override (names of tbfast.data.plans.AugSpec, e.g. {gray_p: 0.5});
    # empty = METHOD.md §3's values
    ssl_aug: dict = field(default_factory=dict)
    train_aug: dict = field(default_factory=dict)


@dataclass
class OptimConfig:
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    warmup_epochs: float = 10.0  # linear 0.01 -> 1 x lr, per step
    warmup_start: float = 0.01
    plateau_patience: int = 5  # epochs without improvement of the epoch loss before halving
    plateau_factor: float = 0.5
    plateau_threshold: float = 1e-4  # relative improvement that counts
    min_lr: float = 1e-7
    clip_grad: float = 0.0  # max global grad norm; 0 = off
    fused: bool = True  # torch.optim.Adam(fused=True) where supported


@dataclass
class LossConfig:
    tau: float = 0.1
    w_inv: float = 1.0
    w_ll: float = 1.0
    w_gl: float = 1.0
    ssl_impl: str = "auto"  # auto | reference | fused | triton | compiled
    # reference: the public reference code's sums (L_I's local part x14, L_D1 summed over videos,
    # L_D2 x8, KL divided by the classes); mean: every term a batch mean (METHOD.md §4)
    reduction: str = "reference"
    distill: str = "l2"  # l2 | kl | js
    w_labeled: float = 50.0  # omega_l
    w_unlabeled: float = 100.0  # omega_u
    weighting: str = "timebalance"  # timebalance | invariant (s=1) | distinctive (s=0)
    # several processes: L_I's negatives are every video of the step on every rank (embeddings
    # gathered with their gradients), as one process with the whole batch; false = this rank's only
    cross_rank: bool = True


@dataclass
class TrainConfig:
    epochs: int = 100
    device: str = "auto"  # auto | cpu | cuda
    precision: str = "auto"  # auto (bf16 on GPU, fp32 on CPU) | fp32 | bf16 | fp16
    precision_check: bool = True  # compare reduced-precision weight gradients with fp32 at start-up
    channels_last: bool = True
    compile: bool = False
    seed: int = 0
    log_every: int = 10  # steps between metric lines (and non-finite checks on GPU)
    ckpt_every: int = 0  # steps between mid-epoch last.pt saves; 0 = only at epoch ends
    # epochs between epoch-end last.pt saves (the last epoch always saves): more than 1 spares the
    # checkpoint writes of very short epochs and risks that many epochs of work on a crash
    save_every: int = 1
    max_steps: int = 0  # stop after this many optimiser steps in total (0 = no limit); for smoke tests
    val_every: int = 1  # epochs between validations (when a validation set is given)
    progress: bool = True
    teacher_half: bool = True  # teachers infer in half precision where the device supports it


@dataclass
class EvalConfig:
    clips: int = 10
    crops: int = 1  # 1 = centre crop, 3 = three crops along the long side
    chunk: int = 40  # clips per forward pass (bounds memory)
    split: str = "test"


@dataclass
class RecipeConfig:
    """Per-stage epochs and the labeled fraction used by ``tbfast run``."""

    fraction: float = 0.05
    split_seed: int = 0
    # the students' initial weights: scratch (supplement Table 2), or the backbone of the
    # recipe's own invariant or distinctive self-supervised model, or a checkpoint path
    student_init: str = "scratch"
    # train models that read the same data in one pass (SSL pair, fine-tuning pair, baseline + students
    # of a seed; tbfast/engine/shared.py): the same results, each video decoded once per pass
    shared_passes: bool = True
    # the supervised-only baseline and the students are trained for this many seeds (train.seed,
    # +1, ...) and the report's verdict comes from their means and a seeds-and-videos bootstrap
    seeds: int = 3
    synthetic: dict = field(default_factory=dict)  # kwargs for make_synthetic_dataset
    prep: dict = field(default_factory=dict)  # kwargs for the prep step (short side, fps, ...)


@dataclass
class Config:
    stage: str = "invariant"
    preset: str = DEFAULT_PRESET
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    recipe: RecipeConfig = field(default_factory=RecipeConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


_SECTIONS = {f.name: f.type for f in dataclasses.fields(Config) if f.name not in ("stage", "preset")}


# the preset of ``tbfast run`` without --data: the built-in demo, sized to finish within 10 minutes
# on 2 CPU cores with 3 student seeds (``synthetic_tiny``: the same recipe with a wider model, longer)
DEMO_PRESET = "synthetic_quick"


def preset_path(name: str) -> Path:
    p = Path(name)
    if p.suffix in (".yaml", ".yml") and p.exists():
        return p
    p = CONFIG_DIR / f"{name}.yaml"
    if not p.exists():
        raise UserError(f"unknown preset {name!r}; choose one of {', '.join(list_presets())} or give a YAML file")
    return p


def list_presets() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def load_preset(name: str, _seen: tuple[str, ...] = ()) -> dict:
    """A preset's mapping. ``base: OTHER`` (a preset name or YAML file) starts from OTHER's mapping
    and overrides it key by key (nested mappings merged, other values replaced); ``description`` is
    the preset's own."""
    import yaml

    with open(preset_path(name)) as f:
        try:
            data = yaml.safe_load(f) or {}
        except yaml.YAMLError as exc:
            raise UserError(f"preset {name!r} is not valid YAML: {_yaml_problem(exc)}") from None
    if not isinstance(data, dict):
        raise UserError(f"preset {name!r} is not a YAML mapping")
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str) or base in _seen + (name,):
        raise UserError(f"preset {name!r}: base {base!r} is not another preset's name (or it names itself)")
    return _merged(load_preset(base, _seen + (name,)), data)


def _merged(base: dict, over: dict) -> dict:
    """``over`` on top of ``base`` (new dicts: YAML anchors share objects, so nothing is changed in place)."""
    out = dict(base)
    for k, v in over.items():
        out[k] = _merged(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _yaml_problem(exc) -> str:
    """One line from a YAML error: what went wrong and where (line, column)."""
    mark = getattr(exc, "problem_mark", None)
    what = getattr(exc, "problem", None) or str(exc).strip().splitlines()[0]
    return f"{what} at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else what


def _coerce(value: Any, current: Any, where: str) -> Any:
    if isinstance(value, str) and not isinstance(current, str):
        import yaml

        try:
            value = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise UserError(f"{where}: {value!r} is not a valid YAML value ({_yaml_problem(exc)})") from None
    if isinstance(current, bool):
        if not isinstance(value, bool):
            raise UserError(f"{where}: expected true/false, got {value!r}")
        return value
    if isinstance(current, int) and not isinstance(current, bool):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int):
            raise UserError(f"{where}: expected an integer, got {value!r}")
        return value
    if isinstance(current, float):
        if isinstance(value, str):  # YAML 1.1 reads "3e-4" as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise UserError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if isinstance(current, tuple):
        return tuple(value)
    return value


def apply_dict(cfg: Config, data: dict, where: str = "config") -> None:
    """Merge a nested dict ``{section: {key: value}}`` into ``cfg`` (unknown keys are errors)."""
    for section, values in data.items():
        if section in ("stage", "preset"):
            setattr(cfg, section, values)
            continue
        if section not in _SECTIONS:
            raise UserError(f"{where}: unknown section {section!r} (sections: {', '.join(_SECTIONS)})")
        if not isinstance(values, dict):
            raise UserError(f"{where}: section {section!r} must be a mapping")
        obj = getattr(cfg, section)
        names = {f.name for f in dataclasses.fields(obj)}
        for key, value in values.items():
            if key not in names:
                raise UserError(f"{where}: unknown key {section}.{key} (keys: {', '.join(sorted(names))})")
            setattr(obj, key, _coerce(value, getattr(obj, key), f"{where}: {section}.{key}"))


def parse_set(items: list[str] | None) -> dict:
    """``["optim.lr=3e-4", "train.epochs=5"]`` -> nested dict."""
    out: dict = {}
    for item in items or []:
        key, eq, value = item.partition("=")
        section, dot, name = key.partition(".")
        if not eq or not dot:
            raise UserError(f"--set {item!r}: use SECTION.KEY=VALUE, e.g. optim.lr=3e-4")
        out.setdefault(section.strip(), {})[name.strip()] = value
    return out


def resolve(stage: str, preset: str | None = None, overrides: dict | None = None) -> Config:
    """Resolved config of ``stage`` from a preset plus overrides (nested dict)."""
    if stage not in STAGES and stage not in ("similarity", "eval", "run"):
        raise UserError(f"unknown stage {stage!r}")
    preset = preset or DEFAULT_PRESET
    cfg = Config(stage=stage, preset=preset)
    data = load_preset(preset)
    common = {k: v for k, v in data.items() if k not in ("stages", "description")}
    apply_dict(cfg, common, f"preset {preset}")
    stage_over = (data.get("stages") or {}).get(stage) or {}
    apply_dict(cfg, stage_over, f"preset {preset} stages.{stage}")
    if stage in SSL_WEIGHTS:
        cfg.loss.w_inv, cfg.loss.w_ll, cfg.loss.w_gl = SSL_WEIGHTS[stage]
    if overrides:
        apply_dict(cfg, overrides, "override")
    validate(cfg)
    return cfg


def validate(cfg: Config) -> None:
    from tbfast.kernels import IMPLS
    from tbfast.losses import REDUCTIONS
    from dali_pipelines.host_decode import DECODERS, RESIZES
    from tbfast.models import BN_EXECS

    choices = {
        ("model", "backbone"): ("tiny", "r3d18", "r50"),
        ("train", "precision"): ("auto", "fp32", "bf16", "fp16"),
        ("train", "device"): ("auto", "cpu", "cuda"),
        ("loss", "distill"): ("l2", "kl", "js"),
        ("loss", "weighting"): ("timebalance", "invariant", "distinctive"),
        ("loss", "ssl_impl"): IMPLS,
        ("loss", "reduction"): REDUCTIONS,
        ("model", "group_bn_exec"): ("auto",) + BN_EXECS,
        ("model", "sync_bn"): ("auto", "on", "off"),
        ("data", "decoder"): DECODERS,
        ("data", "resize"): RESIZES,
    }
    for (section, key), allowed in choices.items():
        value = getattr(getattr(cfg, section), key)
        if value not in allowed:
            raise UserError(f"{section}.{key}={value!r}: choose one of {', '.join(allowed)}")
    if cfg.eval.crops not in (1, 3):
        raise UserError("eval.crops must be 1 or 3")
    if cfg.model.width and cfg.model.backbone != "tiny":
        raise UserError(
            f"model.width={cfg.model.width} is for the tiny backbone only; drop it for {cfg.model.backbone}"
        )
    inf = math.inf
    # (section, key): (low, high, low inclusive, high inclusive, what is allowed); all finite
    ranges = {
        ("model", "width"): (0, 4096, True, True, "0 (the default) or a width of 1 to 4096"),
        ("model", "proj_hidden"): (1, inf, True, True, "at least 1"),
        ("model", "proj_out"): (1, inf, True, True, "at least 1"),
        ("model", "dropout"): (0, 1, True, False, "in [0, 1)"),
        ("data", "size"): (16, 4096, True, True, "16 to 4096 pixels"),
        ("data", "num_threads"): (1, 1024, True, True, "at least 1"),
        ("data", "batch_size"): (1, inf, True, True, "at least 1"),
        ("data", "eval_batch_size"): (1, inf, True, True, "at least 1"),
        ("optim", "lr"): (0, inf, False, True, "a positive number"),
        ("optim", "weight_decay"): (0, inf, True, True, "0 or more"),
        ("optim", "warmup_epochs"): (0, inf, True, True, "0 or more"),
        ("optim", "warmup_start"): (0, 1, False, True, "in (0, 1]"),
        ("optim", "plateau_patience"): (0, inf, True, True, "0 or more"),
        ("optim", "plateau_factor"): (0, 1, False, True, "in (0, 1]"),
        ("optim", "plateau_threshold"): (0, inf, True, True, "0 or more"),
        ("optim", "min_lr"): (0, inf, True, True, "0 or more"),
        ("optim", "clip_grad"): (0, inf, True, True, "0 (off) or more"),
        ("loss", "tau"): (0, inf, False, True, "a positive number"),
        ("loss", "w_inv"): (0, inf, True, True, "0 or more"),
        ("loss", "w_ll"): (0, inf, True, True, "0 or more"),
        ("loss", "w_gl"): (0, inf, True, True, "0 or more"),
        ("loss", "w_labeled"): (0, inf, True, True, "0 or more"),
        ("loss", "w_unlabeled"): (0, inf, True, True, "0 or more"),
        ("train", "epochs"): (1, inf, True, True, "at least 1"),
        ("train", "log_every"): (1, inf, True, True, "at least 1"),
        ("train", "ckpt_every"): (0, inf, True, True, "0 (epoch ends only) or more"),
        ("train", "save_every"): (1, inf, True, True, "at least 1 (epochs)"),
        ("train", "max_steps"): (0, inf, True, True, "0 (no limit) or more"),
        ("train", "val_every"): (1, inf, True, True, "at least 1"),
        ("train", "seed"): (0, 2**63 - 1, True, True, "0 or more"),
        ("eval", "clips"): (1, 1000, True, True, "1 to 1000"),
        ("eval", "chunk"): (1, inf, True, True, "at least 1"),
        ("recipe", "fraction"): (0, 1, False, True, "in (0, 1]"),
        ("recipe", "split_seed"): (0, inf, True, True, "0 or more"),
        ("recipe", "seeds"): (1, inf, True, True, "1 or more"),
    }
    for (section, key), (lo, hi, lo_inc, hi_inc, allowed) in ranges.items():
        v = getattr(getattr(cfg, section), key)
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        ok = ok and (v >= lo if lo_inc else v > lo) and (v <= hi if hi_inc else v < hi)
        if not ok:
            raise UserError(f"{section}.{key}={v!r}: must be {allowed}")
    b = cfg.optim.betas
    if not (
        isinstance(b, (tuple, list))
        and len(b) == 2
        and all(isinstance(x, (int, float)) and not isinstance(x, bool) and 0 <= x < 1 for x in b)
    ):
        raise UserError(f"optim.betas={b!r}: must be two numbers in [0, 1), e.g. [0.9, 0.999]")
    for key in ("ssl_crop_scale", "train_crop_scale"):
        c = getattr(cfg.data, key)
        if c and not (
            isinstance(c, (tuple, list))
            and len(c) == 2
            and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in c)
            and 0 < c[0] <= c[1] <= 1
        ):
            raise UserError(f"data.{key}={c!r}: must be [low, high] with 0 < low <= high <= 1 (or empty)")


# ``group_bn_exec: auto`` on the CPU: separate calls from this many clips per group on, one pass below
# (benchmarks/RESULTS.md, "Self-supervised step: BatchNorm statistics"); on CUDA one pass
CPU_CALLS_FROM = 16


def bn_mode(cfg: Config, device_type: str) -> str:
    """The BatchNorm mode of the SSL and student networks: mixed | calls | pass (``engine.nets``).
    ``auto`` depends on the device and the clips per group (= ``data.batch_size``), never on timing,
    so a run computes the same numbers every time."""
    mc = cfg.model
    if not mc.group_bn:
        return "mixed"
    if mc.group_bn_exec == "auto":
        return "calls" if device_type == "cpu" and cfg.data.batch_size >= CPU_CALLS_FROM else "pass"
    return mc.group_bn_exec


def sync_bn(cfg: Config, world: int) -> bool:
    """Whether BatchNorm statistics are synchronised across ranks (``model.sync_bn``)."""
    mode = cfg.model.sync_bn
    if world <= 1 or mode == "off":
        return False
    return mode == "on" or cfg.stage in SSL_WEIGHTS


def save_config(cfg: Config, path: Path) -> None:
    import yaml

    from tbfast.engine.checkpoint import atomic_write_bytes

    text = yaml.safe_dump(plain(cfg.to_dict()), sort_keys=False)
    atomic_write_bytes(Path(path), text.encode())


def plain(obj: Any) -> Any:
    """Tuples as lists, recursively (YAML and checkpoints store plain lists)."""
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    return obj


def config_from_dict(data: dict) -> Config:
    cfg = Config()
    apply_dict(cfg, data, "checkpoint config")
    return cfg
