"""`tbfast bench teachers`: the teachers' mixture against each teacher, from a run's SSL models."""

import json

from tbfast.cli import main

TINY = ["--preset", "synthetic_tiny", "--size", "16", "--no-progress", "--device", "cpu", "--threads", "1"]


def test_bench_teachers_fine_tunes_evaluates_and_mixes(prepared, tmp_path):
    run = tmp_path / "run"
    for stage in ("invariant", "distinctive"):
        assert (
            main(
                [
                    "train",
                    stage,
                    "--data",
                    str(prepared),
                    "--out",
                    str(run / stage),
                    *TINY,
                    "--max-steps",
                    "1",
                    "--batch-size",
                    "2",
                ]
            )
            == 0
        )
    assert (
        main(
            [
                "similarity",
                "--invariant",
                str(run / "invariant" / "checkpoints" / "last.pt"),
                "--distinctive",
                str(run / "distinctive" / "checkpoints" / "last.pt"),
                "--data",
                str(prepared),
                "--out",
                str(run / "similarity.csv"),
                *TINY,
            ]
        )
        == 0
    )
    out = tmp_path / "t.json"
    args = ["bench", "teachers", "--run", str(run), "--data", str(prepared), "--fractions", "0.5", "--epochs", "1"]
    # the preset comes from the run's results.json; a run without one needs --preset
    assert main(args) == 2
    (run / "results.json").write_text(json.dumps({"preset": "synthetic_tiny"}))
    assert (
        main(
            [
                "bench",
                "teachers",
                "--run",
                str(run),
                "--data",
                str(prepared),
                "--fractions",
                "0.5",
                "--epochs",
                "1",
                "--batch-size",
                "2",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    r = json.loads(out.read_text())["fractions"]["0.5"]
    m = r["mechanism"]
    assert r["labeled_videos"] == 4 and m["videos"] == 8 and (run / "similarity_test.csv").is_file()
    # the mixture with all weight on one teacher is that teacher
    assert m["mixture_top1"]["1 (T_I only)"] == r["teacher_invariant"]
    assert m["mixture_top1"]["0 (T_D only)"] == r["teacher_distinctive"]
    assert 0 < m["mixture_permutation_p"] <= 1
    # a folder that is not a finished run: one line saying what is missing
    assert main(["bench", "teachers", "--run", str(tmp_path / "nope"), "--data", str(prepared)]) == 2
