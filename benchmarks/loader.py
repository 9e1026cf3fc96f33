"""`tbfast bench loader`: the DALI clip pipeline against a reference-style and a per-clip PyAV loader
and the decoders a PyTorch user would pick today, torchcodec and decord (benchmarks/peers.py).

All of them follow the same plans (frames and augmentation parameters), use the same number of
cores (DALI threads = DataLoader workers) and read the same files. Reported per loader: videos/s,
clips/s (clip views: ssl 10 per video, train 1, eval 10) and frames/s (planned source frames
delivered per second: the same numerator for all loaders; the reference-style loader decodes the
whole video to deliver them). The DALI decode-only rate on the same frames is the ceiling.
"""

from __future__ import annotations

import argparse
import os
import time

from tbfast.argtypes import output_file, positive_int


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    parser.add_argument("prepared", metavar="PREPARED", help="prepared dataset folder (tbfast data prep)")
    parser.add_argument("--mode", choices=["ssl", "train", "eval"], default="ssl", help="pipeline to measure")
    parser.add_argument(
        "--device",
        choices=["cpu", "cuda", "gpu"],
        default="cpu",
        help="DALI backend: cpu, or cuda (= gpu: NVDEC and GPU operators), as in `tbfast train`",
    )
    parser.add_argument("--json", default=None, metavar="FILE", type=output_file, help="write the results as JSON")
    parser.add_argument(
        "--videos",
        type=positive_int,
        default=64,
        help="videos timed per loader (from creating its iterator; the DALI pipeline is built before)",
    )
    parser.add_argument("--batch-size", type=positive_int, default=8, help="videos per batch")
    parser.add_argument("--size", type=positive_int, default=112, help="output side in pixels")
    parser.add_argument(
        "--workers",
        type=positive_int,
        default=min(os.cpu_count() or 1, 2),
        help="DALI threads = DataLoader workers of the baselines",
    )
    parser.add_argument(
        "--loaders",
        default="dali,host-torchcodec,host-pyav,decode,perclip,reference,torchcodec,decord",
        help="comma-separated. tbfast: dali (DALI decodes, crops and colours: the GPU path, run on the "
        "CPU), host-torchcodec / host-pyav (the CPU host path: that decoder, then crops, resize and "
        "colour on the host, no DALI) with the suffixes -crop (crop + flip only), -uint8 (crop + flip, "
        "uint8 out), -decode (decode only), graph-torchcodec / graph-pyav (that decoder feeding the DALI "
        "graph), decode (DALI decode only); tbfast's own baselines perclip, reference; and the peers "
        "torchcodec / decord (full plan, DALI's colour maths) with the suffixes -tv (torchvision colour "
        "ops), -crop, -uint8, -decode. A peer or decoder that is not installed is skipped with a note",
    )
    parser.add_argument("--no-augment", action="store_true", help="centre crops only, in all loaders")
    parser.add_argument("--seed", type=int, default=0, help="seed of the plans")


# the work each loader does: "full" (the whole plan, float out: what training consumes), "crop"
# (crop + flip (+ erase), float out, no colour), "uint8" (crop + flip, uint8 out), "decode"
WORK_LABELS = {
    "full": "full plan (float out)",
    "crop": "crop + flip (float out)",
    "uint8": "crop + flip, uint8 out",
    "decode": "decode only",
}
HOST_SUFFIXES = {"": "full", "-crop": "crop", "-uint8": "uint8", "-decode": "decode"}
ALIASES = {  # the names of earlier versions
    "dali-torchcodec": "host-torchcodec",
    "dali-pyav": "host-pyav",
    "dali-torchcodec-graphresize": "graph-torchcodec",
    "dali-pyav-graphresize": "graph-pyav",
}


def ours() -> dict[str, tuple[str, str, str]]:
    """tbfast's loaders: name -> (decoder, resize, work)."""
    from dali_pipelines.host_decode import HOST_DECODERS

    out = {"dali": ("dali", "dali", "full")}
    for d in HOST_DECODERS:
        out.update({f"host-{d}{suffix}": (d, "host", w) for suffix, w in HOST_SUFFIXES.items()})
        out[f"graph-{d}"] = (d, "dali", "full")
    return out


def work_of(name: str) -> str:
    """The work a loader row does (see WORK_LABELS)."""
    from tbfast_benchmarks.peers import VARIANTS as PEER_VARIANTS

    if name in ("dali", "perclip", "reference") or name.startswith("graph-"):
        return "full"
    if name == "decode":
        return "decode"
    if name in PEER_VARIANTS:
        colour, out = PEER_VARIANTS[name][1:]
        if colour is None:
            return "decode"
        return "uint8" if out == "uint8" else "full" if colour in ("matrix", "tv") else "crop"
    return ours()[name][2]


def compare(results: dict) -> tuple[dict, dict | None]:
    """Per work: tbfast's best row against the best peer's on the same work (videos/s, and CPU time
    per video, each a ratio > 1 when tbfast is ahead); and the floor: tbfast's best full-plan CPU
    time per video against the fastest decode-only row's."""
    from tbfast_benchmarks.peers import VARIANTS as PEER_VARIANTS

    mine = ours()
    by_work = {}
    for work in WORK_LABELS:
        t = [k for k in results if k in mine and work_of(k) == work]
        p = [k for k in results if k in PEER_VARIANTS and work_of(k) == work]
        if not t or not p:
            continue
        bt = max(t, key=lambda k: results[k]["videos_per_s"])
        bp = max(p, key=lambda k: results[k]["videos_per_s"])
        cpu_t = min(results[k]["cpu_ms_per_video"] for k in t)
        cpu_p = min(results[k]["cpu_ms_per_video"] for k in p)
        by_work[work] = {
            "tbfast": bt,
            "peer": bp,
            "videos_per_s": [results[bt]["videos_per_s"], results[bp]["videos_per_s"]],
            "videos_per_s_ratio": round(results[bt]["videos_per_s"] / results[bp]["videos_per_s"], 2),
            "cpu_ms_per_video": [cpu_t, cpu_p],
            "cpu_ratio": round(cpu_p / cpu_t, 2),
        }
    full = [k for k in results if k in mine and work_of(k) == "full"]
    decode = [k for k in results if work_of(k) == "decode"]
    floor = None
    if full and decode:
        f = min(full, key=lambda k: results[k]["cpu_ms_per_video"])
        d = min(decode, key=lambda k: results[k]["cpu_ms_per_video"])
        floor = {
            "full": f,
            "decode": d,
            "ratio": round(results[f]["cpu_ms_per_video"] / results[d]["cpu_ms_per_video"], 2),
        }
    return by_work, floor


def _clips_per_video(mode: str) -> int:
    return {"ssl": 10, "train": 1, "eval": 10}[mode]


def _time_iter(make_iter, max_videos: int) -> tuple[int, float, float]:
    """Videos, wall seconds and CPU seconds from creating the iterator to the batch that reaches
    ``max_videos``: DataLoader workers start inside the window and cannot fill their prefetch queues
    ahead of it (DALI pipelines are built before). CPU = this process (DALI's threads included) +
    what DataLoader workers report for the batches consumed."""
    videos, worker_cpu = 0, 0.0
    t0, c0 = time.perf_counter(), time.process_time()
    for batch in make_iter():
        videos += len(batch["index"])
        worker_cpu += float(batch.get("cpu_s", 0.0))
        if videos >= max_videos:
            break
    return videos, time.perf_counter() - t0, time.process_time() - c0 + worker_cpu


def _warm_up(loader, batches: int) -> None:
    """Run ``batches`` batches untimed, then drop the iterator and every batch: a batch still
    referenced (say by a loop variable) keeps its output buffers out of the host path's pool, and the
    timed window would then allocate (page-fault) a new set, ~2 ms per ssl video on a 2-core VM."""
    it = iter(loader)
    for _ in range(batches):
        if next(it, None) is None:
            break
    it.close()


def machine() -> dict:
    """The shared machine description plus the load average before the measurement starts."""
    from tbfast_benchmarks.common import machine_info

    return {**machine_info(), "loadavg": round(os.getloadavg()[0], 2)}


def run(args: argparse.Namespace) -> dict:
    import torch

    from dali_pipelines import build_loader
    from tbfast.data.manifest import read_manifest
    from tbfast.data.plans import default_spec
    from tbfast.errors import UserError

    info = machine()  # load average before we add ours
    records = read_manifest(args.prepared)
    indices = list(range(len(records)))  # every video of the manifest, train and test
    spec = default_spec(args.mode)
    need = args.videos
    if len(indices) < need:
        indices = (indices * (need // len(indices) + 1))[:need]  # repeat files to reach the count
    indices = indices[:need]
    if len(indices) < args.batch_size:
        raise UserError(f"--videos {args.videos} is less than --batch-size {args.batch_size}")
    augment = not args.no_augment
    wanted = [ALIASES.get(s.strip(), s.strip()) for s in args.loaders.split(",") if s.strip()]
    from tbfast_benchmarks.peers import VARIANTS as PEER_VARIANTS
    from tbfast_benchmarks.peers import available as peer_available
    from tbfast_benchmarks.peers import make_peer_loader

    from dali_pipelines.host_decode import available as decoder_available

    mine = ours()
    bad = [w for w in wanted if w not in (*mine, "decode", "perclip", "reference", *PEER_VARIANTS)]
    if bad:
        raise UserError(
            f"unknown loader(s) {', '.join(bad)}; choose from {', '.join(mine)}, decode, perclip, "
            "reference, " + ", ".join(PEER_VARIANTS)
        )
    results: dict = {}
    skipped: dict = {}

    def dali_loader(decoder: str = "dali", resize: str = "auto", work: str = "full"):
        return build_loader(
            args.prepared,
            args.mode,
            indices=indices,
            batch_size=args.batch_size,
            size=args.size,
            device="gpu" if args.device == "cuda" else args.device,
            num_threads=args.workers,
            seed=args.seed,
            augment=augment,
            records=records,
            shuffle=False,
            drop_last=True,
            decoder=decoder,
            resize=resize,
            work=work,
        )

    frames_per_video = {}
    probe = dali_loader()
    for i in set(indices):
        frames_per_video[i] = len(probe.plan(i).decode)
    mean_frames = sum(frames_per_video[i] for i in indices) / len(indices)

    for name in wanted:
        if name in mine:
            decoder, resize, work = mine[name]
            why = decoder_available(decoder)
            if why:
                print(f"  {name:<10} skipped: {why}", flush=True)
                skipped[name] = why
                continue
            loader = dali_loader(decoder, resize, work)
            # outside the timed window: build the pipeline and run it once (first-run allocations),
            # or on the host path fill its pool of output buffers (steady state: no page faults)
            from dali_pipelines.loader import POOL_SETS

            _warm_up(loader, POOL_SETS + 1 if resize == "host" else 1)
            host0, hv0 = dict(loader.host_seconds), loader.host_videos
            n, sec, cpu = _time_iter(lambda loader=loader: iter(loader), args.videos)
            hv = loader.host_videos - hv0  # videos the loader prepared (a batch or two ahead of those used)
            host = {k: round(1000 * (v - host0[k]) / max(hv, 1), 3) for k, v in loader.host_seconds.items()}
        elif name == "decode":
            from dali_pipelines.bench import decode_only_rate

            r = decode_only_rate(dali_loader(), max_videos=args.videos, warmup_batches=0)
            n, sec, cpu = r["videos"], r["seconds"], r["cpu_seconds"]
        elif name in PEER_VARIANTS:
            why = peer_available(PEER_VARIANTS[name][0])
            if why:
                print(f"  {name:<10} skipped: {why}", flush=True)
                skipped[name] = why
                continue
            torch.set_num_threads(1)
            loader = make_peer_loader(
                name,
                args.prepared,
                records,
                indices,
                spec,
                size=args.size,
                batch_size=args.batch_size,
                workers=args.workers,
                seed=args.seed,
                augment=augment,
            )
            try:
                n, sec, cpu = _time_iter(lambda loader=loader: iter(loader), args.videos)
            except Exception as exc:  # noqa: BLE001 - a peer that fails on these files is reported, not fatal
                why = (
                    f"{PEER_VARIANTS[name][0]} failed on these videos: {type(exc).__name__}: "
                    + str(exc).strip().splitlines()[-1][:200]
                )
                print(f"  {name:<10} skipped: {why}", flush=True)
                skipped[name] = why
                continue
        elif name in ("perclip", "reference"):
            from tbfast_benchmarks.baselines import make_loader

            torch.set_num_threads(1)
            loader = make_loader(
                name,
                args.prepared,
                records,
                indices,
                spec,
                size=args.size,
                batch_size=args.batch_size,
                workers=args.workers,
                seed=args.seed,
                augment=augment,
            )
            n, sec, cpu = _time_iter(lambda loader=loader: iter(loader), args.videos)
        else:
            raise UserError(
                f"unknown loader {name!r}; choose from dali, decode, perclip, reference, " + ", ".join(PEER_VARIANTS)
            )
        vps = n / sec if sec > 0 else float("nan")
        cpu_ms = 1000 * cpu / n if n else float("nan")
        results[name] = {
            "videos": n,
            "seconds": round(sec, 3),
            "videos_per_s": round(vps, 2),
            "cpu_ms_per_video": round(cpu_ms, 1),
            "videos_per_s_per_core": round(1000 / cpu_ms, 2) if cpu_ms > 0 else None,
            "clips_per_s": round(vps * (_clips_per_video(args.mode) if work_of(name) != "decode" else 0), 1),
            "frames_per_s": round(vps * mean_frames, 1),
        }
        print(f"  {name:<10} {vps:8.2f} videos/s  {cpu_ms:7.1f} CPU ms/video  ({n} videos in {sec:.1f} s)", flush=True)
        if name in mine:
            # Python's work per video outside DALI: reading (+ first-read checksum), planning,
            # feeding DALI (host path: submitting the tasks), handing the outputs to torch ("total":
            # the bookkeeping), and apart from it the pixel work (DALI path: clamp, erase boxes,
            # dropped channels at the hand-over; host path: crop, resize, colour, clamp, erase) and
            # a host decoder's decoding
            apart = ("pixels", "decode")
            book = round(sum(v for k, v in host.items() if k not in apart), 3)
            results[name]["host_ms_per_video"] = {**host, "total": book}
            print(
                "  host, ms/video: "
                + ", ".join(f"{k} {v:.3f}" for k, v in host.items() if k not in apart)
                + f"; total {book:.3f}; pixel work {host.get('pixels', 0):.3f}"
                + (f"; host decoding {host['decode']:.3f}" if host.get("decode") else ""),
                flush=True,
            )
    ratios = {}
    # the best peer on the same work as tbfast's loader (the full plan, float out; either colour maths)
    full = [k for k in results if k in PEER_VARIANTS and PEER_VARIANTS[k][1] in ("matrix", "tv")]
    best_peer = max(full, key=lambda k: results[k]["videos_per_s"]) if full else None
    if "dali" in results:
        d, dc = results["dali"]["videos_per_s"], results["dali"]["cpu_ms_per_video"]
        for other in ("reference", "perclip", "decode", *(k for k in results if k in PEER_VARIANTS)):
            if other in results and results[other]["videos_per_s"] > 0:
                ratios[f"dali_over_{other}"] = round(d / results[other]["videos_per_s"], 2)
                ratios[f"dali_over_{other}_cpu"] = round(results[other]["cpu_ms_per_video"] / dc, 2)
    by_work, floor = compare(results)
    return {
        "mode": args.mode,
        "device": args.device,
        "batch_size": args.batch_size,
        "size": args.size,
        "workers": args.workers,
        "augment": augment,
        "videos_timed": args.videos,
        "planned_frames_per_video": round(mean_frames, 1),
        "prepared": str(args.prepared),
        "machine": info,
        "results": results,
        "ratios": ratios,
        "best_peer": best_peer,
        "by_work": by_work,
        "floor": floor,
        "skipped": skipped,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def labels() -> dict[str, str]:
    from tbfast_benchmarks.peers import KINDS, PEERS

    out = {
        "dali": "tbfast, DALI decoder and graph",
        "decode": "tbfast, DALI decode only",
        "perclip": "per-clip PyAV DataLoader",
        "reference": "reference-style DataLoader",
        **{f"{p}{k}": f"{p} DataLoader: {v}" for p in PEERS for k, v in KINDS.items()},
    }
    for name, (decoder, resize, work) in ours().items():
        if resize == "host":
            out[name] = f"tbfast host path, {decoder}: {WORK_LABELS[work]}"
        elif name != "dali":
            out[name] = f"tbfast, {decoder} decoder, DALI graph"
    return out


def print_table(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    names = labels()
    t = Table(
        title=f"loader, mode {report['mode']}, {report['device']}, {report['workers']} workers/threads, "
        f"{report['size']} px, batch {report['batch_size']}"
    )
    for col in ("loader", "work", "videos/s", "clips/s", "frames/s", "CPU ms/video"):
        t.add_column(col, justify="left" if col in ("loader", "work") else "right")
    for name, r in report["results"].items():
        t.add_row(
            names.get(name, name),
            work_of(name),
            f"{r['videos_per_s']:.2f}",
            f"{r['clips_per_s']:.1f}" if r["clips_per_s"] else "-",
            f"{r['frames_per_s']:.0f}",
            f"{r['cpu_ms_per_video']:.1f}",
        )
    console = Console(width=max(Console().width, 132))
    console.print(t)
    by_work = report.get("by_work") or {}
    if by_work:
        w = Table(title="tbfast against the best peer on the same work (× > 1: tbfast ahead)")
        for col in ("work", "tbfast (best)", "best peer", "× videos/s", "× CPU ms/video"):
            w.add_column(col, justify="left" if col in ("work", "tbfast (best)", "best peer") else "right")
        for work, c in by_work.items():
            w.add_row(
                WORK_LABELS[work],
                names.get(c["tbfast"], c["tbfast"]),
                names.get(c["peer"], c["peer"]),
                f"{c['videos_per_s_ratio']:.2f}",
                f"{c['cpu_ratio']:.2f}",
            )
        console.print(w)
    m = report["machine"]
    print(
        f"machine: {m['cpu']}, {m['cores']} cores; torch {m['torch']}, DALI {m['dali']}; load average "
        f"{m.get('loadavg', '?')} at the start"
    )
    if report.get("floor"):
        f = report["floor"]
        print(
            f"floor: the full plan ({names.get(f['full'], f['full'])}) costs {f['ratio']:.2f}× the CPU time per "
            f"video of the fastest decode only ({names.get(f['decode'], f['decode'])})"
        )
    if report.get("best_peer"):
        print(f"best peer on the full plan: {names.get(report['best_peer'], report['best_peer'])}")
    for name, why in (report.get("skipped") or {}).items():
        print(f"skipped {name}: {why}")


def main(args: argparse.Namespace) -> int:
    report = run(args)
    print_table(report)
    if args.json:
        from tbfast_benchmarks.common import write_json

        write_json(args.json, report)
        print(f"wrote {args.json}")
    return 0
