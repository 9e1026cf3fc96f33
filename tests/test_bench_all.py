import json

from tbfast.cli import main


def test_bench_all_quick_gathers_parts(tmp_path):
    out = tmp_path / "bench"
    rc = main(["bench", "all", "--quick", "--skip", "loader", "step", "shared", "recipe", "--out", str(out)])
    assert rc == 0
    res = json.loads((out / "results.json").read_text())
    assert res["status"]["losses"]["rc"] == 0
    impls = {(r["loss"], r["impl"]) for r in res["losses"]["results"]}
    assert ("ssl", "reference") in impls and ("ssl", "fused") in impls
    md = (out / "RESULTS.md").read_text()
    assert "## Losses" in md and res["machine"]["cpu"] in md
    png = (out / "speedups.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 2000


def test_failed_part_is_reported_not_hidden(tmp_path, monkeypatch):
    from tbfast_benchmarks import all as bench_all

    monkeypatch.setattr(bench_all, "_tbfast", lambda args, log: (3, 0.1))
    rc = main(["bench", "all", "--quick", "--skip", "loader", "step", "shared", "recipe", "--out", str(tmp_path)])
    assert rc == 1
    md = (tmp_path / "RESULTS.md").read_text()
    assert "part `losses` FAILED (exit 3)" in md


def test_recipe_section_carries_intervals_tests_and_the_seed_verdict():
    from tbfast_benchmarks.all import render_markdown

    rec = {
        "preset": "synthetic_tiny",
        "fraction": 0.5,
        "test_videos": 252,
        "top1_all": {"supervised": 48.81, "timebalance": 60.32},
        "top1_ci95": {"supervised": [42.7, 55.0], "timebalance": [54.2, 66.2]},
        "timebalance_paired": {
            "supervised": {"only_timebalance": 44, "only_other": 15, "p": 0.0002, "verdict": "TimeBalance better"}
        },
        "seeds": {
            "seeds": [0, 1, 2],
            "mean": {"supervised": 49.6, "timebalance": 58.2},
            "std": {"supervised": 5.6, "timebalance": 1.84},
            "verdict": "Over 3 seeds: no claim.",
        },
    }
    md = render_markdown({"machine": {"cpu": "x"}, "date": "d", "status": {}, "recipe": rec})
    assert "| timebalance | 60.32 | 54.2–66.2 |" in md
    assert "supervised 44 vs 15 videos, p = 0.000 (TimeBalance better)" in md
    assert "timebalance 58.20 ± 1.84" in md and "**Verdict.** Over 3 seeds: no claim." in md
