"""Manifest API: round trip, errors a user can act on."""
from __future__ import annotations

import pytest

from tbfast.data.manifest import (VideoRecord, read_classes, read_manifest, split_indices, write_classes,
                                  write_manifest)
from tbfast.errors import UserError


def test_round_trip_and_split_indices(tmp_path):
    recs = [VideoRecord("videos/a/x.webm", 0, "a", "train", 70, 25.0, 32, 24, "a/x.avi", []),
            VideoRecord("videos/b/y.webm", 1, "b", "test", 10, 29.97, 32, 24, "b/y.avi", ["short"])]
    write_manifest(tmp_path, recs)
    write_classes(tmp_path, ["a", "b"])
    assert read_manifest(tmp_path) == recs and read_classes(tmp_path) == ["a", "b"]
    assert split_indices(recs, "train") == [0] and split_indices(recs, "test") == [1]
    with pytest.raises(UserError):
        split_indices(recs, "val")
    assert not list(tmp_path.glob(".*tmp*"))  # atomic writes leave no temporaries


def test_missing_and_broken(tmp_path):
    with pytest.raises(UserError, match="tbfast data prep"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.jsonl").write_text('{"path": "x"}\n')
    with pytest.raises(UserError, match=":1:"):
        read_manifest(tmp_path)
