"""`tbfast bench machines`: the same short stage in separate processes per CPU kind."""

import json

from tbfast.cli import main


def test_same_kind_is_bit_identical_and_a_limited_isa_is_really_limited(prepared, tmp_path):
    out = tmp_path / "m.json"
    assert (
        main(
            [
                "bench",
                "machines",
                "--data",
                str(prepared),
                "--work",
                str(tmp_path / "w"),
                "--steps",
                "2",
                "--size",
                "16",
                "--batch-size",
                "2",
                "--threads",
                "1",
                "--kinds",
                "native",
                "native-again",
                "avx",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    res = json.loads(out.read_text())
    k = res["kinds"]
    assert res["reference"] == "native" and list(k) == ["native", "native-again", "avx"]
    again = k["native-again"]
    assert again["identical"] is True and again["max_weight_diff"] == 0.0 and again["predictions_differ"] == 0
    assert again["first_step_loss_differs"] is None and again["weights"] == k["native"]["weights"]
    # the emulated older kind: ATen really runs its default (non-vectorised) kernels
    assert k["avx"]["cpu_capability"] == "DEFAULT" and k["native"]["cpu_capability"] != "DEFAULT"
    assert k["avx"]["videos"] == k["native"]["videos"] > 0 and k["native"]["threads_used"] == 1
