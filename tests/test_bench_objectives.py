import json
import math

import pytest
import yaml

from tbfast.cli import main


def _fake_run(d, reduction, grouped, tb):
    (d / "invariant").mkdir(parents=True)
    (d / "distinctive").mkdir()
    (d / "invariant" / "config.yaml").write_text(
        yaml.safe_dump({"loss": {"reduction": reduction}, "model": {"group_bn": grouped}, "data": {"batch_size": 8}})
    )
    (d / "invariant" / "metrics.jsonl").write_text(
        "".join(json.dumps({"kind": "epoch", "epoch": e, "loss": 10.0 - e, "L_I": 10.0 - e}) + "\n" for e in (1, 2, 3))
    )
    (d / "distinctive" / "metrics.jsonl").write_text(
        json.dumps({"kind": "epoch", "epoch": 1, "loss": 5.0, "L_D1": 2.0, "L_D2": 3.0}) + "\n"
    )
    (d / "results.json").write_text(
        json.dumps({"top1_all": {"timebalance": tb, "supervised": 40.0}, "test_videos": 252, "total_seconds": 100.0})
    )


def test_collect_gathers_finished_runs_and_refuses_a_mislabelled_one(tmp_path, capsys):
    _fake_run(tmp_path / "reference_grouped", "reference", True, 60.32)
    _fake_run(tmp_path / "mean_mixed", "mean", False, 52.78)
    assert (
        main(
            [
                "bench",
                "objectives",
                "--out",
                str(tmp_path),
                "--collect",
                "--variants",
                "reference_grouped",
                "mean_mixed",
            ]
        )
        == 0
    )
    md = (tmp_path / "objectives.md").read_text()
    assert "| reference | per clip group | 40.00 | - | - | 60.32 |" in md
    assert "| mean | one set (mixed) | 40.00 | - | - | 52.78 |" in md
    res = json.loads((tmp_path / "objectives.json").read_text())
    assert res["variants"]["mean_mixed"]["curves"]["invariant"]["L_I"] == [9.0, 8.0, 7.0]
    assert (tmp_path / "ssl_curves.png").stat().st_size > 10_000
    # a folder whose runs were trained otherwise than its name says is refused
    _fake_run(tmp_path / "mean_grouped", "reference", True, 1.0)
    with pytest.raises(SystemExit, match="was not trained as mean_grouped"):
        main(["bench", "objectives", "--out", str(tmp_path), "--collect", "--variants", "mean_grouped"])


def test_chance_levels_follow_the_reductions():
    from tbfast_benchmarks.objectives import _chance

    assert _chance("L_I", "mean", 8) == pytest.approx(2 * math.log(15))
    assert _chance("L_I", "reference", 8) == pytest.approx(15 * math.log(15))
    assert _chance("L_D1", "reference", 8) == pytest.approx(8 * math.log(7))
    assert _chance("L_D2", "mean", 8) == pytest.approx(2 * math.log(4))
    assert _chance("L_D2", "reference", 8) == pytest.approx(16 * math.log(4))
