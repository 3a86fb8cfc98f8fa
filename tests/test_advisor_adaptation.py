"""``advisor recommend --source-dir`` (#20): advice read from the committed domain-adaptation cells."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from advisor import adaptation as adv
from advisor.cli import main
from study.analysis import adaptation


@pytest.fixture(scope="module")
def table():
    return adv.pair_table()  # results/adaptation, as committed


def _folder(root: Path, classes: dict[str, int]) -> Path:
    rng = np.random.default_rng(0)
    for name, n in classes.items():
        (root / name).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (8, 8, 3), np.uint8)).save(root / name / f"{i}.png")
    return root


def test_without_target_labels_the_advice_is_source_only_with_the_dann_caveat(table):
    a = adv.advise(0, table)
    assert a.measured_n_t == [0] and a.rows == 10
    assert a.recipe == "source_only" and a.wins == {"source_only": 6, "dann": 4}  # 2 of the 6 are exact ties
    assert "wholly above source-only's on 0 of 10" in a.caveats[0] and "did not reliably beat" in a.caveats[0]
    expected = adaptation.markdown(table[table["n_target_labels"] == 0].reset_index(drop=True))
    assert a.evidence == expected


def test_with_a_few_target_labels_each_pair_is_read_at_its_nearest_measured_n_t(table):
    a = adv.advise(40, table)
    assert a.measured_n_t == [50, 100] and a.rows == 10  # 50, or 100 where 50 is under 2 per class
    assert a.recipe == "dann" and a.wins == {"dann": 9, "source_then_target": 1}
    assert "| office31_amazon → office31_webcam | 100 | 250 | 64 | mobilenet_v2 features | 0.220 [" in a.evidence
    assert "wholly above source-only on 4 of 10" in a.caveats[1]
    far = adv.advise(5000, table)
    assert far.recipe == "dann" and "extrapolation" in far.notes[0]
    assert adv.nearest_n_t(0, [0, 50, 100]) == 0 and adv.nearest_n_t(1, [0, 50, 100]) == 50
    assert adv.nearest_n_t(80, [0, 50, 100]) == 100 and adv.nearest_n_t(75, [0, 50, 100]) == 50


def test_the_cli_counts_the_target_folder_and_answers(tmp_path, capsys):
    source = _folder(tmp_path / "src", {"cat": 4, "dog": 4})
    _folder(tmp_path / "tgt" / "train", {"cat": 2, "dog": 1})
    _folder(tmp_path / "tgt" / "test", {"cat": 5, "dog": 5})  # held out: not labelled training images
    assert main(["recommend", "--source-dir", str(source), "--data-dir", str(tmp_path / "tgt")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Domain adaptation: 3 labelled target images")
    assert "Measured best at N_t = 50/100: dann (highest mean on 9 of 10" in out
    assert main(["recommend", "--source-dir", str(source), "--n-images", "0", "--json"]) == 0
    advice = json.loads(capsys.readouterr().out)
    assert advice["recipe"] == "source_only" and advice["source"]["images"] == 8 and advice["target"] is None


@pytest.mark.parametrize("case", ["missing", "classes", "no_count", "empty"])
def test_folder_problems_are_one_line_errors(tmp_path, capsys, case):
    source = _folder(tmp_path / "src", {"cat": 2, "dog": 2})
    (tmp_path / "e" / "notes").mkdir(parents=True)  # a class folder without images
    args = {"missing": ["--source-dir", str(tmp_path / "nope"), "--n-images", "5"],
            "classes": ["--source-dir", str(source), "--data-dir", str(_folder(tmp_path / "t", {"cat": 1, "cow": 1}))],
            "no_count": ["--source-dir", str(source)],
            "empty": ["--source-dir", str(tmp_path / "e"), "--n-images", "5"]}[case]
    assert main(["recommend", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert {"missing": "does not exist", "classes": "only in the source: dog; only in the target: cow",
            "no_count": "--n-images N (0 for none)", "empty": "no class sub-folders"}[case] in err
