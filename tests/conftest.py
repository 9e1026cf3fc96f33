"""Shared pytest fixtures (session-scoped, built once in a temporary folder).

* ``synth_src`` -> Path: a tiny synthetic source in UCF101's official layout
  (``UCF-101/<Class>/v_<Class>_gGG_cCC.avi`` + ``ucfTrainTestlist/``): 4 classes
  (Square, Ring, MoveUp, MoveDown; the last two are time reversals of each other) x 4 videos,
  32x24 px, 20-70 frames (some shorter than 64, flagged ``short`` after prep), 25 fps.
  Groups 1 and 7 are test, 13 and 19 train: 8 train / 8 test videos.
* ``prepared`` -> Path: ``synth_src`` after ``tbfast data prep --format ucf101 --short-side 24``
  (VP9 .webm, 32x24, GOP 16) with ``manifest.jsonl``, ``classes.txt``, ``prep_report.json`` and
  the split files ``splits/labeled_50pct_seed0.txt`` / ``splits/unlabeled_50pct_seed0.txt``
  (one labeled train video per class).
* ``prepared_split`` -> (labeled Path, unlabeled Path): those two split files.

Treat both folders as read-only (they are shared by the whole session); copy them to
``tmp_path`` before changing anything.
"""

from __future__ import annotations

from pathlib import Path

import pytest

SYNTH_OPTIONS = dict(classes=4, videos_per_class=4, size=(32, 24), frames=(20, 70), seed=0, short_fraction=0.0)


@pytest.fixture(scope="session")
def synth_src(tmp_path_factory) -> Path:
    from tbfast.data.synthetic import make_synthetic_dataset

    return make_synthetic_dataset(tmp_path_factory.mktemp("synth_src"), **SYNTH_OPTIONS)


@pytest.fixture(scope="session")
def prepared(synth_src, tmp_path_factory) -> Path:
    from tbfast.data.prep import prepare
    from tbfast.data.splits import write_label_split

    out = tmp_path_factory.mktemp("prepared")
    report = prepare(synth_src, out, "ucf101", short_side=24, workers=1, show_progress=False)
    assert report["counts"]["failed"] == 0, report["failures"]
    write_label_split(out, 0.5, 0)
    return out


@pytest.fixture(scope="session")
def prepared_split(prepared) -> tuple[Path, Path]:
    from tbfast.data.splits import split_names

    lab, unl = split_names(0.5, 0)
    return prepared / "splits" / lab, prepared / "splits" / unl


@pytest.fixture
def one_torch_thread():
    """Tiny tensors: one torch thread avoids OpenMP stalls on a busy 2-core machine (restored after)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def pytest_collection_modifyitems(config, items):
    """Tests marked ``gpu`` skip (saying why) where torch sees no CUDA device."""
    gpu = [item for item in items if item.get_closest_marker("gpu")]
    if not gpu:
        return
    import torch

    if not torch.cuda.is_available():
        skip = pytest.mark.skip(reason="needs CUDA (the GPU path is unverified without one)")
        for item in gpu:
            item.add_marker(skip)
