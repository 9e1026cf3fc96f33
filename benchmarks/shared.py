"""`tbfast bench shared`: one data pass for several models against one pass per model.

On the built-in demo's data and settings (preset ``synthetic_tiny``: tiny 3D-ResNet, 40 px, batch 8),
two groups of the recipe are trained for ``--steps`` steps per model, side by side in one run:

- the SSL pair (invariant + distinctive), and
- the student set (supervised-only baseline + the s=1, s=0 and TimeBalance students; stand-in
  teachers, so the figures are about speed only),

first one model after the other (each with its own loaders: what `tbfast run` did before shared
passes), then in one shared pass (tbfast/engine/shared.py), ``--repeats`` times in alternating order
(medians reported). Reported per group: wall seconds (building the models, their loaders and
teachers included), batches
and videos decoded, teacher forward passes, the speed-up, and the decode share measured by running
the pass's loaders alone. From that share it computes (it cannot measure without a GPU) the speed-up
the same pass would give if the models' compute were R times faster while decoding stayed as it is
(a GPU whose NVDEC and host, not its SMs, are the limit): (K*D + C/R) / (D + C_shared/R), with D the
decode time of the steps, C the separate runs' compute (wall minus K*D) and C_shared the pass's.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from tbfast.argtypes import output_file, positive_int
from tbfast_benchmarks.common import machine_info, print_table, write_json


def add_arguments(p: argparse.ArgumentParser, command: str = "bench shared") -> None:
    p.add_argument(
        "--data",
        default=None,
        metavar="PREPARED",
        help="prepared dataset [default: the built-in demo's synthetic data, generated in --work]",
    )
    p.add_argument("--work", default=None, metavar="DIR", help="folder for the runs [default: a temporary one]")
    p.add_argument("--steps", type=positive_int, default=16, help="training steps per model")
    p.add_argument(
        "--repeats",
        type=positive_int,
        default=3,
        help="measure each way this many times, alternating which goes first (a shared VM's timings "
        "vary by 10%%); the medians are reported",
    )
    p.add_argument(
        "--groups", nargs="+", choices=["ssl", "students"], default=["ssl", "students"], help="which groups to measure"
    )
    p.add_argument("--batch-size", type=positive_int, default=None, help="videos per step [default: the preset's]")
    p.add_argument("--size", type=positive_int, default=None, help="crop side in pixels [default: the preset's]")
    p.add_argument("--json", default=None, type=output_file, help="write the results here")


_DATA: dict = {}  # --batch-size / --size


def _cfg(stage: str, steps: int, **extra):
    from tbfast.engine.config import resolve

    ov = {
        "train": {"device": "cpu", "progress": False, "max_steps": steps, "log_every": 1000, "epochs": 1000},
        "data": dict(_DATA),
    }
    for section, values in extra.items():
        ov.setdefault(section, {}).update(values)
    return resolve(stage, "synthetic_tiny", ov)


def demo_data(work: Path) -> Path:
    """The built-in demo's prepared data (generated in WORK once) with its labeled split."""
    from tbfast.data.splits import write_label_split
    from tbfast.engine.config import resolve
    from tbfast.engine.recipe import prepare_synthetic

    base = resolve("run", "synthetic_tiny", {"train": {"progress": False}})
    prepared = prepare_synthetic(work, base, lambda s: print(s, flush=True))
    write_label_split(prepared, base.recipe.fraction, base.recipe.split_seed)
    return prepared


def _teachers(prepared: Path, lab: Path, work: Path) -> dict:
    """Stand-in fine-tuned teachers (one step of the baseline each) and a similarity file."""
    from tbfast.data.manifest import read_manifest
    from tbfast.engine import stages
    from tbfast.engine.distributed import Dist

    out = {}
    for k, kind in enumerate(("invariant", "distinctive")):
        cfg = _cfg("supervised", 1, train={"seed": 100 + k})
        stages.train_classifier(
            cfg,
            prepared,
            work / "teachers" / kind,
            dist=Dist(),
            labeled=lab,
            init="scratch",
            resume="overwrite",
            log=lambda s: None,
        )
        out[kind] = work / "teachers" / kind / "checkpoints" / "last.pt"
    recs = read_manifest(prepared)
    rows = ["index,path,raw,score"] + [
        f"{i},{r.path},0,{(i % 7) / 6}" for i, r in enumerate(recs) if r.split == "train"
    ]
    out["sim"] = work / "teachers" / "similarity.csv"
    out["sim"].write_text("\n".join(rows) + "\n")
    return out


def _builders(group: str, prepared: Path, steps: int, lab, unl, teachers: dict | None):
    from tbfast.engine import stages
    from tbfast.engine.distributed import Dist

    quiet = lambda s: None  # noqa: E731
    if group == "ssl":
        return {
            k: (
                lambda root, pool, t, k=k: stages.ssl_member(
                    _cfg(k, steps), prepared, root / k, dist=Dist(), resume="overwrite", log=quiet, pool=pool, name=k
                )
            )
            for k in ("invariant", "distinctive")
        }
    out = {
        "supervised": lambda root, pool, t: stages.classifier_member(
            _cfg("supervised", steps),
            prepared,
            root / "supervised",
            dist=Dist(),
            labeled=lab,
            init="scratch",
            resume="overwrite",
            log=quiet,
            pool=pool,
            name="supervised",
        )
    }
    for w in ("invariant", "distinctive", "timebalance"):
        out[f"student_{w}"] = lambda root, pool, t, w=w: stages.student_member(
            _cfg("student", steps, loss={"weighting": w}),
            prepared,
            root / f"student_{w}",
            dist=Dist(),
            labeled=lab,
            unlabeled=unl,
            teacher_inv=teachers["invariant"],
            teacher_dis=teachers["distinctive"],
            similarity=teachers["sim"],
            resume="overwrite",
            log=quiet,
            pool=pool,
            teachers=t,
            name=f"student_{w}",
        )
    return out


def _decode_only(pool, steps: int) -> float:
    """Seconds to produce ``steps`` batches of every loader of the pass, with no model."""
    t0 = time.perf_counter()
    for stream in pool.streams.values():
        stream.close()
        for i in range(steps):
            n = len(stream.loader.batches(0))
            stream.get(i // n, i % n)
        stream.close()
    return time.perf_counter() - t0


def _separate(builders: dict, work: Path) -> tuple[float, dict, int, int]:
    """One model after the other, each with its own loaders (and teachers)."""
    from tbfast.engine import stages
    from tbfast.engine.shared import LoaderPool

    seconds, decoded, forwards, per_model = 0.0, 0, 0, {}
    for name, build in builders.items():
        pool, t = LoaderPool(), {}
        t0 = time.perf_counter()
        stages.train_together([build(work / "separate", pool, t)], pool=pool, log=lambda s: None)
        per_model[name] = round(time.perf_counter() - t0, 2)
        seconds += per_model[name]
        decoded += pool.counts()["decoded"]
        forwards += sum(x.forwards for x in t.values())
    return seconds, per_model, decoded, forwards


def _shared(builders: dict, work: Path):
    from tbfast.engine import stages
    from tbfast.engine.shared import LoaderPool

    pool, t = LoaderPool(), {}
    t0 = time.perf_counter()
    members = [build(work / "shared", pool, t) for build in builders.values()]
    stages.train_together(members, pool=pool, log=lambda s: None)
    return time.perf_counter() - t0, pool, members, sum(x.forwards for x in t.values())


def measure(group: str, prepared: Path, work: Path, steps: int, lab, unl, teachers, repeats: int = 1) -> dict:
    from tbfast_benchmarks.common import median

    builders = _builders(group, prepared, steps, lab, unl, teachers)
    k = len(builders)
    seps, shs = [], []
    for r in range(repeats):  # alternate the order: a drift of the machine's speed hits both ways alike
        if r % 2:
            shs.append(_shared(builders, work))
            seps.append(_separate(builders, work))
        else:
            seps.append(_separate(builders, work))
            shs.append(_shared(builders, work))
    sep_seconds = median([x[0] for x in seps])
    shared_seconds = median([x[0] for x in shs])
    per_model, sep_decoded, sep_forwards = seps[-1][1], seps[-1][2], seps[-1][3]
    _, pool, members, forwards = shs[-1]
    counts = pool.counts()
    decode = median([_decode_only(pool, steps) for _ in range(repeats)])  # every stream of the pass
    # the baseline reads only the labeled stream: what each model decodes alone, from the counts
    batch = members[0].trainer.cfg.data.batch_size
    c_sep = max(sep_seconds - decode * (sep_decoded / max(counts["decoded"], 1)), 0.0)
    c_sh = max(shared_seconds - decode, 0.0)
    d_sep = decode * sep_decoded / max(counts["decoded"], 1)

    def gpu(r: float) -> float:
        return (d_sep + c_sep / r) / (decode + c_sh / r)

    return {
        "models": list(builders),
        "steps_per_model": steps,
        "separate_seconds": round(sep_seconds, 2),
        "separate_per_model_seconds": per_model,
        "shared_seconds": round(shared_seconds, 2),
        "speedup": round(sep_seconds / shared_seconds, 3),
        "repeats": repeats,
        "separate_seconds_samples": [round(x[0], 2) for x in seps],
        "shared_seconds_samples": [round(x[0], 2) for x in shs],
        "batches_decoded": {"separate": sep_decoded, "shared": counts["decoded"]},
        "videos_decoded": {"separate": sep_decoded * batch, "shared": counts["decoded"] * batch},
        "teacher_forwards": {"separate": sep_forwards, "shared": forwards} if group == "students" else None,
        "decode_seconds_shared_pass": round(decode, 2),
        "decode_share_separate": round(d_sep / sep_seconds, 3),
        "decode_share_shared": round(decode / shared_seconds, 3),
        "computed_speedup_if_compute_faster": {
            "1x (this CPU)": round(gpu(1.0), 3),
            "10x": round(gpu(10.0), 3),
            "30x": round(gpu(30.0), 3),
            "decode-bound": round(d_sep / decode, 3),
        },
        "k": k,
    }


def main(args: argparse.Namespace) -> int:
    import torch

    from tbfast.data.splits import split_names
    from tbfast.errors import UserError

    _DATA.clear()
    _DATA.update({k: v for k, v in (("batch_size", args.batch_size), ("size", args.size)) if v})
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        work.mkdir(parents=True, exist_ok=True)
        prepared = Path(args.data) if args.data else demo_data(work / "demo")
        if not (prepared / "manifest.jsonl").is_file():
            raise UserError(f"{prepared} is not a prepared dataset (no manifest.jsonl); run `tbfast data prep`")
        lab_name, unl_name = split_names(0.5, 0)
        lab, unl = prepared / "splits" / lab_name, prepared / "splits" / unl_name
        if "students" in args.groups and not lab.is_file():
            from tbfast.data.splits import write_label_split

            write_label_split(prepared, 0.5, 0)
        teachers = _teachers(prepared, lab, work) if "students" in args.groups else None
        results = {}
        for group in args.groups:
            print(f"== {group}: {args.steps} steps per model, separately then in one pass", flush=True)
            results[group] = measure(group, prepared, work / group, args.steps, lab, unl, teachers, args.repeats)
    rows = []
    for group, r in results.items():
        rows.append(
            [
                f"{group} ({r['k']} models)",
                r["separate_seconds"],
                r["shared_seconds"],
                f"{r['speedup']:.2f}x",
                f"{r['videos_decoded']['separate']} -> {r['videos_decoded']['shared']}",
                (
                    f"{r['teacher_forwards']['separate']} -> {r['teacher_forwards']['shared']}"
                    if r["teacher_forwards"]
                    else "-"
                ),
                f"{100 * r['decode_share_separate']:.0f}%",
                f"{r['computed_speedup_if_compute_faster']['10x']:.2f}x",
                f"{r['computed_speedup_if_compute_faster']['decode-bound']:.2f}x",
            ]
        )
    print_table(
        f"one data pass vs one pass per model, synthetic_tiny, {args.steps} steps per model, "
        f"{torch.get_num_threads()} torch threads, median of {args.repeats}",
        [
            "group",
            "separate s",
            "shared s",
            "speed-up",
            "videos decoded",
            "teacher forwards",
            "decode share (separate)",
            "if compute 10x faster*",
            "decode-bound*",
        ],
        rows,
    )
    print("* computed from the measured decode time, not measured")
    if args.json:
        write_json(
            args.json,
            {
                "machine": machine_info(),
                "args": {k: v for k, v in vars(args).items() if not k.startswith("_")},
                "results": results,
            },
        )
    print(json.dumps({g: {"speedup": r["speedup"], "videos_decoded": r["videos_decoded"]} for g, r in results.items()}))
    return 0
