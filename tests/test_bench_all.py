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
