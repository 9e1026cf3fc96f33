"""`build_loader`: manifest + plans -> DALI graph -> torch channels-last NCTHW batches.

The loader owns the order (one permutation per seed and epoch, sliced per shard) and computes every
sample's plan in Python; the DALI pipeline is fed batch by batch with ``feed_input`` and runs one
batch ahead of the consumer (``schedule_run`` before the previous batch is handed over).

Hand-over: on the CPU the pipeline's output buffer becomes the torch tensor's memory (numpy array
interface, no copy); the dynamic executor allocates a fresh buffer per iteration, so a batch stays
valid while anything references it. On the GPU the output is wrapped through DLPack.
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import os
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from tbfast.data.manifest import VideoRecord, content_checksum, read_manifest, split_indices
from tbfast.data.plans import MODES, ClipSpec, SamplePlan, default_spec, epoch_batches, plan_sample
from tbfast.errors import UserError


def erase_boxes(plans: list[SamplePlan], group: str, view: int, size: int) -> list[tuple]:
    """(sample, first frame, end frame, y0, y1, x0, x1, c0, c1) of every random-erase box (all
    channels) and dropped channel of one view of a clip group, in its (B, K*T, S, S, 3) output."""
    boxes = []
    for i, p in enumerate(plans):
        t = p.clips[group].shape[1]
        for k, c in enumerate(p.views[group][view]):
            for y, x, h, w in c.erase:
                boxes.append((i, k * t, (k + 1) * t, y, y + h, x, x + w, 0, 3))
            if c.drop_channel >= 0:
                boxes.append((i, k * t, (k + 1) * t, 0, size, 0, size, c.drop_channel, c.drop_channel + 1))
    return boxes


def colour_row(c) -> tuple[float, float, float, float, float]:
    """The colour arguments of one clip view as the graph takes them: brightness (with the 1/255
    scaling), contrast, hue, saturation (0 for grayscale), and 1.0 where it needs the colour-twist
    matrix (hue, saturation or grayscale drawn) rather than just brightness/contrast."""
    twist = c.hue != 0.0 or c.gray or c.saturation != 1.0
    return (c.brightness / 255.0, c.contrast, c.hue, 0.0 if c.gray else c.saturation, 1.0 if twist else 0.0)


# the host path's work per sample: "full" (the plan: what training uses); for `tbfast bench loader`,
# to compare with loaders that do less: "crop" (crop, flip, erase boxes and dropped channels, no
# colour), "uint8" (crop and flip into uint8 outputs: the step would convert), "decode" (decode the
# planned frames only; the batches carry labels and indices, no clips)
WORKS = ("full", "crop", "uint8", "decode")

# output buffer sets the host path keeps for reuse: the consumer's batch, the one it waits for, the
# one being made, and the batch before the consumer's (still bound to its loop variable)
POOL_SETS = 4


def _references(outs: dict[str, np.ndarray]) -> list[int]:
    return [sys.getrefcount(a) for a in outs.values()]


# the count of an array that only a pool set holds, measured through the same code (so it holds
# whatever the interpreter's own references are)
_POOL_REFS = _references({"x": np.empty(0)})[0]


def _unreferenced(outs: dict[str, np.ndarray]) -> bool:
    """Only the pool holds ``outs``' arrays: no batch, tensor (torch.from_numpy keeps its array) or view."""
    return all(n == _POOL_REFS for n in _references(outs))


def _one_torch_thread() -> None:
    import torch

    torch.get_num_threads()  # torch sets this thread's OpenMP team size from its global on first use
    torch.set_num_threads(1)  # this thread's team: 1 (and the global, which _reader_pool restores)


def _reader_pool(threads: int) -> cf.ThreadPoolExecutor:
    """The reader threads, each with one torch intra-op thread: they decode and resize samples side
    by side, and an OpenMP team per reader thread (torch's interpolate, torchcodec's frame batch)
    oversubscribed the cores: ~15 % more CPU per ssl video on 2 cores. torch.set_num_threads
    is per thread for the calling thread's team but also sets the global that new threads start
    from: the threads are started here, then the caller's count is set back."""
    import threading

    import torch

    caller = torch.get_num_threads()
    pool = cf.ThreadPoolExecutor(threads, thread_name_prefix="tbfast-read", initializer=_one_torch_thread)
    started = threading.Barrier(threads + 1)
    waits = [pool.submit(started.wait) for _ in range(threads)]  # one task per thread: all start now
    started.wait()
    cf.wait(waits)
    torch.set_num_threads(caller)
    return pool


def _from_numpy(a: np.ndarray):
    import torch

    return torch.from_numpy(a)


class CorruptVideoError(UserError):
    """A video of the manifest could not be decoded (the message names it)."""


class ClipLoader:
    """Iterable of batches (dicts of tensors); see docs/ARCHITECTURE.md "Loaders"."""

    def __init__(
        self,
        prepared,
        mode: str,
        *,
        indices: Sequence[int] | None = None,
        split: str = "train",
        batch_size: int = 8,
        size: int = 112,
        device: str = "cpu",
        device_id: int | None = None,
        num_threads: int = 2,
        seed: int = 0,
        shard_id: int = 0,
        num_shards: int = 1,
        augment: bool = True,
        spec: ClipSpec | None = None,
        drop_last: bool | None = None,
        shuffle: bool | None = None,
        records: Sequence[VideoRecord] | None = None,
        decoder: str = "dali",
        resize: str = "auto",
        work: str = "full",
    ):
        if mode not in MODES:
            raise UserError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        if device not in ("cpu", "gpu"):
            raise UserError(f"device must be 'cpu' or 'gpu', not {device!r}")
        from dali_pipelines.host_decode import available

        why = available(decoder)
        if why:
            raise UserError(f"decoder {decoder!r}: {why}")
        self.decoder = decoder
        from dali_pipelines.host_decode import resolve_resize

        try:
            self.resize = resolve_resize(resize, decoder, device)
        except ValueError as exc:
            raise UserError(str(exc)) from exc
        if work not in WORKS:
            raise UserError(f"work must be one of {', '.join(WORKS)}, not {work!r}")
        if work != "full" and self.resize != "host":
            raise UserError(
                f"work {work!r} is a host-path option (a host decoder on the CPU); got resize {self.resize!r}"
            )
        self.work = work
        self.prepared = Path(prepared)
        self.mode = mode
        self.records = list(records) if records is not None else read_manifest(self.prepared)
        self.indices = list(indices) if indices is not None else split_indices(self.records, split)
        for i in self.indices:
            if not 0 <= i < len(self.records):
                raise UserError(f"manifest index {i} out of range (manifest has {len(self.records)} records)")
        if not self.indices:
            raise UserError(f"no videos to load from {self.prepared} (split {split!r}, mode {mode})")
        self.spec = spec if spec is not None else default_spec(mode)
        if self.spec.mode != mode:
            self.spec = replace(self.spec, mode=mode)
        self.batch_size, self.size, self.seed = int(batch_size), int(size), int(seed)
        self.device = device
        if device == "gpu":
            import torch

            if not torch.cuda.is_available():
                raise UserError("device 'gpu' needs CUDA, and torch sees no GPU; use device 'cpu'")
            if device_id is None:
                device_id = torch.cuda.current_device()
        self.device_id = device_id
        self.num_threads = int(num_threads)
        self.shard_id, self.num_shards = int(shard_id), int(num_shards)
        self.augment = bool(augment)
        training = mode in ("ssl", "train")
        self.shuffle = training if shuffle is None else bool(shuffle)
        self.drop_last = training if drop_last is None else bool(drop_last)
        self.epoch, self.start_batch = 0, 0
        self._pipe = None
        self._verified: dict[int, tuple] = {}  # manifest index -> identity of the file whose checksum matched
        # host CPU time outside DALI (seconds) per phase, and the videos it served (`tbfast bench loader`)
        # ("feed": feeding DALI, or on the host path allocating the outputs and submitting the tasks)
        # ("pixels": with DALI, the clamp and erase boxes done on the output buffer at the hand-over
        # (on the GPU device kernels the host only launches); on the host path, everything after
        # decoding: cutting, cropping, resizing, colour, clamp, erase boxes)
        # ("decode": a host decoder's work in the reader threads, decoder="pyav"/"torchcodec")
        self.host_seconds = {"read": 0.0, "plan": 0.0, "feed": 0.0, "hand_over": 0.0, "pixels": 0.0, "decode": 0.0}
        self.host_videos = 0
        self._order_cache: tuple[int | None, list[list[int]]] = (None, [])
        if not self.batches():
            raise UserError(
                f"{len(self.indices)} videos make no full batch of {self.batch_size} on each of "
                f"{self.num_shards} shard(s); lower --batch-size"
            )
        self._held: collections.deque = collections.deque()  # fed frames DALI may still read
        self._pool: list[dict[str, np.ndarray]] = []  # the host path's output buffers (_host_outputs)
        self._io = _reader_pool(max(1, self.num_threads))
        from dali_pipelines.graph import GraphLayout

        self.layout = GraphLayout(self.spec, self.augment, decoder)

    # ------------------------------------------------------------------ order
    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Select the epoch (order and augmentation) and skip its first ``start_batch`` batches."""
        self.epoch, self.start_batch = int(epoch), int(start_batch)

    def batches(self, epoch: int | None = None) -> list[list[int]]:
        """This shard's batches of manifest indices for ``epoch`` (default: the current one)."""
        epoch = self.epoch if epoch is None else int(epoch)
        if self._order_cache[0] != epoch:
            self._order_cache = (
                epoch,
                epoch_batches(
                    self.indices,
                    batch_size=self.batch_size,
                    seed=self.seed,
                    epoch=epoch,
                    shuffle=self.shuffle,
                    drop_last=self.drop_last,
                    shard_id=self.shard_id,
                    num_shards=self.num_shards,
                ),
            )
        return self._order_cache[1]

    def __len__(self) -> int:
        return len(self.batches())

    def plan(self, index: int, epoch: int | None = None) -> SamplePlan:
        r = self.records[index]
        return plan_sample(
            index,
            r.frames,
            r.height,
            r.width,
            spec=self.spec,
            size=self.size,
            seed=self.seed,
            epoch=self.epoch if epoch is None else epoch,
            augment=self.augment,
        )

    # ------------------------------------------------------------------ DALI
    def _pipeline(self):
        if self._pipe is None:
            from dali_pipelines.graph import build_pipeline

            pipe = build_pipeline(
                self.layout,
                size=self.size,
                batch_size=self.batch_size,
                device=self.device,
                device_id=self.device_id,
                num_threads=self.num_threads,
                seed=self.seed,
            )
            pipe.build()
            self._pipe = pipe
        return self._pipe

    def read_encoded(self, index: int) -> np.ndarray:
        """The file's bytes, checked against the manifest's size and checksum: a truncated or
        overwritten prepared video is an error naming it, never frames padded or decoded wrong.
        The checksum is computed once per file and process; later reads only check that the
        file's size, modification time and inode are those of the verified file."""
        t0 = time.thread_time()
        try:
            return self._read_checked(index)
        finally:
            self.host_seconds["read"] += time.thread_time() - t0

    def _read_checked(self, index: int) -> np.ndarray:
        rec = self.records[index]
        path = self.prepared / rec.path
        try:
            with open(path, "rb") as fh:
                st = os.fstat(fh.fileno())
                data = np.frombuffer(fh.read(), dtype=np.uint8)  # read-only view of the bytes, no copy
        except OSError as exc:
            raise UserError(f"cannot read {path} (manifest index {index}): {exc}; re-run `tbfast data prep`") from exc
        ident = (st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev)
        problem = None
        if rec.bytes and data.size != rec.bytes:
            problem = f"{data.size} bytes where the manifest says {rec.bytes} (truncated or replaced)"
        elif rec.blake2b and self._verified.get(index) != ident:
            if content_checksum(data.tobytes()) != rec.blake2b:
                problem = "its content differs from what `tbfast data prep` wrote (checksum mismatch)"
            else:
                self._verified[index] = ident
        if problem:
            raise CorruptVideoError(
                f"{path} (manifest index {index}): {problem}; re-run `tbfast data prep` on "
                "the same source to re-encode it, or remove it from the split list"
            )
        return data

    def _feeds(self, plans: list[SamplePlan], encoded: list[np.ndarray]) -> dict:
        """The graph's inputs for one batch: the bytes and the frames to decode (lists where their
        lengths vary), and arrays for the whole batch: the clips' frame orders
        (``GraphLayout.order_inputs``) and every clip view's parameter row (``graph.PARAMS``).
        Feeding DALI costs ~40 us per input and call: packing the 75 per-clip inputs of an SSL
        batch into two cut the host's feeding work by four."""
        lay = self.layout
        feeds: dict = {}
        for name, keys in lay.order_inputs:
            if lay.per_clip:  # (B, clips, T)
                feeds[name] = np.array([[p.orders[g][k] for g, k in keys] for p in plans], dtype=np.int32)
            else:  # (B, K*T) of the group's clips
                feeds[name] = np.array([p.orders[keys[0][0]].reshape(-1) for p in plans], dtype=np.int32)
        if lay.per_clip:
            params = np.array(
                [[p.views[g][v][k].roi + colour_row(p.views[g][v][k]) for g, v, k in lay.view_keys] for p in plans],
                dtype=np.float32,
            )
        else:
            params = np.array([[p.views[g][v][k].roi for g, v, k in lay.view_keys] for p in plans], dtype=np.float32)
        if self.decoder != "dali":  # ``encoded`` holds the decoded frames (see _prepare)
            return {"frames": encoded, "params": params, **feeds}
        lists = [p.decode for p in plans]
        decode: np.ndarray | list[np.ndarray]
        if len({len(d) for d in lists}) == 1:  # the usual case: one (B, F) array, not B arrays
            decode = np.array(lists, dtype=np.int32)
        else:
            decode = [d.astype(np.int32) for d in lists]
        return {"encoded": encoded, "decode": decode, "params": params, **feeds}

    def _prepare(self, batch: list[int], epoch: int) -> tuple[list[SamplePlan], dict]:
        """Read the files and compute the plans and feeds of one batch (Python side only)."""
        hs = self.host_seconds  # CPU time of the threads doing the work (waiting is not counted)
        if self.decoder == "dali":
            encoded = list(self._io.map(self.read_encoded, batch))
        t1 = time.thread_time()
        plans = [self.plan(i, epoch) for i in batch]
        t2 = time.thread_time()
        if self.decoder != "dali":  # read and decode the planned frames in the reader threads
            encoded = list(self._io.map(self._host_decoded, batch, plans))
        feeds = self._feeds(plans, encoded)
        hs["plan"] += t2 - t1
        hs["feed"] += time.thread_time() - t2
        self.host_videos += len(batch)
        return plans, feeds

    def _host_decoded(self, index: int, plan: SamplePlan) -> np.ndarray:
        """(len(plan.decode), H, W, 3) uint8: the planned frames of a checked file, decoded here."""
        from dali_pipelines.host_decode import HostDecodeError, decode_frames

        data = self.read_encoded(index)
        t0 = time.thread_time()
        try:
            return decode_frames(self.decoder, data, plan.decode, self.records[index].frames)
        except HostDecodeError as exc:
            raise CorruptVideoError(
                f"cannot decode {self.prepared / self.records[index].path} (manifest index "
                f"{index}): {exc}; re-encode it with `tbfast data prep` or remove it from "
                "the manifest/split list"
            ) from exc
        finally:
            self.host_seconds["decode"] += time.thread_time() - t0

    # ------------------------------------------------------------------ the host path (no DALI)
    def _host_outputs(self, plans: list[SamplePlan]) -> dict[str, np.ndarray]:
        """The batch's float32 output buffers, one (B, K*T, S, S, 3) per output field (every element
        is written by the tasks): a set from the pool that nothing references any more (the batch
        it held and every tensor viewing it are gone), else a new one. Reusing buffers saves the
        page faults of fresh memory, several ms per ssl video when two threads fault at once."""
        if self.work == "decode":
            return {}
        shapes = {}
        for name, group, _ in self.layout.outputs:
            k, t = plans[0].clips[group].shape
            shapes[name] = (len(plans), k * t, self.size, self.size, 3)
        dtype = np.uint8 if self.work == "uint8" else np.float32
        for outs in self._pool:
            if all(a.shape == shapes[n] and a.dtype == dtype for n, a in outs.items()) and _unreferenced(outs):
                return outs
        outs = {name: np.empty(shape, dtype=dtype) for name, shape in shapes.items()}
        if len(self._pool) >= POOL_SETS:
            self._pool.pop(0)
        self._pool.append(outs)
        return outs

    def _host_sample(self, index: int, plan: SamplePlan, outs: dict[str, np.ndarray], j: int) -> None:
        """Sample ``j`` of a batch on the host path, in a reader thread: read and decode its planned
        frames, cut, crop, flip and resize every clip view (uint8), then write its colour (or x/255),
        the clamp, its erase boxes and dropped channel into row ``j`` of the output buffers."""
        from dali_pipelines.host_decode import crop_resize
        from dali_pipelines.host_pixels import IDENTITY, affine_row, colour_into
        from tbfast.data.plans import colour_affine

        frames = self._host_decoded(index, plan)
        if self.work == "decode":
            return
        per_clip, size = self.layout.per_clip, self.size
        colour = self.work == "full"
        t0 = time.thread_time()
        for name, group, view in self.layout.outputs:
            o = outs[name][j]  # (K*T, S, S, 3)
            orders = plan.orders[group]  # (K, T)
            t = orders.shape[1]
            # per clip view (augmented), else one crop for all the group's clips and no colour
            views = plan.views[group][view] if per_clip else [plan.views[group][view][0]]
            for k, c in enumerate(views):
                clip = o[k * t : (k + 1) * t] if per_clip else o
                u8 = crop_resize(frames, orders[k] if per_clip else orders.reshape(-1), c.roi, size)
                if self.work == "uint8":
                    clip[:] = u8
                    continue
                colour_into(u8, affine_row(*colour_affine(c)) if per_clip and colour else IDENTITY, clip)
                if per_clip:
                    for y, x, h, w in c.erase:  # METHOD.md §3: after the colour jitter
                        clip[:, y : y + h, x : x + w, :] = 0
                    if c.drop_channel >= 0:
                        clip[..., c.drop_channel] = 0
        self.host_seconds["pixels"] += time.thread_time() - t0

    def _iter_host(self, batches: list[list[int]], epoch: int) -> Iterator[dict]:
        """The host path's epoch: each sample is one task for the reader threads; the next batch is
        submitted before waiting for the current one, so the threads work while the consumer does."""
        hs = self.host_seconds
        pending: collections.deque = collections.deque()  # (batch, plans, outputs, futures, arrays)

        def submit(batch: list[int]) -> None:
            t0 = time.thread_time()
            plans = [self.plan(i, epoch) for i in batch]
            t1 = time.thread_time()
            outs = self._host_outputs(plans)
            futures = [self._io.submit(self._host_sample, i, p, outs, j) for j, (i, p) in enumerate(zip(batch, plans))]
            hs["plan"] += t1 - t0
            hs["feed"] += time.thread_time() - t1
            self.host_videos += len(batch)
            # (the arrays, listed: a pending set is referenced, so the pool never hands it out twice)
            pending.append((batch, plans, outs, futures, list(outs.values())))

        nxt = 0
        try:
            for n in range(len(batches)):
                while nxt < len(batches) and nxt <= n + 1:
                    submit(batches[nxt])
                    nxt += 1
                batch, plans, outs, futures, _ = pending.popleft()
                for f in futures:
                    f.result()  # a task's CorruptVideoError (naming the file) is raised here
                t0 = time.thread_time()
                tensors = [_from_numpy(outs[name]) for name, _, _ in self.layout.outputs] if outs else []
                out = self._assemble(tensors, batch, plans)
                hs["hand_over"] += time.thread_time() - t0
                yield out
        finally:  # abandoned mid-epoch: drop the tasks that have not started, wait for the others
            running = [f for *_, futures, _ in pending for f in futures if not f.cancel()]
            cf.wait(running)  # (they write into buffers the pool may hand out again)

    def _submit(self, pipe, feeds: dict) -> None:
        t0 = time.thread_time()
        # DALI's public feed_input first scans every operator of the graph to refuse sources that
        # have a callback (ours have none), which made feeding the SSL graph's 77 inputs cost more
        # than planning; its checked internal entry point does the same feeding without the scan
        feed = getattr(pipe, "_feed_input", None) or pipe.feed_input
        for name, data in feeds.items():
            feed(name, data)
        # host-decoded frames go in without a copy (``no_copy``): keep them alive until the
        # pipeline has returned that iteration's outputs (released in __iter__, oldest first)
        self._held.append(feeds.get("frames"))
        pipe.schedule_run()
        self.host_seconds["feed"] += time.thread_time() - t0

    def _locate_corrupt(self, batch: list[int], plans: list[SamplePlan], exc: Exception) -> CorruptVideoError:
        """Decode each sample of the failed batch alone to name the broken file(s)."""
        from dali_pipelines.probe import dali_reason, probe_decode

        bad = []
        for i, p in zip(batch, plans):
            err = probe_decode(self.read_encoded(i), p.decode)
            if err is not None:
                bad.append(f"{self.prepared / self.records[i].path} (manifest index {i}): {err}")
        detail = "; ".join(bad) if bad else f"one of {[self.records[i].path for i in batch]} ({dali_reason(exc)})"
        return CorruptVideoError(
            f"cannot decode {detail}; re-encode it with `tbfast data prep` or remove it from the manifest/split list"
        )

    def __iter__(self) -> Iterator[dict]:
        batches = list(self.batches()[self.start_batch :])
        epoch = self.epoch
        self.start_batch = 0  # a resume skips once; the next pass is the whole epoch
        if not batches:
            return
        if self.resize == "host":
            yield from self._iter_host(batches, epoch)
            return
        pipe = self._pipeline()
        # DALI runs batch i while Python reads and plans batch i+1 (and the consumer uses i-1)
        plans, feeds = self._prepare(batches[0], epoch)
        self._submit(pipe, feeds)
        in_flight = 1
        upcoming = self._prepare(batches[1], epoch) if len(batches) > 1 else None
        try:
            for n, batch in enumerate(batches):
                try:
                    outs = pipe.outputs(**self._stream())
                    in_flight -= 1
                    self._held.popleft()
                except Exception as exc:  # DALI reports decoder failures as RuntimeError/IndexError
                    self._pipe, in_flight = None, 0  # a pipeline with a critical error is not reusable
                    self._held.clear()
                    raise self._locate_corrupt(batch, plans, exc) from exc
                current = plans
                if upcoming is not None:
                    plans, feeds = upcoming
                    self._submit(pipe, feeds)
                    in_flight += 1
                t0, pix0 = time.thread_time(), self.host_seconds["pixels"]
                out = self._to_batch(outs, batch, current)
                pixels = self.host_seconds["pixels"] - pix0  # counted on its own, not twice
                self.host_seconds["hand_over"] += time.thread_time() - t0 - pixels
                yield out
                upcoming = self._prepare(batches[n + 2], epoch) if n + 2 < len(batches) else None
        finally:
            if in_flight:  # abandoned mid-epoch: drain what is in flight so the pipeline stays usable
                try:
                    for _ in range(in_flight):
                        pipe.outputs()
                        self._held.popleft()
                except Exception:
                    self._pipe = None
                    self._held.clear()

    # ------------------------------------------------------------------ torch hand-over
    def _stream(self) -> dict:
        """GPU: make DALI's outputs ready on torch's current stream (no host synchronisation)."""
        if self.device != "gpu":
            return {}
        import torch

        return {"cuda_stream": torch.cuda.current_stream(self.device_id).cuda_stream}

    def _tensor(self, out):
        import torch

        if self.device == "gpu":
            t = torch.from_dlpack(out.as_tensor())
        else:
            t = torch.from_numpy(np.asarray(out.as_tensor()))
        return t  # (B, K*T, S, S, 3)

    @staticmethod
    def _finish_augment(t, boxes: list[tuple]) -> None:
        """Clamp to [0, 1] (colour jitter can overshoot) and zero the random-erase boxes and dropped
        channels (METHOD.md §3: after the colour jitter), in place on DALI's (B, K*T, S, S, 3) output
        buffer: a DALI erase would copy the whole float tensor to change a few boxes."""
        if t.device.type == "cpu":  # numpy: one thread, no OpenMP workers spinning beside DALI's
            a = t.numpy()
            np.clip(a, 0.0, 1.0, out=a)
        else:
            a = t.clamp_(0.0, 1.0)
        for i, f0, f1, y0, y1, x0, x1, c0, c1 in boxes:
            a[i, f0:f1, y0:y1, x0:x1, c0:c1] = 0

    def _to_batch(self, outs, batch: list[int], plans: list[SamplePlan]) -> dict:
        tensors = []
        for (_, group, view), out in zip(self.layout.outputs, outs):
            t = self._tensor(out)
            if self.layout.per_clip:  # in place, on the output buffer (see _finish_augment)
                boxes = erase_boxes(plans, group, view, self.size)
                t0 = time.thread_time()
                self._finish_augment(t, boxes)
                self.host_seconds["pixels"] += time.thread_time() - t0
            tensors.append(t)
        return self._assemble(tensors, batch, plans)

    def _assemble(self, tensors: list, batch: list[int], plans: list[SamplePlan]) -> dict:
        """The batch dict from one (B, K*T, S, S, 3) tensor per output field (no copy)."""
        import torch

        b = len(batch)
        res: dict = {}
        for (name, group, _), t in zip(self.layout.outputs, tensors):
            k = plans[0].clips[group].shape[0]
            t = t.reshape(b * k, t.shape[1] // k, *t.shape[2:])  # a view: clips are contiguous in F
            res[name] = t.permute(0, 4, 1, 2, 3)  # NTHWC -> logical NCTHW, memory channels_last_3d
        res["label"] = torch.tensor([self.records[i].label for i in batch], dtype=torch.int64)
        res["index"] = torch.tensor(batch, dtype=torch.int64)
        if self.mode == "ssl":
            res["frames_long"] = torch.from_numpy(np.stack([p.clips["long"][0] for p in plans]))
            res["frames_short"] = torch.from_numpy(np.stack([p.clips["short"] for p in plans]))
        elif self.mode == "train":
            res["frames"] = torch.from_numpy(np.stack([p.clips["clip"][0] for p in plans]))
        else:
            res["frames"] = torch.from_numpy(np.stack([p.clips["clip"] for p in plans]))
        return res

    def close(self) -> None:
        self._pipe = None
        self._io.shutdown(wait=False)


def build_loader(
    prepared,
    mode: str,
    *,
    indices: Sequence[int] | None = None,
    split: str = "train",
    batch_size: int = 8,
    size: int = 112,
    device: str = "cpu",
    device_id: int | None = None,
    num_threads: int = 2,
    seed: int = 0,
    shard_id: int = 0,
    num_shards: int = 1,
    augment: bool = True,
    spec: ClipSpec | None = None,
    **kwargs,
) -> ClipLoader:
    """A DALI clip loader over ``prepared`` for ``mode`` in ssl | train | eval | similarity.

    Extra keyword arguments: ``drop_last``, ``shuffle`` (defaults: True for ssl/train, False for
    eval/similarity), ``records`` (an already read manifest) and ``decoder`` ("dali", or a host
    decoder: "pyav", "torchcodec"; see host_decode), ``resize`` ("auto", "dali", "host": on the CPU a
    host decoder's frames are cut, resized and coloured on the host, without DALI) and ``work``
    (the host path's work, for benchmarks: see ``WORKS``).
    """
    return ClipLoader(
        prepared,
        mode,
        indices=indices,
        split=split,
        batch_size=batch_size,
        size=size,
        device=device,
        device_id=device_id,
        num_threads=num_threads,
        seed=seed,
        shard_id=shard_id,
        num_shards=num_shards,
        augment=augment,
        spec=spec,
        **kwargs,
    )
