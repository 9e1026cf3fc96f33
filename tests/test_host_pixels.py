"""The host path (a host decoder on the CPU): colour kernel, reader threads, reused output buffers,
and its batches against the same work done step by step."""

import threading

import numpy as np
import pytest
import torch

pytest.importorskip("nvidia.dali")

from dali_pipelines import build_loader  # noqa: E402
from dali_pipelines.host_pixels import IDENTITY, affine_row, colour_into, kernel  # noqa: E402
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
