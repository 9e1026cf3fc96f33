"""Every CLI stage for 2 steps on the tiny prepared data, chained as a user would chain them."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from tbfast.cli import main as cli

TINY = ["--preset", "synthetic_tiny", "--size", "16", "--no-progress", "--device", "cpu", "--threads", "1"]
TRAIN = TINY + ["--max-steps", "2", "--batch-size", "2", "--log-every", "1"]


@pytest.fixture(scope="module")
def chain(prepared, prepared_split, tmp_path_factory):
    """Run every stage once; the tests below check what each left behind."""
    root = tmp_path_factory.mktemp("cli_chain")
    lab, unl = prepared_split
    data = ["--data", str(prepared)]
    r = {}
    for stage in ("invariant", "distinctive", "combined"):
        assert cli(["train", stage, *data, "--out", str(root / stage), *TRAIN]) == 0
    ck = {s: root / s / "checkpoints" / "last.pt" for s in ("invariant", "distinctive", "combined")}
    for kind in ("invariant", "distinctive"):
        assert (
            cli(
                [
                    "train",
                    "finetune",
                    *data,
                    "--out",
                    str(root / f"ft_{kind}"),
                    "--init",
                    str(ck[kind]),
                    "--labeled",
                    str(lab),
                    *TRAIN,
                ]
            )
            == 0
        )
    assert (
        cli(
            [
                "train",
                "supervised",
                *data,
                "--out",
                str(root / "sup"),
                "--labeled",
                lab.name,
                "--val",
                "test",
                *TRAIN,
                "--epochs",
                "1",
            ]
        )
        == 0
    )
    sim = root / "similarity.csv"
    assert (
        cli(
            [
                "similarity",
                "--invariant",
                str(ck["invariant"]),
                "--distinctive",
                str(ck["distinctive"]),
                *data,
                "--out",
                str(sim),
                *TINY,
            ]
        )
        == 0
    )
    ft = {k: root / f"ft_{k}" / "checkpoints" / "last.pt" for k in ("invariant", "distinctive")}
    assert (
        cli(
            [
                "train",
                "student",
                *data,
                "--out",
                str(root / "student"),
                "--teacher-invariant",
                str(ft["invariant"]),
                "--teacher-distinctive",
                str(ft["distinctive"]),
                "--similarity",
                str(sim),
                "--labeled",
                str(lab),
                "--unlabeled",
                str(unl),
                "--init",
                str(ck["combined"]),
                "--distill",
                "kl",
                *TRAIN,
            ]
        )
        == 0
    )
    r["eval_json"] = root / "eval.json"
    assert (
        cli(
            [
                "eval",
                "--checkpoint",
                str(root / "student" / "checkpoints" / "last.pt"),
                *data,
                "--json",
                str(r["eval_json"]),
                "--clips",
                "4",
                *TINY,
            ]
        )
        == 0
    )
    r.update(root=root, ck=ck, ft=ft, sim=sim)
    return r


def test_ssl_stages_leave_a_run_directory(chain):
    for stage in ("invariant", "distinctive", "combined"):
        d = chain["root"] / stage
        assert (d / "config.yaml").is_file() and (d / "loss.png").is_file()
        recs = [json.loads(line) for line in (d / "metrics.jsonl").read_text().splitlines()]
        # the epoch records again as CSV (max_steps 2 may end inside the first epoch: a header only)
        rows = (d / "metrics.csv").read_text().splitlines()
        assert rows[0].startswith("epoch,step") and len(rows) == 1 + sum(r["kind"] == "epoch" for r in recs)
        steps = [r for r in recs if r["kind"] == "step"]
        assert [r["step"] for r in steps] == [1, 2]
        terms = {"invariant": {"L_I"}, "distinctive": {"L_D1", "L_D2"}, "combined": {"L_I", "L_D1", "L_D2"}}[stage]
        assert terms <= set(steps[0]) and all(0 <= r["data_share"] <= 1 and r["clips_per_s"] > 0 for r in steps)
        ck = torch.load(d / "checkpoints" / "last.pt", weights_only=True)
        assert ck["stage"] == stage and ck["num_classes"] is None and ck["step"] == 2
        assert ck["format"] == "tbfast-ckpt-1" and ck["config"]["train"]["max_steps"] == 2


def test_finetune_supervised_student_eval(chain):
    ft = torch.load(chain["ft"]["invariant"], weights_only=True)
    assert ft["stage"] == "finetune" and ft["num_classes"] == 4
    assert not any(k.startswith("head.") for k in ft["model"])  # projection head dropped
    inv = torch.load(chain["ck"]["invariant"], weights_only=True)
    # fine-tuning started from the SSL backbone (2 small-lr steps move it only a little)
    k = "backbone.stem.0.weight"
    assert (ft["model"][k] - inv["model"][k]).abs().max() < 0.1
    sup = chain["root"] / "sup"
    recs = [json.loads(x) for x in (sup / "metrics.jsonl").read_text().splitlines()]
    epoch = [r for r in recs if r["kind"] == "epoch"][-1]
    assert "val_top1" in epoch and (sup / "checkpoints" / "best.pt").is_file() and (sup / "accuracy.png").is_file()
    # summary.json: the last validation's top-1 and the best; training clips/s without validation time
    summ = json.loads((sup / "summary.json").read_text())
    assert summ["val_top1"] == epoch["val_top1"] and summ["val_epoch"] == epoch["epoch"] == 1
    assert summ["best_val_top1"] == epoch["val_top1"]  # one validation: it is the best
    assert 0 < summ["train_seconds"] < summ["seconds_with_validation"]
    # clips/s over the unrounded training time (train_seconds is rounded to 0.01 s)
    assert abs(summ["clips"] / summ["clips_per_s"] - summ["train_seconds"]) <= 0.0051
    assert "val_top1" not in json.loads((chain["root"] / "student" / "summary.json").read_text())  # no --val
    st = torch.load(chain["root"] / "student" / "checkpoints" / "last.pt", weights_only=True)
    assert st["stage"] == "student" and st["config"]["loss"]["distill"] == "kl"
    recs = (chain["root"] / "student" / "metrics.jsonl").read_text()
    assert "distill_u" in recs and "distill_l" in recs
    ev = json.loads(chain["eval_json"].read_text())
    assert ev["videos"] == 8 and ev["clips"] == 32
    assert 0 <= ev["video_top1"] <= ev["video_top5"] <= 1 and 0 <= ev["clip_top1"] <= 1
    # per-class figures agree with the overall ones
    conf = ev["confusion"]
    assert sum(map(sum, conf)) == 8 and sum(conf[c][c] for c in range(4)) == round(8 * ev["video_top1"])
    assert list(ev["class_top1"]) == ev["classes"] and len(ev["classes"]) == 4


def test_per_class_accuracy():
    from tbfast.engine.evaluation import per_class

    r = per_class([(0, 0, 0), (1, 0, 1), (2, 1, 1), (3, 1, 1)], 3)
    assert r["confusion"] == [[1, 1, 0], [0, 2, 0], [0, 0, 0]]
    assert r["class_top1"] == [0.5, 1.0, None] and r["mean_class_top1"] == 0.75


def test_similarity_file(chain):
    lines = chain["sim"].read_text().splitlines()
    assert lines[0] == "index,path,raw,score" and len(lines) == 1 + 8  # every training video
    scores = [float(x.split(",")[3]) for x in lines[1:]]
    assert min(scores) == 0.0 and max(scores) == 1.0
    assert chain["sim"].with_suffix(".png").is_file()


def test_resume_auto_on_a_finished_run_is_a_no_op(chain, prepared, capsys):
    out = chain["root"] / "invariant"
    before = (out / "checkpoints" / "last.pt").read_bytes()
    assert cli(["train", "invariant", "--data", str(prepared), "--out", str(out), "--resume", "auto", *TRAIN]) == 0
    assert (out / "checkpoints" / "last.pt").read_bytes() == before


def test_recipe_on_prepared_data(prepared, tmp_path, capsys):
    """`tbfast run --data` chains every stage and writes report.md + results.json."""
    data = tmp_path / "prepared"
    shutil.copytree(prepared, data)
    out = tmp_path / "recipe"
    args = [
        "run",
        "--data",
        str(data),
        "--preset",
        "synthetic_tiny",
        "--out",
        str(out),
        "--fraction",
        "0.5",
        "--no-progress",
        "--device",
        "cpu",
        "--threads",
        "1",
        "--set",
        "train.max_steps=1",
        "--seeds",
        "1",
        "--set",
        "data.size=16",
        "--set",
        "data.batch_size=2",
        "--set",
        "eval.clips=2",
    ]
    assert cli(args) == 0
    err = capsys.readouterr().err
    # the stages as numbered steps of the whole recipe: data, SSL, fine-tuning, similarity, one seed, evaluation
    assert "== [1/6] data" in err and "== [5/6] supervised-only baseline" in err and "== [6/6] evaluation" in err
    assert "no checkpoint in" not in err  # a fresh stage of the recipe does not say it starts from scratch
    res = json.loads((out / "results.json").read_text())
    assert set(res["top1"]) == {"supervised", "student_invariant", "student_distinctive", "timebalance"}
    assert res["seeds_trained"] == 1 and "seeds" not in res
    assert {
        "invariant",
        "distinctive",
        "finetune_invariant",
        "finetune_distinctive",
        "similarity",
        "supervised",
        "student_invariant",
        "student_distinctive",
        "timebalance",
    } <= set(res["clips_per_s"])
    report = (out / "report.md").read_text()
    assert "TimeBalance" in report and res["student_init"] == "invariant"  # the preset's choice
    # the report states the evaluation this run really did (--set eval.clips=2, the preset's one crop)
    assert res["eval"] == {"clips": 2, "crops": 1} and "2 clips per video, centre crop" in report
    # uncertainty: a 95 % interval per model over the test videos, McNemar tests against TimeBalance
    for k, (lo, hi) in res["top1_ci95"].items():
        assert lo <= res["top1_all"][k] <= hi and hi - lo > 10  # 8 test videos: wide
    pw = res["timebalance_paired"]
    assert set(pw) == set(res["top1_all"]) - {"timebalance"}
    for k, v in pw.items():
        assert v["videos"] == res["test_videos"] and 0 < v["p"] <= 1
        assert v["only_timebalance"] - v["only_other"] == round(
            (res["top1_all"]["timebalance"] - res["top1_all"][k]) * res["test_videos"] / 100
        )
    assert "McNemar" in report and res["checks"]["timebalance_significantly_better_than_supervised"] is not None
    assert "**One seed**" in report  # no verdict from one seed
    # every pair of the six models, each once, on the same videos
    assert len(res["paired_all"]) == 15 and all(v["videos"] == res["test_videos"] for v in res["paired_all"].values())
    # the mechanism: the test videos' s against the teachers' test predictions, probabilities kept
    mech = res["mechanism"]
    assert mech["videos"] == res["test_videos"] and set(mech["classes"]) == set(res["class_top1_all"]["timebalance"])
    for c, v in mech["classes"].items():
        assert v["teacher_invariant"] == res["class_top1_all"]["teacher_invariant"][c]
        assert 0 <= v["mean_s"] <= 1
    assert "mixture_top1" in mech and mech["mixture_top1"]["1 (T_I only)"] == res["top1_all"]["teacher_invariant"]
    assert "## Does s route videos" in report and (out / "similarity_test.csv").is_file()
    assert "Chance level: 25.0 % (4 classes)" in report
    models = ("supervised", "teacher_invariant", "teacher_distinctive", "student_invariant", "student_distinctive")
    for png in ("models.png", "mechanism.png", "confusion_timebalance.png", *(f"confusion_{m}.png" for m in models)):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
    # per-class table: one row per class with a mean score and the six models' accuracies
    classes = res["class_top1_all"]["timebalance"]
    assert len(classes) == 4 and set(res["class_top1_all"]) == {
        "teacher_invariant",
        "teacher_distinctive",
        *res["top1"],
    }
    for c in classes:
        row = next(line for line in report.splitlines() if line.startswith(f"| {c} |"))
        assert row.count("|") == 9
    # a second call resumes every stage and trains nothing more (stages stopped by max_steps stay "unfinished")
    capsys.readouterr()
    assert cli(args) == 0
    err = capsys.readouterr().err
    assert err.count("nothing to do") == 8 and "== similarity" not in err
    assert json.loads((out / "results.json").read_text())["mechanism"] == mech
    # other settings in the same OUT: refused, nothing overwritten (models trained at 0.5 are never
    # reported as trained at 0.34, nor with another objective)
    before = (out / "invariant" / "checkpoints" / "last.pt").read_bytes()
    for changed in (["--fraction", "1.0"], ["--set", "loss.reduction=mean"]):  # (0.34 gives the same split here)
        bad = [a for a in args if a not in ("--fraction", "0.5")] + changed
        assert cli(bad) == 2, changed
        assert "holds the" in capsys.readouterr().err
    assert (out / "invariant" / "checkpoints" / "last.pt").read_bytes() == before
    assert json.loads((out / "results.json").read_text())["fraction"] == 0.5


@pytest.mark.parametrize(
    "command",
    [
        "train invariant",
        "train distinctive",
        "train combined",
        "train finetune",
        "train supervised",
        "train student",
        "similarity",
        "eval",
        "run",
    ],
)
def test_help_shows_defaults(command, capsys):
    with pytest.raises(SystemExit) as e:
        cli([*command.split(), "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "default" in out
    if command.startswith("train"):
        assert "--resume" in out and "--max-steps" in out and "--precision" in out


def test_recipe_refuses_a_bad_student_init_before_training(prepared, tmp_path, capsys):
    data, out = tmp_path / "prepared", tmp_path / "recipe"
    shutil.copytree(prepared, data)  # the recipe writes its labeled split into the dataset
    args = [
        "run",
        "--data",
        str(data),
        "--preset",
        "synthetic_tiny",
        "--out",
        str(out),
        "--no-progress",
        "--device",
        "cpu",
        "--set",
        "recipe.student_init=combined",
    ]
    assert cli(args) == 2
    assert "recipe.student_init 'combined'" in capsys.readouterr().err and not (out / "invariant").exists()


def test_eval_three_crops(chain, prepared, tmp_path):
    """--crops 3: the same videos and clips as one crop, each clip scored as the mean over its crops."""
    out = tmp_path / "eval3.json"
    assert (
        cli(
            [
                "eval",
                "--checkpoint",
                str(chain["root"] / "student" / "checkpoints" / "last.pt"),
                "--data",
                str(prepared),
                "--json",
                str(out),
                "--clips",
                "4",
                "--crops",
                "3",
                *TINY,
            ]
        )
        == 0
    )
    three, one = json.loads(out.read_text()), json.loads(chain["eval_json"].read_text())
    assert three["videos"] == one["videos"] == 8 and three["clips"] == one["clips"] == 32
    assert (three["crops"], one["crops"]) == (3, 1)
    assert 0 <= three["video_top1"] <= three["video_top5"] <= 1
    assert (
        cli(
            [
                "eval",
                "--checkpoint",
                str(chain["root"] / "student" / "checkpoints" / "last.pt"),
                "--data",
                str(prepared),
                "--crops",
                "2",
                *TINY,
            ]
        )
        == 2
    )  # 1 or 3 only


def test_eval_compare_is_a_mcnemar_test_on_the_same_videos(chain, prepared, tmp_path, capsys):
    from tbfast.stats import paired_comparison

    other = tmp_path / "ft.json"
    base = ["--data", str(prepared), "--clips", "4", *TINY]
    assert cli(["eval", "--checkpoint", str(chain["ft"]["invariant"]), "--json", str(other), *base]) == 0
    capsys.readouterr()
    assert (
        cli(
            [
                "eval",
                "--checkpoint",
                str(chain["root"] / "student" / "checkpoints" / "last.pt"),
                "--compare",
                str(other),
                *base,
            ]
        )
        == 0
    )
    line = next(x for x in capsys.readouterr().out.splitlines() if x.strip().startswith("vs "))
    r = paired_comparison(
        json.loads(chain["eval_json"].read_text())["predictions"], json.loads(other.read_text())["predictions"]
    )
    assert f"only this model right on {r['only_a']}, only the other on {r['only_b']}" in line
    assert f"p = {r['p']:.3f}" in line
    # a file of other videos, or one without predictions: a one-line error
    sub = json.loads(other.read_text())
    sub["predictions"] = sub["predictions"][:-1]
    (tmp_path / "fewer.json").write_text(json.dumps(sub))
    (tmp_path / "bare.json").write_text(json.dumps({"video_top1": 0.5}))
    for bad, why in (
        ("fewer.json", "other videos"),
        ("bare.json", "no per-video predictions"),
        ("missing.json", "no such file"),
    ):
        assert (
            cli(
                [
                    "eval",
                    "--checkpoint",
                    str(chain["root"] / "student" / "checkpoints" / "last.pt"),
                    "--compare",
                    str(tmp_path / bad),
                    *base,
                ]
            )
            == 2
        )
        assert why in capsys.readouterr().err


def test_teachers_and_similarity_models_in_the_wrong_role_are_refused(
    chain, prepared, prepared_split, tmp_path, capsys
):
    """A swapped pair would silently turn every TimeBalance weight around (s <-> 1 - s)."""
    data = ["--data", str(prepared)]
    ck, ft = chain["ck"], chain["ft"]
    assert torch.load(ft["invariant"], weights_only=True)["init_stage"] == "invariant"
    assert (
        cli(
            [
                "similarity",
                "--invariant",
                str(ck["distinctive"]),
                "--distinctive",
                str(ck["invariant"]),
                *data,
                "--out",
                str(tmp_path / "s.csv"),
                *TINY,
            ]
        )
        == 2
    )
    err = " ".join(capsys.readouterr().err.split())
    assert "--invariant checkpoint" in err and "stage 'distinctive'" in err and "Traceback" not in err
    assert not (tmp_path / "s.csv").exists()
    lab, unl = prepared_split
    assert (
        cli(
            [
                "train",
                "student",
                *data,
                "--out",
                str(tmp_path / "st"),
                "--teacher-invariant",
                str(ft["distinctive"]),
                "--teacher-distinctive",
                str(ft["invariant"]),
                "--similarity",
                str(chain["sim"]),
                "--labeled",
                str(lab),
                "--unlabeled",
                str(unl),
                *TRAIN,
            ]
        )
        == 2
    )
    err = " ".join(capsys.readouterr().err.split())
    assert "invariant teacher" in err and "fine-tuned from the distinctive self-supervised model" in err
    assert "--teacher-distinctive" in err


def test_recipe_with_two_seeds_reports_means_and_paired_wins(prepared, tmp_path, capsys):
    data = tmp_path / "prepared"
    shutil.copytree(prepared, data)
    out = tmp_path / "recipe"
    args = [
        "run",
        "--data",
        str(data),
        "--preset",
        "synthetic_tiny",
        "--out",
        str(out),
        "--fraction",
        "0.5",
        "--no-progress",
        "--device",
        "cpu",
        "--threads",
        "1",
        "--set",
        "train.max_steps=1",
        "--seeds",
        "2",
        "--set",
        "data.size=16",
        "--set",
        "data.batch_size=2",
        "--set",
        "eval.clips=2",
        "--seed",
        "5",
    ]
    assert cli(args) == 0
    res = json.loads((out / "results.json").read_text())
    sd = res["seeds"]
    assert sd["seeds"] == [5, 6]
    for m in ("supervised", "student_invariant", "student_distinctive", "timebalance"):
        assert len(sd["top1"][m]) == 2 and (out / f"{m}_seed1" / "checkpoints" / "last.pt").is_file()
        assert sd["mean"][m] == pytest.approx(sum(sd["top1"][m]) / 2, abs=0.01)
        assert sd["top1"][m][0] == res["top1"][m]  # the first seed is the main table's run
        cfg = (out / f"{m}_seed1" / "config.yaml").read_text()
        assert "seed: 6" in cfg
    pw = sd["timebalance_paired"]["student_invariant"]
    assert pw["wins"] + pw["ties"] + pw["losses"] == 2
    report = (out / "report.md").read_text()
    assert "Over 2 seeds" in report and "mean ± std" in report and (out / "seeds.png").is_file()
    cap = capsys.readouterr()
    err = cap.err
    assert "[5/7] supervised-only baseline and the three students, seed 5 (1 of 2)" in err
    # the end of the run: one screen of at most 80 columns (the JSON line aside), report.md has the rest
    screen = cap.out.splitlines()[:-1]
    assert json.loads(cap.out.splitlines()[-1])["top1_mean"] == sd["mean"]
    assert len(screen) <= 24 and all(len(line) <= 80 for line in screen if str(out) not in line)
    row = next(line for line in screen if line.startswith("TimeBalance student"))
    mean, std = sd["mean"]["timebalance"], sd["std"]["timebalance"]
    assert f"{res['top1']['timebalance']:.2f}" in row and f"{mean:.2f} ± {std:.2f}" in row
    assert "Verdict: " + sd["verdict"][:40] in " ".join(screen) and str(out / "report.md") in " ".join(screen)
    assert "more for the 1 remaining seed, then the evaluation" in err
    # the comparisons the method is about, each over both seeds and the same test videos
    assert set(sd["tests"]) == {
        "timebalance vs student_invariant",
        "timebalance vs student_distinctive",
        "timebalance vs supervised",
        "student_invariant vs supervised",
        "student_distinctive vs supervised",
    }
    for key, t in sd["tests"].items():
        a, b = key.split(" vs ")
        assert t["seeds"] == 2 and t["videos"] == res["test_videos"] and len(t["per_seed_mcnemar_p"]) == 2
        assert t["diff"] == pytest.approx(sd["mean"][a] - sd["mean"][b], abs=0.02)
        assert t["ci95"][0] <= t["diff"] <= t["ci95"][1]
    assert sd["verdict"].startswith("Over 2 seeds and 8 test videos") and f"**Verdict.** {sd['verdict']}" in report
    capsys.readouterr()
    assert cli(args) == 0  # a second call reuses every seed's stages
    assert "== similarity" not in capsys.readouterr().err


def test_help_shows_defaults_only_where_there_is_one(capsys):
    with pytest.raises(SystemExit):
        cli(["train", "students", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "(default: None)" not in out and "(default: False)" not in out
    assert "(default: 1)" in out  # --seeds


def test_host_decoder_trains_and_evaluates_the_same_clips(chain, prepared, tmp_path, capsys):
    """--decoder pyav: an SSL stage and eval run end to end on the host decoder's frames; the eval
    sees the same videos and clips as with DALI's decoder, and its config records the decoder."""
    data = ["--data", str(prepared)]
    run = tmp_path / "inv_pyav"
    assert cli(["train", "invariant", *data, "--out", str(run), *TRAIN, "--decoder", "pyav"]) == 0
    ck = torch.load(run / "checkpoints" / "last.pt", map_location="cpu", weights_only=False)
    assert ck["config"]["data"]["decoder"] == "pyav" and ck["step"] == 2
    assert ck["config"]["data"]["resize"] == "auto"  # the clip views were resized on the host
    # resize "host" needs the frames on the host: refused, in one line, with DALI's decoder
    capsys.readouterr()
    assert cli(["train", "invariant", *data, "--out", str(tmp_path / "x"), *TRAIN, "--resize", "host"]) == 2
    assert "needs decoder pyav or torchcodec" in capsys.readouterr().err
    out = tmp_path / "eval_pyav.json"
    assert (
        cli(
            [
                "eval",
                "--checkpoint",
                str(chain["root"] / "student" / "checkpoints" / "last.pt"),
                *data,
                "--json",
                str(out),
                "--clips",
                "4",
                "--decoder",
                "pyav",
                *TINY,
            ]
        )
        == 0
    )
    host, dali = json.loads(out.read_text()), json.loads(chain["eval_json"].read_text())
    assert (host["videos"], host["clips"]) == (dali["videos"], dali["clips"])
    printed = capsys.readouterr().out  # a compact summary, not the JSON
    assert f"video top-1 {100 * host['video_top1']:.1f} %" in printed and "8 videos, 32 clips" in printed
    assert "predictions" not in printed and len(printed.strip().splitlines()) <= 8
    assert cli(["train", "invariant", *data, "--out", str(tmp_path / "bad"), *TRAIN, "--decoder", "ffmpeg"]) == 2
    assert "data.decoder='ffmpeg': choose one of dali, pyav, torchcodec" in capsys.readouterr().err


def test_predict_video_files_with_the_class_names_of_the_checkpoint(chain, prepared, synth_src, tmp_path, capsys):
    """tbfast predict on source videos (AVI, no prepared dataset): top-k classes, sorted, with the
    checkpoint's class names; a missing or broken file is reported and skipped (exit code 1), the
    others still predicted."""
    ck = chain["root"] / "student" / "checkpoints" / "last.pt"
    state = torch.load(ck, map_location="cpu", weights_only=True)
    classes = (prepared / "classes.txt").read_text().split()
    assert state["classes"] == classes
    videos = sorted((synth_src / "UCF-101").rglob("*.avi"))[:2]
    capsys.readouterr()
    assert (
        cli(
            [
                "predict",
                str(ck),
                *map(str, videos),
                "--json",
                "--top-k",
                "3",
                "--clips",
                "4",
                "--device",
                "cpu",
                "--threads",
                "1",
            ]
        )
        == 0
    )
    res = json.loads(capsys.readouterr().out)
    assert [r["video"] for r in res] == [str(v.resolve()) for v in videos]
    for r in res:
        probs = [t["probability"] for t in r["top"]]
        assert len(probs) == 3 and probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0001
        assert all(t["class"] == classes[t["index"]] for t in r["top"])
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    assert (
        cli(
            [
                "predict",
                str(ck),
                str(videos[0]),
                str(broken),
                str(tmp_path / "missing.avi"),
                "--device",
                "cpu",
                "--threads",
                "1",
            ]
        )
        == 1
    )
    out = capsys.readouterr()
    assert str(videos[0].resolve()) in out.out and "%" in out.out
    assert "skipped" in out.err and "broken.mp4" in out.err and "missing.avi: no such file" in out.err


def test_run_directories_record_provenance(chain, prepared, prepared_split):
    """provenance.json: the command, tbfast's version, and every input with its checksum (the
    student: manifest, both splits, both teachers, the scores and the init checkpoint)."""
    import hashlib

    p = json.loads((chain["root"] / "student" / "provenance.json").read_text())
    assert p["command"][1:3] == ["train", "student"] and p["tbfast"]
    ins = p["inputs"]
    assert set(ins) >= {
        "data_manifest",
        "labeled",
        "unlabeled",
        "teacher_invariant",
        "teacher_distinctive",
        "similarity",
        "init",
    }
    want = {
        "data_manifest": prepared / "manifest.jsonl",
        "labeled": prepared_split[0],
        "similarity": chain["sim"],
        "init": chain["ck"]["combined"],
        "teacher_invariant": chain["ft"]["invariant"],
    }
    for name, path in want.items():
        assert ins[name]["path"] == str(path.resolve())
        assert ins[name]["blake2b"] == hashlib.blake2b(path.read_bytes(), digest_size=16).hexdigest(), name
    ssl = json.loads((chain["root"] / "invariant" / "provenance.json").read_text())
    assert set(ssl["inputs"]) == {"data_manifest"}
