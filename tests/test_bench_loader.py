"""`tbfast bench loader` and its baselines on tiny frame-coded videos (smoke test, not timed)."""

import json

import numpy as np
import pytest

pytest.importorskip("nvidia.dali")

from dali_pipelines.testdata import decode_index, make_dataset  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("bench_tiny"), [70, 40, 90, 64, 50, 30], width=48, height=32)


def test_baselines_deliver_the_planned_frames(tiny):
    from tbfast.data.manifest import read_manifest
    from tbfast.data.plans import default_spec, plan_sample
    from tbfast_benchmarks.baselines import PerClip, ReferenceStyle

    records = read_manifest(tiny)
    for mode, cls in (("ssl", PerClip), ("eval", PerClip), ("ssl", ReferenceStyle)):
        spec = default_spec(mode)
        ds = cls(tiny, records, [0, 1], spec, 16, seed=1, augment=False)
        for i in range(len(ds)):
            item = ds[i]
            r = records[item["index"]]
            p = plan_sample(item["index"], r.frames, r.height, r.width, spec=spec, size=16, seed=1, augment=False)
            name, group = ("short0", "short") if mode == "ssl" else ("clip", "clip")
            clips = item[name].reshape(-1, 3, spec.clip_len, 16, 16)
            got = [[decode_index(c[:, t].permute(1, 2, 0).numpy()) for t in range(c.shape[1])] for c in clips]
            assert np.array_equal(np.array(got), p.clips[group]), (cls.__name__, mode)


def test_bench_loader_cli_writes_table_and_json(tiny, tmp_path, capsys):
    from tbfast.cli import main

    out = tmp_path / "bench.json"
    rc = main(
        [
            "bench",
            "loader",
            str(tiny),
            "--mode",
            "ssl",
            "--videos",
            "2",
            "--batch-size",
            "2",
            "--size",
            "16",
            "--workers",
            "1",
            "--json",
            str(out),
            "--loaders",
            "dali,decode,perclip,reference",
        ]
    )
    assert rc == 0
    report = json.loads(out.read_text())
    assert set(report["results"]) == {"dali", "decode", "perclip", "reference"}
    for r in report["results"].values():
        assert r["videos"] >= 2 and r["videos_per_s"] > 0
    assert "dali_over_reference" in report["ratios"] and report["machine"]["cores"] >= 1
    assert "videos/s" in capsys.readouterr().out


def test_data_show_writes_sheet_and_dump(tiny, tmp_path):
    from tbfast.cli import main

    sheet, dump = tmp_path / "s.png", tmp_path / "s.npz"
    assert (
        main(
            [
                "data",
                "show",
                str(tiny),
                "--mode",
                "eval",
                "--index",
                "1",
                "--size",
                "16",
                "--out",
                str(sheet),
                "--dump",
                str(dump),
            ]
        )
        == 0
    )
    assert sheet.stat().st_size > 1000
    d = np.load(dump)
    assert d["clip"].shape == (10, 3, 8, 16, 16) and d["frames"].shape == (1, 10, 8)
    assert main(["data", "show", str(tiny), "--mode", "ssl", "--index", "99", "--out", str(sheet)]) == 2
