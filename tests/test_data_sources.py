"""Official split-file parsers on hand-written files in the official formats."""

from __future__ import annotations

import pytest

from tbfast.data.sources import (
    list_folder,
    list_hmdb51,
    list_kinetics,
    list_ucf101,
    parse_hmdb51_splits,
    parse_ucf101_splits,
)
from tbfast.errors import UserError


def _ucf(tmp_path, eol="\r\n"):
    d = tmp_path / "ucfTrainTestlist"
    d.mkdir()
    (d / "classInd.txt").write_bytes(eol.join(["1 ApplyEyeMakeup", "2 HandstandPushups", "3 YoYo", ""]).encode())
    (d / "trainlist01.txt").write_bytes(
        eol.join(
            [
                "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1",
                "HandstandPushups/v_HandStandPushups_g08_c01.avi 2",
                "YoYo/v_YoYo_g25_c05.avi 3",
                "",
            ]
        ).encode()
    )
    (d / "testlist01.txt").write_bytes(
        eol.join(
            [
                "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi",
                "HandstandPushups/v_HandStandPushups_g07_c04.avi",
                "YoYo/v_YoYo_g01_c01.avi",
                "",
            ]
        ).encode()
    )
    return d


@pytest.mark.parametrize("eol", ["\r\n", "\n"])
def test_ucf101_official_format(tmp_path, eol):
    d = _ucf(tmp_path, eol)
    classes, rows = parse_ucf101_splits(d, 1)
    assert classes == ["ApplyEyeMakeup", "HandstandPushups", "YoYo"]
    assert rows[1] == ("HandstandPushups/v_HandStandPushups_g08_c01.avi", "HandstandPushups", "train")
    assert [r[2] for r in rows] == ["train"] * 3 + ["test"] * 3
    assert all("\r" not in r[0] for r in rows)


def test_ucf101_videos_under_UCF101_folder_and_case_mismatch(tmp_path):
    _ucf(tmp_path)
    v = tmp_path / "UCF-101" / "HandstandPushups"
    v.mkdir(parents=True)
    (v / "v_HandStandPushups_g08_c01.avi").write_bytes(b"x")
    classes, items = list_ucf101(tmp_path, None, 1)
    assert items[1].source == "UCF-101/HandstandPushups/v_HandStandPushups_g08_c01.avi"
    assert items[0].source == "UCF-101/ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi"  # missing: kept, prep reports


def test_ucf101_errors(tmp_path):
    d = _ucf(tmp_path)
    with pytest.raises(UserError, match="trainlist02"):
        parse_ucf101_splits(d, 2)
    (d / "trainlist01.txt").write_text("Nope/v_Nope_g08_c01.avi 1\n")
    with pytest.raises(UserError, match="not in classInd"):
        parse_ucf101_splits(d, 1)
    (d / "trainlist01.txt").write_text("YoYo/v_YoYo_g08_c01.avi 1\n")
    with pytest.raises(UserError, match="label 1"):
        parse_ucf101_splits(d, 1)


def test_hmdb51_official_format(tmp_path):
    d = tmp_path / "testTrainMulti_7030_splits"
    d.mkdir()
    (d / "brush_hair_test_split1.txt").write_bytes(
        b"April_09_brush_hair_u_nm_np1_ba_goo_0.avi 1 \r\nAtlantis_brush_hair_h_nm_np1_ri_med_1.avi 2 \r\n"
        b"Brushing_Hair_with_Beautiful_Style_brush_hair_f_nm_np1_ba_goo_0.avi 0 \r\n"
    )
    (d / "cartwheel_test_split1.txt").write_text("x_cartwheel_f_cm_np1_le_bad_0.avi 1 \n")
    (d / "cartwheel_test_split2.txt").write_text("x_cartwheel_f_cm_np1_le_bad_0.avi 2 \n")
    classes, rows = parse_hmdb51_splits(d, 1)
    assert classes == ["brush_hair", "cartwheel"]
    assert rows == [
        ("brush_hair/April_09_brush_hair_u_nm_np1_ba_goo_0.avi", "brush_hair", "train"),
        ("brush_hair/Atlantis_brush_hair_h_nm_np1_ri_med_1.avi", "brush_hair", "test"),
        ("cartwheel/x_cartwheel_f_cm_np1_le_bad_0.avi", "cartwheel", "train"),
    ]
    classes, items = list_hmdb51(tmp_path, None, 2)
    assert classes == ["cartwheel"] and items[0].split == "test"
    with pytest.raises(UserError, match="split3"):
        parse_hmdb51_splits(d, 3)


def test_kinetics_csv_and_downloader_names(tmp_path):
    (tmp_path / "train.csv").write_text(
        "label,youtube_id,time_start,time_end,split\n"
        "abseiling,--33Lscn6sk,4,14,train\n"
        "air drumming,---v8pgm1eQ,0,10,train\n"
    )
    (tmp_path / "validate.csv").write_text(
        "label,youtube_id,time_start,time_end,split\nabseiling,0wR5jVB-WPk,417,427,val\nair drumming,abc,1,11,test\n"
    )
    f = tmp_path / "train" / "air drumming" / "---v8pgm1eQ_000000_000010.mp4"
    f.parent.mkdir(parents=True)
    f.write_bytes(b"x")
    g = tmp_path / "val" / "abseiling" / "0wR5jVB-WPk_000417_000427.mp4"
    g.parent.mkdir(parents=True)
    g.write_bytes(b"x")
    classes, items = list_kinetics(tmp_path, None)
    assert classes == ["abseiling", "air drumming"]
    by = {i.source: i for i in items}
    assert by["train/air drumming/---v8pgm1eQ_000000_000010.mp4"].split == "train"
    assert by["val/abseiling/0wR5jVB-WPk_000417_000427.mp4"].split == "test"
    assert "train/abseiling/--33Lscn6sk_000004_000014.mp4" in by  # listed, missing: reported by prep
    assert len(items) == 3  # test rows unused
    with pytest.raises(UserError, match="header"):
        (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
        list_kinetics(tmp_path, tmp_path / "bad.csv")


def test_folder_holdout_is_balanced_and_seeded(tmp_path):
    for c, n in (("a", 10), ("b", 5), ("c", 1)):
        (tmp_path / c).mkdir()
        for i in range(n):
            (tmp_path / c / f"{i}.mp4").write_bytes(b"x")
    (tmp_path / "a" / "notes.txt").write_text("not listed")
    classes, items = list_folder(tmp_path, 0.0)
    assert classes == ["a", "b", "c"] and len(items) == 16 and {i.split for i in items} == {"train"}
    _, items = list_folder(tmp_path, 0.2, seed=1)
    test = [i for i in items if i.split == "test"]
    assert [sum(i.class_name == c for i in test) for c in "abc"] == [2, 1, 0]
    assert list_folder(tmp_path, 0.2, seed=1)[1] == items
    assert {i.source for i in list_folder(tmp_path, 0.5, seed=2)[1] if i.split == "test"} != {
        i.source for i in list_folder(tmp_path, 0.5, seed=3)[1] if i.split == "test"
    }
    with pytest.raises(UserError):
        list_folder(tmp_path, 1.0)


@pytest.mark.parametrize(
    "row,message",
    [
        ("abseiling,xyz,abc,10,train", "are not numbers"),
        ("abseiling,xyz,10,5,train", "below time_end"),
        (",xyz,1,2,train", "without label"),
        ("abseiling,xyz,1,2,train,extra", "extra fields"),
    ],
)
def test_kinetics_malformed_rows_name_file_and_line(tmp_path, row, message):
    (tmp_path / "k.csv").write_text(
        "label,youtube_id,time_start,time_end,split\nabseiling,ok,0,10,train\n" + row + "\n"
    )
    with pytest.raises(UserError, match=rf"k\.csv:3: .*{message}"):
        list_kinetics(tmp_path, tmp_path / "k.csv")


def test_ucf101_class_listed_twice_is_refused(tmp_path):
    d = _ucf(tmp_path)
    (d / "classInd.txt").write_text("1 ApplyEyeMakeup\n2 HandstandPushups\n3 YoYo\n4 yoyo\n")
    with pytest.raises(UserError, match="listed twice"):
        parse_ucf101_splits(d, 1)


def test_prep_notes_empty_classes_and_refuses_out_inside_src(tmp_path, synth_src, capsys):
    import shutil

    from tbfast.cli import main

    src = tmp_path / "src"
    (src / "Empty").mkdir(parents=True)
    (src / "Square").mkdir()
    for v in sorted((synth_src / "UCF-101" / "Square").iterdir())[:2]:
        shutil.copy(v, src / "Square" / v.name)
    assert main(["data", "prep", str(src), str(src / "prepared"), "--format", "folder"]) == 2
    assert "inside SRC" in capsys.readouterr().err
    out = tmp_path / "out"
    assert (
        main(
            [
                "data",
                "prep",
                str(src),
                str(out),
                "--format",
                "folder",
                "--short-side",
                "24",
                "--workers",
                "1",
                "--no-progress",
            ]
        )
        == 0
    )
    assert "class Empty: this class has no videos" in capsys.readouterr().err
    import json

    rep = json.loads((out / "prep_report.json").read_text())
    assert any(w["source"] == "Empty" and "no videos" in w["reason"] for w in rep["warnings"])
