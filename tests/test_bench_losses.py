import json

from tbfast.cli import main


def test_bench_losses_quick_writes_valid_json(tmp_path):
    out = tmp_path / "losses.json"
    assert main(["bench", "losses", "--quick", "--device", "cpu", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["benchmark"] == "losses" and res["device"] == "cpu"
    rows = res["results"]
    ssl = {r["impl"]: r for r in rows if r["loss"] == "ssl"}
    assert set(ssl) == {"reference", "fused"}
    assert all(r["peak_mib"] > 0 for r in ssl.values())
    assert {r["loss"] for r in rows} == {"ssl", "distill-l2", "distill-kl", "distill-js"}
    for r in rows:
        assert r["ms_median"] > 0 and r["batch"] > 0
        assert (r["peak_mib"] is None) == (r["loss"] != "ssl")  # --quick measures the SSL memory only
        assert r["abs_diff_vs_reference"] < 1e-4  # fused and reference agree on the measured batch
