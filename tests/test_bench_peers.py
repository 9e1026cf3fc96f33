"""`tbfast bench loader` peers (benchmarks/peers.py): torchcodec and decord DataLoaders that follow
tbfast's plans. Their colour maths is DALI's (checked against DALI), their clips match tbfast's
loader up to the decoders' rounding, and the bench reports them side by side."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tbfast_benchmarks.peers import VARIANTS, available, colour_affine, peer_item

PEERS_HERE = [p for p in ("torchcodec", "decord") if available(p) is None]


def _dali_colour(img: np.ndarray, v, twist: bool) -> np.ndarray:
    from nvidia.dali import fn, pipeline_def, types

    @pipeline_def(batch_size=1, num_threads=1, device_id=None)
    def pipe():
        x = fn.external_source(source=lambda: [img], batch=True, layout="FHWC", dtype=types.UINT8)
        if twist:
            return fn.color_twist(
                x,
                brightness=v.brightness / 255.0,
                contrast=v.contrast,
                hue=v.hue,
                saturation=0.0 if v.gray else v.saturation,
                dtype=types.FLOAT,
            )
        return fn.brightness_contrast(x, brightness=v.brightness / 255.0, contrast=v.contrast, dtype=types.FLOAT)

    p = pipe()
    p.build()
    return np.asarray(p.run()[0].as_tensor())[0]


def test_colour_affine_is_dalis_colour_jitter():
    """One 3x3 matrix + offset per clip gives DALI's color_twist / brightness_contrast output."""
    from tbfast.data.plans import default_spec, plan_sample

    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (1, 6, 6, 3), dtype=np.uint8)
    spec = default_spec("ssl")
    views = [
        v
        for i in range(6)
        for v in plan_sample(i, 100, 48, 64, spec=spec, size=32, seed=3, epoch=0, augment=True).views["short"][0]
    ]
    kinds = set()
    for v in views[:12]:
        twist = v.hue != 0.0 or v.gray or v.saturation != 1.0
        kinds.add(twist)
        a, b = colour_affine(v)
        mine = img[0].astype(np.float64) / 255.0 @ a.T.astype(np.float64) + b
        assert np.abs(_dali_colour(img, v, twist) - mine).max() < 1e-5
    assert kinds == {True, False}  # both of DALI's operators were checked


@pytest.mark.skipif(not PEERS_HERE, reason="no peer decoder installed (pip install -e '.[peers]')")
@pytest.mark.parametrize("mode", ["train", "ssl"])
def test_peers_follow_the_plan_of_tbfasts_loader(prepared, mode):
    from dali_pipelines import build_loader
    from tbfast.data.manifest import read_manifest
    from tbfast.data.plans import default_spec

    recs = read_manifest(prepared)
    idx = [i for i, r in enumerate(recs) if r.split == "train"][:2]
    spec = default_spec(mode)
    batch = next(
        iter(
            build_loader(
                prepared,
                mode,
                indices=idx,
                batch_size=2,
                size=16,
                num_threads=1,
                seed=0,
                augment=True,
                records=recs,
                shuffle=False,
                drop_last=True,
            )
        )
    )
    items = {p: peer_item(p, prepared, recs, idx[0], spec, size=16, augment=True) for p in PEERS_HERE}
    keys = ("clip",) if mode == "train" else ("long0", "long1", "short0", "short1")
    for p, it in items.items():
        for k in keys:
            mine = it[k]
            ref = batch[k][0] if mode == "train" or k.startswith("long") else batch[k][:4]
            assert mine.shape == ref.shape and mine.dtype == ref.dtype == torch.float32
            # same frames, crop windows, flips and colours: only the decoders' and resamplers' rounding
            # differs (whole-pixel windows with antialiasing against DALI's fractional windows)
            assert float((mine - ref).abs().mean()) < 0.03, (p, k)
    if len(items) == 2:  # both decode with FFmpeg: bit-identical clips
        a, b = items.values()
        for k in keys:
            assert torch.equal(a[k], b[k])


@pytest.mark.skipif(not PEERS_HERE, reason="no peer decoder installed (pip install -e '.[peers]')")
def test_bench_loader_measures_peers_side_by_side(prepared, tmp_path):
    from tbfast.cli import main

    peer = PEERS_HERE[0]
    out = tmp_path / "loader.json"
    wanted = ["dali", peer, f"{peer}-tv", f"{peer}-decode"]
    assert (
        main(
            [
                "bench",
                "loader",
                str(prepared),
                "--mode",
                "train",
                "--videos",
                "4",
                "--batch-size",
                "2",
                "--size",
                "16",
                "--workers",
                "1",
                "--loaders",
                ",".join(wanted),
                "--json",
                str(out),
            ]
        )
        == 0
    )
    rep = json.loads(out.read_text())
    assert set(rep["results"]) == set(wanted)
    assert rep["best_peer"] in (peer, f"{peer}-tv")
    for k in wanted[1:]:
        assert rep["results"][k]["videos"] >= 4 and rep["results"][k]["cpu_ms_per_video"] > 0
        assert rep["ratios"][f"dali_over_{k}"] > 0


def test_a_missing_peer_is_skipped_with_a_note(prepared, tmp_path, monkeypatch):
    import tbfast_benchmarks.peers as peers
    from tbfast.cli import main

    monkeypatch.setattr(peers, "available", lambda p: f"{p} is not usable; pip install -e '.[peers]'")
    out = tmp_path / "loader.json"
    assert (
        main(
            [
                "bench",
                "loader",
                str(prepared),
                "--mode",
                "train",
                "--videos",
                "2",
                "--batch-size",
                "2",
                "--size",
                "16",
                "--workers",
                "1",
                "--loaders",
                "dali,decord",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    rep = json.loads(out.read_text())
    assert set(rep["results"]) == {"dali"} and "pip install" in rep["skipped"]["decord"]
    assert main(["bench", "loader", str(prepared), "--loaders", "dali,nvdec2"]) == 2  # unknown: refused


def test_every_variant_names_a_peer_and_a_kind():
    assert {v[0] for v in VARIANTS.values()} == {"torchcodec", "decord"} and len(VARIANTS) == 10


@pytest.mark.skipif("decord" not in PEERS_HERE, reason="decord not installed")
def test_a_peer_that_fails_on_the_videos_is_reported_not_fatal(tmp_path):
    """decord 0.6 cannot read 48-pixel-wide frames (it copies 64-aligned rows): a skip with the reason."""
    from tbfast.cli import main
    from dali_pipelines.testdata import make_dataset

    data = make_dataset(tmp_path / "narrow", [40, 50], width=48, height=32)
    out = tmp_path / "loader.json"
    assert (
        main(
            [
                "bench",
                "loader",
                str(data),
                "--mode",
                "train",
                "--videos",
                "2",
                "--batch-size",
                "2",
                "--size",
                "16",
                "--workers",
                "1",
                "--loaders",
                "dali,decord",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    rep = json.loads(out.read_text())
    if "decord" in rep["results"]:  # a decord that reads them is fine too
        return
    assert "failed on these videos" in rep["skipped"]["decord"] and "dali" in rep["results"]
