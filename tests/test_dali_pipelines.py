"""DALI clip pipelines on tiny frame-coded VP9 videos (CPU backend; GPU tests skip without CUDA)."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

pytest.importorskip("nvidia.dali")

from dali_pipelines import build_loader  # noqa: E402
from dali_pipelines.testdata import decode_index, make_dataset  # noqa: E402

LENGTHS = [100, 70, 20, 90, 64, 45, 80, 33, 100]  # index 2 (20) and 7 (33) are short: padded
STATIC = [False] * 9 + [True, True, True, True]
SIZE = 16


@pytest.fixture(scope="module")
def coded(tmp_path_factory):
    root = tmp_path_factory.mktemp("dali_prepared")
    return make_dataset(root, LENGTHS + [40] * 4, static=STATIC, width=48, height=32)


CODED = list(range(len(LENGTHS)))
STILL = list(range(len(LENGTHS), len(LENGTHS) + 4))


def pyav_frames(path):
    import av

    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


def clip_indices(clips):
    """(N, 3, T, S, S) -> (N, T) decoded frame codes."""
    x = clips.permute(0, 2, 3, 4, 1).numpy()
    return np.array([[decode_index(x[n, t]) for t in range(x.shape[1])] for n in range(x.shape[0])])


def halves(frame):
    h, w = frame.shape[:2]
    return np.array([frame[h // 4, w // 2], frame[3 * h // 4, w // 2]], np.float64)


def check_layout(t, n, frames):
    assert t.dtype == torch.float32 and t.shape == (n, 3, frames, SIZE, SIZE)
    assert t.is_contiguous(memory_format=torch.channels_last_3d)
    assert float(t.min()) >= 0.0 and float(t.max()) <= 1.0


def _decoder_or_skip(decoder):
    from dali_pipelines.host_decode import available

    why = available(decoder)
    if why:
        pytest.skip(why)
    return decoder


@pytest.mark.parametrize("decoder", ["dali", "pyav", "torchcodec"])
@pytest.mark.parametrize("mode", ["ssl", "train", "eval", "similarity"])
def test_every_mode_returns_exactly_the_planned_frames(coded, mode, decoder):
    from tbfast.data.manifest import read_manifest

    records = read_manifest(coded)
    loader = build_loader(
        coded, mode, indices=CODED, batch_size=3, size=SIZE, augment=False, seed=3, decoder=_decoder_or_skip(decoder)
    )
    seen = []
    decoded = {}
    for batch in loader:
        b = len(batch["index"])
        seen += batch["index"].tolist()
        if mode == "ssl":
            check_layout(batch["long0"], b, 16)
            check_layout(batch["short1"], 4 * b, 16)
            pairs = [
                (batch["long0"], batch["frames_long"].reshape(b, 16)),
                (batch["long1"], batch["frames_long"].reshape(b, 16)),
                (batch["short0"], batch["frames_short"].reshape(4 * b, 16)),
                (batch["short1"], batch["frames_short"].reshape(4 * b, 16)),
            ]
            fl, fs = batch["frames_long"], batch["frames_short"]
            for i in range(b):  # long clip = s0 + 4k, shorts tile s0..s0+63 (clamped)
                n = records[int(batch["index"][i])].frames
                s0 = int(fs[i, 0, 0])
                assert fl[i].tolist() == [min(s0 + 4 * k, n - 1) for k in range(16)]
                assert fs[i].reshape(-1).tolist() == [min(s0 + k, n - 1) for k in range(64)]
        else:
            k = {"train": 1, "eval": 10, "similarity": 4}[mode]
            t = {"train": 8, "eval": 8, "similarity": 16}[mode]
            check_layout(batch["clip"], k * b, t)
            pairs = [(batch["clip"], batch["frames"].reshape(k * b, t))]
        assert batch["label"].tolist() == [records[i].label for i in batch["index"].tolist()]
        for clips, frames in pairs:
            # strict identity: every frame is the planned source frame
            assert (clip_indices(clips) == frames.numpy()).all()
            # and its colours agree with an independent PyAV decode (rounding tolerance)
            rows = np.repeat(batch["index"].numpy(), clips.shape[0] // b)
            for r in range(0, clips.shape[0], max(1, clips.shape[0] // 4)):
                idx = int(rows[r])
                if idx not in decoded:
                    decoded[idx] = pyav_frames(coded / records[idx].path)
                for t in range(clips.shape[2]):
                    ours = halves(clips[r, :, t].permute(1, 2, 0).numpy() * 255)
                    ref = halves(decoded[idx][int(frames[r, t])])
                    assert np.abs(ours - ref).max() <= 6
    if mode in ("eval", "similarity"):
        assert seen == CODED  # in order, every sample once, last batch smaller
    else:
        assert len(seen) == len(CODED) // 3 * 3 and len(set(seen)) == len(seen)


@pytest.mark.parametrize("decoder", ["dali", "pyav", "torchcodec"])
def test_short_video_is_padded_by_repeating_the_last_frame(coded, decoder):
    loader = build_loader(
        coded, "ssl", indices=[2], batch_size=1, size=SIZE, augment=False, decoder=_decoder_or_skip(decoder)
    )
    batch = next(iter(loader))
    assert batch["frames_short"].reshape(-1).tolist() == list(range(20)) + [19] * 44
    assert clip_indices(batch["short0"]).reshape(-1).tolist() == list(range(20)) + [19] * 44
    assert clip_indices(batch["long1"])[0, -1] == 19


@pytest.mark.parametrize("decoder", ["dali", "torchcodec"])  # torchcodec: clip views resized on the host
def test_augmentation_constant_within_clip_and_independent_between_views(coded, decoder):
    loader = build_loader(
        coded, "ssl", indices=STILL, batch_size=4, size=SIZE, seed=11, decoder=_decoder_or_skip(decoder)
    )
    for epoch in range(2):
        loader.set_epoch(epoch)
        batch = next(iter(loader))
        for name in ("long0", "long1", "short0", "short1"):
            x = batch[name]
            # a still video: every frame of an augmented clip must be identical
            assert (x - x[:, :, :1]).abs().max() < 1e-6, name
        assert not torch.allclose(batch["long0"], batch["long1"])
        assert not torch.allclose(batch["short0"], batch["short1"])
        # the four short clips of one view got their own parameters
        s = batch["short0"].reshape(4, 4, 3, 16, SIZE, SIZE)
        assert not all(torch.allclose(s[0, 0], s[0, j]) for j in range(1, 4))
        # the plan is what was applied: erase boxes are zero, a dropped channel is zero, grey is grey
        for b, idx in enumerate(batch["index"].tolist()):
            plan = loader.plan(idx)
            for v in range(2):
                view = plan.views["long"][v][0]
                img = batch[f"long{v}"][b, :, 0].numpy()  # (3, S, S)
                for y, x0, h, w in view.erase:
                    assert np.all(img[:, y : y + h, x0 : x0 + w] == 0)
                if view.drop_channel >= 0:
                    assert np.all(img[view.drop_channel] == 0)
                if view.gray and view.drop_channel < 0 and not view.erase:
                    assert np.abs(img[0] - img[1]).max() < 2 / 255 and np.abs(img[1] - img[2]).max() < 2 / 255


@pytest.mark.parametrize("decoder", ["dali", "torchcodec"])
def test_flip_and_crop_follow_the_plan(coded, decoder):
    """A still picture with a red top-left block: a flipped view has it on the right."""
    # crop side = short side, so the block (left third, top third) is in every crop but the rightmost
    from tbfast.data.plans import AugSpec, default_spec

    aug = AugSpec(
        crop_scale=(1.0, 1.0),
        flip_p=0.5,
        contrast_p=0,
        hue_p=0,
        saturation_p=0,
        brightness_p=0,
        gray_p=0,
        channel_drop_p=0,
        erase_p=0,
    )
    spec = default_spec("train", aug=aug)
    loader = build_loader(
        coded, "train", indices=STILL, batch_size=4, size=SIZE, seed=2, spec=spec, decoder=_decoder_or_skip(decoder)
    )
    flips = []
    for epoch in range(3):
        loader.set_epoch(epoch)
        batch = next(iter(loader))
        for b, idx in enumerate(batch["index"].tolist()):
            flip = loader.plan(idx).views["clip"][0][0].flip
            blue = batch["clip"][b, 2, 0]  # (S, S): 30/255 in the block, 96/255 elsewhere
            left, right = float(blue[:3, :3].mean()), float(blue[:3, -3:].mean())
            if abs(left - right) < 0.1:  # the crop left the block out
                continue
            assert (right < left) == flip
            flips.append(flip)
    assert any(flips) and not all(flips)


def test_sharding_two_ranks_disjoint_complete(coded):
    got = []
    for rank in range(2):
        loader = build_loader(coded, "eval", indices=CODED, batch_size=2, size=SIZE, shard_id=rank, num_shards=2)
        got.append([i for b in loader for i in b["index"].tolist()])
    assert not set(got[0]) & set(got[1]) and sorted(got[0] + got[1]) == CODED
    lens = [len(build_loader(coded, "ssl", indices=CODED, batch_size=2, shard_id=r, num_shards=2)) for r in range(2)]
    assert lens == [2, 2]


@pytest.mark.parametrize("decoder", ["dali", "pyav"])  # pyav: the host path
def test_epochs_reorder_and_start_batch_resumes_exactly(coded, decoder):
    loader = build_loader(coded, "train", indices=CODED, batch_size=2, size=SIZE, seed=4, decoder=decoder)
    assert len(loader) == 4
    loader.set_epoch(1)
    full = [(b["index"].clone(), b["clip"].clone()) for b in loader]
    loader.set_epoch(2)
    other = [b["index"].tolist() for b in loader]
    assert [i.tolist() for i, _ in full] != other
    loader.set_epoch(1, start_batch=2)
    resumed = [(b["index"].clone(), b["clip"].clone()) for b in loader]
    assert len(resumed) == 2
    for (i0, c0), (i1, c1) in zip(full[2:], resumed):
        assert torch.equal(i0, i1) and torch.equal(c0, c1)
    # a fresh loader with the same seed reproduces the epoch (another process after SIGKILL)
    again = build_loader(coded, "train", indices=CODED, batch_size=2, size=SIZE, seed=4, decoder=decoder)
    again.set_epoch(1)
    assert all(torch.equal(b["clip"], c) for b, (_, c) in zip(again, full))


@pytest.mark.parametrize("decoder", ["dali", "pyav"])  # pyav: the host path and its reused buffers
def test_batches_stay_valid_while_referenced(coded, decoder):
    """The zero-copy hand-over must not let a later batch overwrite an earlier one, nor a later epoch
    a batch (or a view of one) that is still referenced."""
    loader = build_loader(coded, "train", indices=CODED, batch_size=2, size=SIZE, decoder=decoder)
    it = iter(loader)
    first = next(it)
    saved = first["clip"].clone()
    view = first["clip"][1:, :, 2]  # only a view kept: it keeps the buffer
    saved_view = view.clone()
    del first
    for _ in it:
        pass
    for epoch in (1, 2):
        loader.set_epoch(epoch)
        batches = list(loader)
    assert torch.equal(view, saved_view)
    assert torch.equal(batches[0]["clip"], next(iter(loader))["clip"])  # same epoch, same batch
    assert not torch.equal(batches[0]["clip"][0], saved[0])


@pytest.mark.parametrize("decoder", ["dali", "pyav"])
def test_abandoned_epoch_leaves_the_loader_usable(coded, decoder):
    loader = build_loader(coded, "train", indices=CODED, batch_size=2, size=SIZE, decoder=decoder)
    for _ in loader:
        break
    assert len(list(loader)) == len(loader)


def test_corrupt_file_names_the_file_and_never_hangs(tmp_path):
    root = make_dataset(tmp_path / "bad", [40, 40, 40, 40], corrupt=[2])
    code = textwrap.dedent(f"""
        from dali_pipelines import build_loader
        from tbfast.errors import UserError
        loader = build_loader({str(root)!r}, "train", batch_size=2, size=16, shuffle=False)
        try:
            for b in loader:
                pass
        except UserError as e:
            print("ERROR:", e)
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=90)
    assert "ERROR:" in res.stdout, res.stdout + res.stderr
    assert "v0002.webm" in res.stdout and "manifest index 2" in res.stdout


@pytest.mark.parametrize("decoder", ["pyav", "torchcodec"])
def test_host_decoder_corrupt_file_names_the_file(tmp_path, decoder):
    from dali_pipelines.loader import CorruptVideoError

    root = make_dataset(tmp_path / "bad", [40, 40, 40, 40], corrupt=[2])
    loader = build_loader(root, "train", batch_size=2, size=16, shuffle=False, decoder=_decoder_or_skip(decoder))
    with pytest.raises(CorruptVideoError, match=r"v0002\.webm.*manifest index 2"):
        for _ in loader:
            pass


@pytest.mark.parametrize("decoder", ["pyav", "torchcodec"])
def test_host_decoders_give_ffmpegs_frames_and_differ_from_dalis_by_its_colour_conversion(coded, decoder):
    """A host decoder returns exactly the planned frames as FFmpeg converts them (PyAV's rgb24 of
    every frame, decoded from the start, is the reference): torchcodec's are bit-identical to PyAV's,
    so the host path gives the same batches with either decoder; the same augmented plan through the
    DALI decoder differs from it only by DALI's own YUV->RGB conversion: a mean of 0.1-3 levels."""
    from dali_pipelines.host_decode import decode_frames
    from tbfast.data.manifest import read_manifest

    _decoder_or_skip(decoder)
    records = read_manifest(coded)
    for i in (0, 3, 7):
        data = np.fromfile(coded / records[i].path, dtype=np.uint8)
        ref = pyav_frames(coded / records[i].path)
        n = len(ref)
        for wanted in (np.arange(0, min(n, 16)), np.arange(n // 2, n), np.array([1, 5, 17, 30]) % n):
            got = decode_frames(decoder, data, np.unique(wanted), records[i].frames)
            diff = np.abs(got.astype(int) - ref[np.unique(wanted)].astype(int))
            assert diff.max() == 0, (i, wanted)
    kw = dict(indices=CODED, batch_size=3, size=SIZE, seed=1)  # augmented: every colour operation runs
    a = next(iter(build_loader(coded, "ssl", **kw)))
    b = next(iter(build_loader(coded, "ssl", decoder=decoder, resize="dali", **kw)))  # the same resize
    for f in ("long0", "short1"):
        d = (a[f] - b[f]).abs().mean().item() * 255
        assert 0.1 < d < 3.0, (f, d)


def test_pyav_reused_reformatter_is_to_ndarray_bit_for_bit(tmp_path):
    """The PyAV host decoder converts through one swscale context per thread (PyAV's ``to_ndarray``
    makes a new one per frame): on colourful frames of two sizes, alternating in one thread, and with
    every converted frame still held, the pixels are ``to_ndarray(format="rgb24")``'s exactly."""
    import av

    from dali_pipelines.host_decode import pyav_rgb24

    paths = [
        next(make_dataset(tmp_path / name, [12], static=[True], width=w, height=h).glob("videos/*/*.webm"))
        for name, w, h in (("a", 48, 32), ("b", 64, 40))
    ]
    for _ in range(2):
        for path in paths:
            with av.open(str(path)) as c:
                pairs = [(pyav_rgb24(f), f.to_ndarray(format="rgb24")) for f in c.decode(video=0)]
            assert len(pairs) == 12 and pairs[0][0].std() > 10  # colourful, not flat
            for got, ref in pairs:
                assert got.shape == ref.shape and np.array_equal(got, ref)


@pytest.mark.gpu
def test_gpu_path_matches_cpu_frames(coded):
    cpu = next(iter(build_loader(coded, "eval", indices=CODED[:2], batch_size=2, size=SIZE)))
    gpu = next(iter(build_loader(coded, "eval", indices=CODED[:2], batch_size=2, size=SIZE, device="gpu")))
    assert gpu["clip"].is_cuda and gpu["clip"].is_contiguous(memory_format=torch.channels_last_3d)
    assert (clip_indices(gpu["clip"].cpu()) == clip_indices(cpu["clip"])).all()
    assert (gpu["clip"].cpu() - cpu["clip"]).abs().mean() < 0.02


@pytest.mark.parametrize("mode", ["ssl", "train", "eval", "similarity"])
def test_unseen_prepared_data_gives_the_planned_frames(prepared, mode):
    """On the shared synthetic prepared set (not frame-coded): every output frame matches the
    planned source frame of an independent PyAV decode best (up to identical frames); a plan
    shifted by one frame fails this check."""
    import torch.nn.functional as F

    from tbfast.data.manifest import read_manifest

    records = read_manifest(prepared)
    pick = [0, len(records) // 2, len(records) - 1]
    loader = build_loader(
        prepared, mode, indices=pick, batch_size=3, size=SIZE, augment=False, shuffle=False, drop_last=False
    )
    batch = next(iter(loader))
    if mode == "ssl":
        clips, frames = batch["short0"], batch["frames_short"].reshape(-1, 16)
    else:
        clips, frames = batch["clip"], batch["frames"].reshape(batch["clip"].shape[0], -1)
    rows_per_video = clips.shape[0] // len(pick)
    for r in range(clips.shape[0]):
        idx = pick[r // rows_per_video]
        rec = records[idx]
        ref = torch.from_numpy(pyav_frames(prepared / rec.path)).permute(0, 3, 1, 2).float() / 255
        y0, x0, y1, x1 = loader.plan(idx).views["long" if mode == "ssl" else "clip"][0][0].roi
        ref = ref[:, :, int(round(y0)) : int(round(y1)), int(round(x0)) : int(round(x1))]
        ref = F.interpolate(ref, size=(SIZE, SIZE), mode="bilinear", antialias=True, align_corners=False)
        for t in range(clips.shape[2]):
            ours = clips[r, :, t]
            err = (ref - ours).abs().mean(dim=(1, 2, 3))
            planned = int(frames[r, t])
            assert planned < rec.frames
            assert err[planned] <= err.min() + 2e-3 and err[planned] < 0.03, (mode, idx, t, planned, int(err.argmin()))


@pytest.mark.parametrize("mode", ["ssl", "train", "eval", "similarity"])
def test_gpu_graph_is_built_from_the_same_definition(mode):
    """Without a GPU: the device="gpu" graph (mixed decoder) is constructed (not run) and ends on
    the GPU. Running it is covered by test_gpu_path_matches_cpu_frames on a CUDA machine."""
    from dali_pipelines.graph import GraphLayout, build_pipeline
    from tbfast.data.plans import default_spec

    pipe = build_pipeline(GraphLayout(default_spec(mode), True), size=16, batch_size=2, device="gpu", device_id=0)
    assert [o.device for o in pipe._graph_out] == ["gpu"] * (4 if mode == "ssl" else 1)


def test_brightness_contrast_branch_equals_colour_twist_without_hue_and_saturation():
    """The graph runs fn.color_twist only on clips that drew hue/saturation/grayscale and
    fn.brightness_contrast on the others: for hue 0 and saturation 1 both must give the same."""
    import nvidia.dali.fn as fn
    import nvidia.dali.types as types
    from nvidia.dali import pipeline_def

    from dali_pipelines.loader import colour_row
    from tbfast.data.plans import ClipView

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (2, 5, 7, 3), dtype=np.uint8)
    views = [ClipView(roi=(0, 0, 1, 1), brightness=b, contrast=c) for b, c in [(1.0, 1.0), (0.8, 1.2), (1.2, 0.76)]]
    rows = [colour_row(v) for v in views]
    assert not any(r[4] for r in rows)
    assert colour_row(ClipView(roi=(0, 0, 1, 1), hue=3.0))[4] == 1.0
    assert colour_row(ClipView(roi=(0, 0, 1, 1), gray=True, saturation=0.0))[4] == 1.0
    args = {"brightness": [np.float32(r[0]) for r in rows], "contrast": [np.float32(r[1]) for r in rows]}

    @pipeline_def(batch_size=len(views), num_threads=1, device_id=None)
    def pipe():
        v = fn.external_source(source=lambda: [x] * len(views), layout="FHWC", batch=True)
        b = fn.external_source(source=lambda: args["brightness"], batch=True)
        c = fn.external_source(source=lambda: args["contrast"], batch=True)
        return (
            fn.color_twist(v, brightness=b, contrast=c, hue=0.0, saturation=1.0, dtype=types.FLOAT),
            fn.brightness_contrast(v, brightness=b, contrast=c, dtype=types.FLOAT),
        )

    p = pipe()
    p.build()
    twist, bc = p.run()
    for i in range(len(views)):
        np.testing.assert_allclose(np.asarray(bc[i]), np.asarray(twist[i]), atol=1e-6)


@pytest.mark.parametrize("decoder", ["dali", "pyav"])  # pyav: the host path
def test_three_crop_eval_views(coded, decoder):
    """eval with views=3: crops at both ends and the centre of the long side; the middle one is
    exactly the one-crop pipeline's centre crop."""
    from tbfast.data.plans import center_view, default_spec

    side = 0.8 * 32
    assert center_view(32, 48, 0.8, 0, 3).roi == pytest.approx((3.2, 0.0, 3.2 + side, side))
    assert center_view(32, 48, 0.8, 2, 3).roi == pytest.approx((3.2, 48 - side, 3.2 + side, 48))
    assert center_view(32, 48, 0.8, 1, 3).roi == pytest.approx(center_view(32, 48, 0.8).roi)
    assert center_view(48, 32, 0.8, 2, 3).roi == pytest.approx((48 - side, 3.2, 48, 3.2 + side))  # portrait
    kw = dict(indices=STILL, batch_size=4, size=SIZE, decoder=decoder)
    one = next(iter(build_loader(coded, "eval", **kw)))
    three = next(iter(build_loader(coded, "eval", spec=default_spec("eval", views=3), **kw)))
    assert "clip" not in three and {"clip0", "clip1", "clip2"} <= set(three)
    for v in range(3):
        check_layout(three[f"clip{v}"], 4 * 10, 8)
    assert torch.equal(three["clip1"], one["clip"])
    # the still picture's dark-blue block sits in the top-left third: in the left crop, not the right
    blue = lambda v: float(three[f"clip{v}"][:, 2, 0, :3, :3].mean())  # noqa: E731
    assert blue(0) < 0.25 < blue(2)


@pytest.mark.parametrize("mode", ["ssl", "train", "eval"])
def test_host_resize_follows_the_plan_like_the_graphs_resize(coded, mode):
    """resize "host" (the default with a host decoder on the CPU), augmented: the same plan (frame
    lists, labels) and pixels close to the graph's resize of the same frames (crop edges rounded to
    whole pixels; the planned frames themselves: test_every_mode_returns_exactly_the_planned_frames);
    "host" is refused where the frames are not on the host."""
    from dali_pipelines.loader import ClipLoader
    from tbfast.errors import UserError

    decoder = _decoder_or_skip("torchcodec")
    kw = dict(indices=CODED, batch_size=3, size=SIZE, seed=5, decoder=decoder)
    host, graph = build_loader(coded, mode, **kw), build_loader(coded, mode, resize="dali", **kw)
    assert host.resize == "host" and graph.resize == "dali"
    a, b = next(iter(host)), next(iter(graph))
    fields = [k for k in a if a[k].dtype == torch.float32]
    assert fields and all(torch.equal(a[k], b[k]) for k in a if k not in fields)  # frames, labels, indices
    for k in fields:
        assert a[k].shape == b[k].shape and a[k].is_contiguous(memory_format=torch.channels_last_3d)
        assert (a[k] - b[k]).abs().mean().item() * 255 < 6, k
    with pytest.raises(UserError, match="needs decoder pyav or torchcodec"):
        ClipLoader(coded, mode, indices=CODED, batch_size=3, size=SIZE, resize="host")


def test_crop_resize_crops_flips_and_picks_frames():
    import torch.nn.functional as F

    from dali_pipelines.host_decode import crop_resize

    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (6, 30, 40, 3), dtype=np.uint8)
    out = crop_resize(frames, np.array([1, 2, 3]), (2.0, 5.0, 26.0, 29.0), 12)
    ref = F.interpolate(
        torch.from_numpy(frames[1:4, 2:26, 5:29]).permute(0, 3, 1, 2).float(),
        size=(12, 12),
        mode="bilinear",
        align_corners=False,
    ).permute(0, 2, 3, 1)
    assert out.shape == (3, 12, 12, 3) and out.dtype == np.uint8 and out.flags.c_contiguous
    assert np.abs(out.astype(float) - ref.numpy()).max() <= 1  # uint8 rounding
    flipped = crop_resize(frames, np.array([1, 2, 3]), (2.0, 29.0, 26.0, 5.0), 12)  # x0 > x1: mirrored
    assert np.array_equal(flipped, out[:, :, ::-1])
    picked = crop_resize(frames, np.array([4, 0, 4]), (2.2, 4.6, 25.8, 29.4), 12)  # any order; edges rounded
    assert np.array_equal(picked[0], crop_resize(frames, np.array([4]), (2, 5, 26, 29), 12)[0])
    assert np.array_equal(picked[1], out[0]) is False and np.array_equal(picked[0], picked[2])
