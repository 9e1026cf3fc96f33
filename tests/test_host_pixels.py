"""The host path (a host decoder on the CPU): colour kernel, reader threads, reused output buffers,
and its batches against the same work done step by step."""

import threading

import numpy as np
import pytest
import torch

pytest.importorskip("nvidia.dali")

from dali_pipelines import build_loader  # noqa: E402
from dali_pipelines.host_pixels import IDENTITY, affine_row, colour_into, kernel  # noqa: E402
from dali_pipelines.loader import WORKS  # noqa: E402
from dali_pipelines.testdata import make_dataset  # noqa: E402

SIZE = 16


@pytest.fixture(scope="module")
def coded(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("host_pixels"), [60, 45, 30, 70, 50, 40], width=48, height=32)


def test_colour_kernel_is_the_affine_map_clamped():
    rng = np.random.default_rng(0)
    src = rng.integers(0, 256, (3, 7, 9, 3), dtype=np.uint8)
    a = np.eye(3) * 1.4 + rng.normal(0, 0.3, (3, 3))  # overshoots [0, 1] both ways: the clamp matters
    b = np.array([-0.2, 0.1, 0.3])
    ref = np.clip(src.astype(np.float64) / 255.0 @ a.T + b, 0.0, 1.0)
    assert ref.min() == 0.0 and ref.max() == 1.0
    for use_numba in (True, False):
        out = np.full(src.shape, np.nan, np.float32)
        colour_into(src, affine_row(a, b), out, use_numba=use_numba)
        assert np.abs(out - ref).max() < 2e-6, use_numba
    out = np.empty(src.shape, np.float32)
    colour_into(src, IDENTITY, out)
    assert np.abs(out - src / 255.0).max() < 1e-7  # unaugmented views: x / 255
    with pytest.raises(ValueError, match="C-contiguous"):
        colour_into(src[:, :, ::2], IDENTITY, np.empty((3, 7, 5, 3), np.float32))


def test_numba_is_used_here():
    assert kernel() is not None  # numba is a dependency: the fallback is for machines without it


def test_host_batch_is_the_step_by_step_work(coded):
    """Every clip view of an augmented ssl batch equals decoding its planned frames, cropping and
    resizing them (uint8), applying the view's colour matrix, clamping and zeroing its erase boxes
    and dropped channel, done one step at a time: bit-identical."""
    from dali_pipelines.host_decode import crop_resize, decode_frames
    from tbfast.data.plans import colour_affine

    loader = build_loader(coded, "ssl", batch_size=3, size=SIZE, seed=3, decoder="pyav", shuffle=False)
    assert loader.resize == "host"
    batch = next(iter(loader))
    checked = set()
    for i, index in enumerate(batch["index"].tolist()):
        plan = loader.plan(index)
        data = np.fromfile(coded / loader.records[index].path, dtype=np.uint8)
        frames = decode_frames("pyav", data, plan.decode, loader.records[index].frames)
        for group, name in (("long", "long"), ("short", "short")):
            t = plan.orders[group].shape[1]
            k_n = plan.orders[group].shape[0]
            for v in range(2):
                got = batch[f"{name}{v}"].reshape(3, k_n, 3, t, SIZE, SIZE)[i]  # (K, C, T, S, S)
                for k, c in enumerate(plan.views[group][v]):
                    u8 = crop_resize(frames, plan.orders[group][k], c.roi, SIZE)
                    want = np.empty(u8.shape, np.float32)
                    colour_into(u8, affine_row(*colour_affine(c)), want)
                    for y, x, h, w in c.erase:
                        want[:, y : y + h, x : x + w] = 0
                        checked.add("erase")
                    if c.drop_channel >= 0:
                        want[..., c.drop_channel] = 0
                        checked.add("drop")
                    if c.flip:
                        checked.add("flip")
                    assert np.array_equal(got[k].permute(1, 2, 3, 0).numpy(), want), (index, group, v, k)
    assert {"erase", "flip"} <= checked  # the plan exercised them


def test_host_path_batches_are_the_same_with_either_host_decoder(coded):
    """torchcodec's frames are bit-identical to PyAV's (both FFmpeg's conversion), so an augmented
    host-path epoch is the same with either: the decoder is a speed choice, not a results choice."""
    from dali_pipelines.host_decode import available

    why = available("torchcodec")
    if why:
        pytest.skip(why)
    kw = dict(batch_size=3, size=SIZE, seed=5, shuffle=True)
    a = list(build_loader(coded, "ssl", decoder="pyav", **kw))
    b = list(build_loader(coded, "ssl", decoder="torchcodec", **kw))
    assert len(a) == len(b) >= 2
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for k in x:
            assert torch.equal(x[k], y[k]), k


def test_reader_threads_use_one_torch_thread_and_leave_the_callers(coded):
    torch.set_num_threads(2)
    loader = build_loader(coded, "train", batch_size=2, size=SIZE, decoder="pyav")
    assert torch.get_num_threads() == 2
    counts = set(loader._io.map(lambda _: torch.get_num_threads(), range(8)))
    assert counts == {1}
    seen = []
    t = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
    t.start()
    t.join()
    assert seen == [2]  # threads started later get the caller's count, not the readers'
    assert len(list(loader)) == len(loader)
    loader.close()


def test_output_buffers_are_reused_once_released(coded):
    loader = build_loader(coded, "train", batch_size=2, size=SIZE, decoder="pyav", shuffle=False)
    ids = []
    for _ in range(3):
        for b in loader:
            ids.append(b["clip"].untyped_storage().data_ptr())
            del b
    assert len(set(ids)) < len(ids)  # reused (at most POOL_SETS buffers for 9 batches)
    kept = [b for b in loader]  # all referenced at once: all distinct
    assert len({b["clip"].untyped_storage().data_ptr() for b in kept}) == len(kept)


def test_bench_warm_up_leaves_the_pool_full_and_free(coded):
    """`tbfast bench loader` times the host path after filling its buffer pool; a warm-up batch left
    referenced would make the timed window allocate (page-fault) a new set: every set free, and a
    consumer holding one batch at a time then runs on the pool's sets alone."""
    from dali_pipelines.loader import POOL_SETS, _unreferenced
    from tbfast_benchmarks.loader import _warm_up

    loader = build_loader(
        coded, "ssl", indices=list(range(6)) * 4, batch_size=2, size=SIZE, decoder="pyav", shuffle=False
    )
    _warm_up(loader, POOL_SETS + 1)
    assert 3 <= len(loader._pool) <= POOL_SETS  # two batches in flight + the consumer's
    assert all(_unreferenced(outs) for outs in loader._pool)
    pooled = {a.ctypes.data for outs in loader._pool for a in outs.values()}
    seen = set()
    for b in loader:
        seen.add(b["long0"].untyped_storage().data_ptr())
    assert len(seen) >= 3 and seen <= pooled


def test_lesser_works_do_part_of_the_full_plan(coded):
    """The benchmark's lesser works on the host path: uint8 crop + flip is the full plan's resize
    before colour, crop is it divided by 255 with the erase boxes, decode returns no clips; the DALI
    path refuses them."""
    from dali_pipelines.host_decode import crop_resize, decode_frames
    from tbfast.errors import UserError

    kw = dict(batch_size=2, size=SIZE, seed=4, decoder="pyav", shuffle=False)
    full, crop, u8, dec = (next(iter(build_loader(coded, "train", work=w, **kw))) for w in WORKS)
    assert full["clip"].dtype == crop["clip"].dtype == torch.float32 and u8["clip"].dtype == torch.uint8
    assert "clip" not in dec and torch.equal(dec["index"], full["index"])
    loader = build_loader(coded, "train", **kw)
    for i, index in enumerate(full["index"].tolist()):
        plan = loader.plan(index)
        c = plan.views["clip"][0][0]
        data = np.fromfile(coded / loader.records[index].path, dtype=np.uint8)
        frames = decode_frames("pyav", data, plan.decode, loader.records[index].frames)
        want = crop_resize(frames, plan.orders["clip"][0], c.roi, SIZE)
        assert np.array_equal(u8["clip"][i].permute(1, 2, 3, 0).numpy(), want)
        plain = want / np.float32(255.0)
        for y, x, h, w in c.erase:
            plain[:, y : y + h, x : x + w] = 0
        if c.drop_channel >= 0:
            plain[..., c.drop_channel] = 0
        assert np.abs(crop["clip"][i].permute(1, 2, 3, 0).numpy() - plain).max() < 1e-6
    with pytest.raises(UserError, match="host-path option"):
        build_loader(coded, "train", batch_size=2, size=SIZE, work="uint8")
    with pytest.raises(UserError, match="work must be one of"):
        build_loader(coded, "train", batch_size=2, size=SIZE, decoder="pyav", work="half")


def test_bench_loader_compares_every_work_with_the_best_peer(coded, tmp_path):
    """`tbfast bench loader` runs the host path's works and reports, per work, tbfast's best row
    against the best peer's, and the floor (full plan against the fastest decode only)."""
    import json

    from tbfast.cli import main
    from tbfast_benchmarks.loader import compare, work_of

    works = ["host-pyav", "host-pyav-crop", "host-pyav-uint8", "host-pyav-decode", "dali-pyav"]  # last: old name
    out = tmp_path / "loader.json"
    args = ["bench", "loader", str(coded), "--mode", "train", "--videos", "4", "--batch-size", "2", "--size", "16"]
    assert main([*args, "--workers", "1", "--loaders", ",".join(works), "--json", str(out)]) == 0
    rep = json.loads(out.read_text())
    assert set(rep["results"]) == set(works[:4])  # the old name is the same loader as host-pyav
    assert [work_of(w) for w in works[:4]] == list(WORKS)
    assert rep["floor"]["full"] == "host-pyav" and rep["floor"]["decode"] == "host-pyav-decode"
    assert rep["floor"]["ratio"] > 0 and rep["by_work"] == {}  # no peer ran: nothing to compare with
    # with peer rows (figures made up): each work compares tbfast's best with the best peer's
    res = {k: dict(v) for k, v in rep["results"].items()}
    res["torchcodec"] = {"videos_per_s": 50.0, "cpu_ms_per_video": 40.0}
    res["torchcodec-tv"] = {"videos_per_s": 25.0, "cpu_ms_per_video": 80.0}
    res["decord-decode"] = {"videos_per_s": 1e6, "cpu_ms_per_video": 1e-3}
    by_work, floor = compare(res)
    assert set(by_work) == {"full", "decode"} and by_work["full"]["peer"] == "torchcodec"
    assert by_work["full"]["cpu_ratio"] == round(40.0 / res["host-pyav"]["cpu_ms_per_video"], 2)
    assert floor is not None and floor["decode"] == "decord-decode"
