"""Manifest API: round trip, errors a user can act on."""

from __future__ import annotations

import pytest

from tbfast.data.manifest import VideoRecord, read_classes, read_manifest, split_indices, write_classes, write_manifest
from tbfast.errors import UserError


def test_round_trip_and_split_indices(tmp_path):
    recs = [
        VideoRecord("videos/a/x.webm", 0, "a", "train", 70, 25.0, 32, 24, "a/x.avi", []),
        VideoRecord("videos/b/y.webm", 1, "b", "test", 10, 29.97, 32, 24, "b/y.avi", ["short"]),
    ]
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


def test_one_rule_finds_a_split_list_for_every_command(tmp_path, monkeypatch):
    from tbfast.data.manifest import resolve_split_list

    prepared = tmp_path / "prep"
    (prepared / "splits").mkdir(parents=True)
    (prepared / "splits" / "lab.txt").write_text("a\n")
    (prepared / "own.txt").write_text("a\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "lab.txt").write_text("b\n")
    monkeypatch.chdir(tmp_path)
    assert resolve_split_list(prepared, "lab.txt") == prepared / "splits" / "lab.txt"
    assert resolve_split_list(prepared, "own.txt") == prepared / "own.txt"
    # a path as given wins (absolute or relative to the working directory)
    assert resolve_split_list(prepared, "elsewhere/lab.txt") == __import__("pathlib").Path("elsewhere/lab.txt")
    assert resolve_split_list(prepared, elsewhere / "lab.txt") == elsewhere / "lab.txt"
    # a path that is not there, whose name is in PREPARED/splits: that one
    assert resolve_split_list(prepared, tmp_path / "gone" / "lab.txt") == prepared / "splits" / "lab.txt"
    assert resolve_split_list(prepared, "missing.txt") is None
