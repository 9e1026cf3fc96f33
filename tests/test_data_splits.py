"""Label splits: class balance, disjointness, reproducibility, METHOD.md §7 fractions."""

from __future__ import annotations

import hashlib

import pytest

from tbfast.cli import main
from tbfast.data.manifest import VideoRecord, read_manifest, read_split_list, write_manifest
from tbfast.data.splits import make_label_split, parse_fraction, pct_tag, split_names, write_label_split
from tbfast.errors import UserError


def _records(counts=(120, 95, 101, 7, 2), test_every=4):
    recs = []
    for c, n in enumerate(counts):
        for i in range(n):
            split = "test" if i % test_every == 0 else "train"
            recs.append(VideoRecord(f"videos/c{c}/v{i:03d}.webm", c, f"c{c}", split, 80, 25.0, 32, 24))
    return recs


@pytest.mark.parametrize("fraction", ["1%", "5%", "10%", "20%", "40%", "50%", "60%", "1", "0.01"])
def test_balanced_disjoint_complete(fraction):
    recs = _records()
    lab, unl = make_label_split(recs, fraction, seed=0)
    train = {i for i, r in enumerate(recs) if r.split == "train"}
    assert set(lab).isdisjoint(unl) and set(lab) | set(unl) == train
    assert lab == sorted(lab) and unl == sorted(unl)
    f = parse_fraction(fraction)
    for c in range(5):
        n_c = sum(1 for i in train if recs[i].label == c)
        k = sum(1 for i in lab if recs[i].label == c)
        assert k >= 1 and abs(k - f * n_c) <= max(0.5, 1 - f * n_c)


def test_reproducible_nested_and_seeded():
    recs = _records()
    assert make_label_split(recs, 0.1, 3) == make_label_split(recs, 0.1, 3)
    assert make_label_split(recs, 0.1, 3)[0] != make_label_split(recs, 0.1, 4)[0]
    small, big = set(make_label_split(recs, 0.05, 3)[0]), set(make_label_split(recs, 0.2, 3)[0])
    assert small < big


def test_parse_fraction_and_names():
    assert parse_fraction("5%") == 0.05 and parse_fraction("0.5") == 0.5 and parse_fraction(1) == 1.0
    for bad in ("0", "1.5", "150%", "abc", "-0.1", "nan"):
        with pytest.raises(UserError):
            parse_fraction(bad)
    assert pct_tag(0.05) == "5" and pct_tag(0.005) == "0.5" and pct_tag(1.0) == "100" and pct_tag(0.1) == "10"
    assert split_names(0.01, 7) == ("labeled_1pct_seed7.txt", "unlabeled_1pct_seed7.txt")


def test_files_byte_reproducible_and_read_back(tmp_path):
    recs = _records()
    write_manifest(tmp_path, recs)
    lab, unl, digest = write_label_split(tmp_path, "10%", 1)
    first = lab.read_bytes(), unl.read_bytes()
    lab.unlink()
    lab2, unl2, digest2 = write_label_split(tmp_path, 0.1, 1)
    assert (lab2, unl2, digest2) == (lab, unl, digest) and (lab.read_bytes(), unl.read_bytes()) == first
    assert digest == hashlib.sha256(first[0] + first[1]).hexdigest()
    lines = first[0].decode().splitlines()
    assert lines == sorted(lines) and first[0].endswith(b"\n") and b"\r" not in first[0]
    assert read_split_list(tmp_path, lab.name) == make_label_split(recs, 0.1, 1)[0]
    (tmp_path / "splits" / "other.txt").write_text("videos/nope.webm\n")
    with pytest.raises(UserError, match="not in"):
        read_split_list(tmp_path, "other.txt")


def test_cli_prints_checksum(prepared, prepared_split, capsys):
    lab, unl = prepared_split
    before = lab.read_bytes()
    assert main(["data", "splits", str(prepared), "--fraction", "50%", "--seed", "0"]) == 0
    out = capsys.readouterr().out
    digest = hashlib.sha256(lab.read_bytes() + unl.read_bytes()).hexdigest()
    assert digest in out and "4 labeled / 4 unlabeled" in out and lab.read_bytes() == before
    recs = read_manifest(prepared)
    assert sorted({recs[i].label for i in read_split_list(prepared, lab)}) == [0, 1, 2, 3]
    assert main(["data", "splits", str(prepared), "--fraction", "2"]) == 2
