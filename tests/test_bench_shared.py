"""`tbfast bench shared` on the test data: every figure it prints comes from a real pass."""

import json

from tbfast.cli import main


def test_bench_shared_counts_decodes_and_teacher_runs(prepared, tmp_path, one_torch_thread):
    out = tmp_path / "shared.json"
    assert (
        main(
            [
                "bench",
                "shared",
                "--data",
                str(prepared),
                "--work",
                str(tmp_path / "work"),
                "--steps",
                "2",
                "--repeats",
                "1",
                "--batch-size",
                "2",
                "--size",
                "16",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    res = json.loads(out.read_text())["results"]
    ssl, st = res["ssl"], res["students"]
    assert ssl["models"] == ["invariant", "distinctive"]
    # 2 steps per model: the pair decodes 2 batches instead of 4
    assert ssl["batches_decoded"] == {"separate": 4, "shared": 2}
    # baseline: 2 labeled batches; each student 2 labeled + 2 unlabeled; shared: 2 + 2
    assert st["batches_decoded"] == {"separate": 2 + 3 * 4, "shared": 4}
    # teachers: s=1 and s=0 run one each, TimeBalance both (4 per step); shared: 2 per step
    assert st["teacher_forwards"] == {"separate": 2 * 4, "shared": 2 * 2}
    for r in (ssl, st):
        assert r["separate_seconds"] > 0 and r["shared_seconds"] > 0
        # the speedup is the ratio of the unrounded times; the reported times are rounded to 0.01 s
        sep, sh = r["separate_seconds"], r["shared_seconds"]
        assert (sep - 0.005) / (sh + 0.005) - 1e-3 <= r["speedup"] <= (sep + 0.005) / max(sh - 0.005, 1e-9) + 1e-3
        assert 0 <= r["decode_share_separate"] <= 1
        g = r["computed_speedup_if_compute_faster"]
        assert min(g.values()) > 0 and g["decode-bound"] > 1  # decoding K times vs once
