"""One decode, many models: several trainers driven from one decoded, augmented data stream.

Every random choice of a loader is a pure function of (seed, epoch, video), so runs with the same
data settings see the very same batches. A shared pass builds each model exactly as its stage would
alone (its own config, optimiser, schedule, checkpoints, metrics and run directory) and then steps
them in turn through :meth:`Trainer.fit_steps`:

- loaders with identical settings are built once (:class:`LoaderPool`); every model reads them
  through a :class:`LoaderView` that asks the shared :class:`SharedStream` for batch (epoch, i),
  which decodes it once and hands the same tensors to each model at that position;
- the model with the fewest steps goes first, so models that resumed from different checkpoints
  catch up alone (the stream seeks back for them) and share again once level;
- each model keeps its own torch/Python/NumPy RNG state, swapped in around its steps, so dropout or
  any other draw is the one it would make alone;
- frozen teachers are loaded once and a teacher's predictions for one batch are computed once
  (``tasks.Teacher`` remembers the last batch it saw).

So each model ends bit-identical to the same stage run alone (tests/test_shared_pass.py).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Callable, Iterator

from tbfast.engine import checkpoint as ck
from tbfast.errors import UserError


class SharedStream:
    """Batches of one loader by position: decodes (epoch, i) once while every model at that position
    takes it; moving on (or back) drops it. Counts batches decoded and served."""

    def __init__(self, loader):
        self.loader = loader
        self._it: Iterator[dict] | None = None
        self._key: tuple[int, int] | None = None
        self._next: tuple[int, int] | None = None
        self._batch: dict | None = None
        self.decoded = 0  # batches decoded
        self.served = 0  # batches handed to models
        self.seeks = 0  # times the stream restarted away from its next position

    def get(self, epoch: int, i: int) -> dict:
        key = (int(epoch), int(i))
        self.served += 1
        if key == self._key:
            return self._batch
        self._batch = None
        if key != self._next or self._it is None:  # a new epoch, or a model catching up: restart there
            if self.decoded and key != self._next:
                self.seeks += 1
            self.close()
            self.loader.set_epoch(*key)
            self._it = iter(self.loader)
        self._batch = next(self._it)
        self._key = key
        self.decoded += 1
        if key[1] + 1 < len(self.loader.batches(key[0])):
            self._next = (key[0], key[1] + 1)
        else:  # the epoch's last batch: the next one starts a new pass of the loader
            self._next = (key[0] + 1, 0)
            self._it.close()
            self._it = None
        return self._batch

    def close(self) -> None:
        if self._it is not None:
            self._it.close()  # drains what DALI has in flight, keeping its pipeline usable
        self._it, self._key, self._next, self._batch = None, None, None, None


class LoaderView:
    """What a task sees instead of a loader: ``len``, ``set_epoch``, ``batches``, iteration (batches
    come from the shared stream); any other attribute is the loader's."""

    def __init__(self, stream: SharedStream):
        self.stream = stream
        self.epoch, self.start_batch = 0, 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = int(epoch), int(start_batch)

    def batches(self, epoch: int | None = None) -> list[list[int]]:
        return self.stream.loader.batches(self.epoch if epoch is None else epoch)

    def __len__(self) -> int:
        return len(self.batches())

    def __iter__(self) -> Iterator[dict]:
        epoch, start = self.epoch, self.start_batch
        self.start_batch = 0  # as the loader: a resume skips once
        for i in range(start, len(self.batches(epoch))):
            yield self.stream.get(epoch, i)

    def __getattr__(self, name: str):
        return getattr(self.stream.loader, name)


class LoaderPool:
    """Builds each distinct loader once; ``get`` returns a fresh view of it."""

    def __init__(self):
        self.streams: dict[str, SharedStream] = {}
        self.views = 0

    @staticmethod
    def key(**settings) -> str:
        records = settings.pop("records", None)
        blob = repr(sorted((k, repr(v)) for k, v in settings.items()))
        if records is not None:
            blob += repr([(r.path, r.frames, r.label, getattr(r, "blake2b", "")) for r in records])
        return hashlib.sha256(blob.encode()).hexdigest()

    def get(self, build: Callable[[], object], **settings) -> LoaderView:
        k = self.key(**settings)
        if k not in self.streams:
            self.streams[k] = SharedStream(build())
        self.views += 1
        return LoaderView(self.streams[k])

    def counts(self) -> dict:
        """Batches decoded and served over all streams (served - decoded = decodes saved)."""
        return {
            "loaders": len(self.streams),
            "views": self.views,
            "decoded": sum(s.decoded for s in self.streams.values()),
            "served": sum(s.served for s in self.streams.values()),
            "seeks": sum(s.seeks for s in self.streams.values()),
        }

    def close(self) -> None:
        for s in self.streams.values():
            s.close()


@dataclass
class Member:
    """One model of a shared pass: its trainer and how its stage turns the fit into a summary."""

    name: str
    trainer: object  # tbfast.engine.trainer.Trainer
    summarize: Callable[[object], dict]  # FitResult -> the stage's summary (written to summary.json)
    rng: dict = field(default_factory=ck.rng_state)  # the global RNG state right after it was built


@dataclass
class PassResult:
    summaries: dict[str, dict]
    errors: dict[str, Exception]
    counts: dict


def _total_steps(tr) -> int:
    tc = tr.cfg.train
    total = tc.epochs * tr.steps_per_epoch
    return min(total, tc.max_steps) if tc.max_steps else total


def fit_together(
    members: list[Member],
    *,
    log: Callable[[str], None] = lambda s: None,
    pool: LoaderPool | None = None,
    progress: bool = True,
) -> PassResult:
    """Train every member to the end, one step at a time, the one with the fewest steps first.

    A member that stops with an error a user can act on (a non-finite loss, a corrupt video) is
    reported and dropped; the others go on. Anything else (Ctrl-C) stops all of them, each with the
    checkpoints it has written (``--resume auto`` continues every one)."""
    from tbfast.engine.metrics import ProgressView

    names = [m.name for m in members]
    if len(set(names)) != len(names):
        raise ValueError(f"the models of a shared pass need distinct names, got {names}")
    gens = {m.name: m.trainer.fit_steps() for m in members}
    by_name = {m.name: m for m in members}
    active = [m.name for m in members]
    results: dict[str, object] = {}
    errors: dict[str, Exception] = {}
    total = sum(_total_steps(m.trainer) for m in members)
    start = sum(min(m.trainer.step, _total_steps(m.trainer)) for m in members)
    main = all(m.trainer.main for m in members)
    view = ProgressView(
        progress and main and all(m.trainer.cfg.train.progress for m in members), f"{len(members)} models"
    )
    view.start(f"{len(members)} models, one data pass", total, start)
    done = start
    try:
        while active:
            low = min(by_name[n].trainer.step for n in active)
            for name in [n for n in active if by_name[n].trainer.step == low]:
                m = by_name[name]
                ck.set_rng_state(m.rng)
                before = m.trainer.step
                try:
                    next(gens[name])
                except StopIteration as stop:
                    results[name] = stop.value
                    active.remove(name)
                except UserError as exc:
                    errors[name] = exc
                    active.remove(name)
                    log(f"[{name}] stopped: {exc}")
                finally:
                    m.rng = ck.rng_state()
                done += max(0, m.trainer.step - before)
            view.update(done, f"{len(active)} training, step {low + 1}")
    except BaseException:
        for g in gens.values():
            g.close()  # each releases its run directory's lock
        for m in members:
            m.trainer.close()
        raise
    finally:
        view.close()
        if pool is not None:
            pool.close()
    summaries = {}
    for name, res in results.items():
        summaries[name] = by_name[name].summarize(res)
    return PassResult(summaries, errors, pool.counts() if pool is not None else {})
