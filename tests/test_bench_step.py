import json

from tbfast.cli import main


def test_bench_step_quick_writes_valid_json(tmp_path):
    out = tmp_path / "step.json"
    rc = main(
        [
            "bench",
            "step",
            "--backbone",
            "tiny",
            "--device",
            "cpu",
            "--quick",
            "--configs",
            "fp32",
            "bf16",
            "--json",
            str(out),
        ]
    )
    assert rc == 0
    res = json.loads(out.read_text())
    assert res["benchmark"] == "step" and res["device"] == "cpu"
    rows = {r["config"]: r for r in res["configs"]}
    assert set(rows) == {"fp32", "bf16"}
    for r in rows.values():
        assert r["clips_per_s"] > 0 and r["step_s"] > 0 and r["peak_mem_mb"] > 0
        assert isinstance(r["grad_ok"], bool)
        # a configuration with wrong gradients is never reported as a speed-up
        assert (r["counted_speedup"] is None) == (not r["grad_ok"])
    assert rows["fp32"]["grad_ok"] and rows["fp32"]["speedup_vs_fp32"] == 1.0
    # (whether unguarded CPU bf16 is wrong at temporal depth 2 depends on the CPU's oneDNN kernels;
    # tests/test_amp.py checks the detector with an injected fault)
    st = res["student"]
    for k in ("teachers_fp32", "teachers_bf16"):
        assert 0.0 < st[k]["teacher_share"] < 1.0


def test_bench_step_batch_size_spelling_and_old_alias():
    import argparse

    from tbfast_benchmarks import step

    p = argparse.ArgumentParser()
    step.add_arguments(p)
    assert p.parse_args(["--batch-size", "3"]).batch == 3
    assert p.parse_args(["--batch", "5"]).batch == 5  # the old spelling still works, for one release
    assert p.parse_args([]).batch is None
    helptext = p.format_help()
    assert "--batch-size" in helptext and "--batch " not in helptext
