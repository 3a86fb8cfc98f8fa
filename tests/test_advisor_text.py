"""advisor recommend --data-dir on text (advisor.text): traits of a CSV or class folders of .txt files, text
strategies ranked from text runs, one-line errors for bad input. No TensorFlow: runs in well under a second."""

from __future__ import annotations

import pandas as pd
import pytest

from advisor.cli import main
from advisor.data import AdvisorError
from advisor.text import is_text_input, measure_texts, rank_text_strategies


def _runs(rows: list[tuple[str, str, int, float]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["dataset", "strategy", "n_images", "accuracy"]).assign(degenerate=False)


def test_traits_of_a_csv_and_of_class_folders_agree(tmp_path):
    texts = [("refund please", "billing"), ("card charged twice", "billing"), ("app crashes", "bug"),
             ("login fails", "bug"), ("button missing", "bug")]  # fmt: skip
    csv = tmp_path / "tickets.csv"
    csv.write_text("text,label\n" + "".join(f"{t},{label}\n" for t, label in texts))
    for i, (t, label) in enumerate(texts):
        (tmp_path / "folder" / label).mkdir(parents=True, exist_ok=True)
        (tmp_path / "folder" / label / f"{i}.txt").write_text(t)
    assert is_text_input(csv) and is_text_input(tmp_path / "folder")
    for source in (csv, tmp_path / "folder"):
        m = measure_texts(source)
        assert (m["n_texts"], m["n_classes"], m["imbalance"]) == (5, 2, 0.6), source


def test_an_image_folder_with_a_stray_txt_file_is_not_text(tmp_path):
    """A README.txt in one class folder of photos must not send the folder down the text path (it did: any .txt
    made a folder text, and the image folder failed with "holds a single distinct text")."""
    for label in ("cats", "dogs"):
        (tmp_path / label).mkdir()
        for i in range(3):
            (tmp_path / label / f"{i}.jpg").write_bytes(b"")
    (tmp_path / "cats" / "README.txt").write_text("photos from my phone")
    assert not is_text_input(tmp_path)
    for i in range(7):
        (tmp_path / "dogs" / f"note{i}.txt").write_text(f"text {i}")
    assert is_text_input(tmp_path)  # more texts than images: text
    assert not is_text_input(tmp_path / "cats" / "0.jpg") and not is_text_input(tmp_path / "missing")


def test_ranking_reads_text_runs_at_the_nearest_size_only():
    runs = _runs([
        ("sst2", "text_linear_probe", 50, 0.80), ("sst2", "text_linear_probe", 1000, 0.86),
        ("sst2", "text_tfidf_logreg", 50, 0.60), ("sst2", "text_tfidf_logreg", 1000, 0.90),
        ("mnist", "linear_probe", 50, 0.99),  # an image strategy: never ranked for text
    ])  # fmt: skip
    small = rank_text_strategies(runs, 60)
    assert [o["strategy"] for o in small] == ["text_linear_probe", "text_tfidf_logreg"]
    assert [o["strategy"] for o in rank_text_strategies(runs, 900)] == ["text_tfidf_logreg", "text_linear_probe"]
    assert small[0]["datasets"] == [{"dataset": "sst2", "n": 50, "accuracy": 0.80, "runs": 1}]
    with pytest.raises(AdvisorError, match="no .* text runs"):
        rank_text_strategies(runs[runs["strategy"] == "linear_probe"], 60)


@pytest.mark.parametrize(
    ("content", "message"),
    [("body,label\nhi,a\nbye,b\n", "no 'text' column"), ("text,label\nhi,a\n  ,b\n", "empty text"),
     ("text,label\nhi,a\nbye,a\n", "one class")],
)  # fmt: skip
def test_bad_text_input_is_one_line(tmp_path, capsys, content, message):
    path = tmp_path / "tickets.csv"
    path.write_text(content)
    assert main(["recommend", "--data-dir", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and message in err and "\n" not in err


def test_the_users_linear_probe_anchors_the_ranking():
    """text_linear_probe expects the user's probe; the others the probe plus their paired gain over it in the runs."""
    from advisor.text import with_probe

    runs = _runs([
        ("sst2", "text_linear_probe", 50, 0.80), ("trec", "text_linear_probe", 50, 0.60),
        ("sst2", "text_tfidf_logreg", 50, 0.60), ("trec", "text_tfidf_logreg", 50, 0.50),
        ("sst2", "text_full_fine_tune", 50, 0.85), ("trec", "text_full_fine_tune", 50, 0.75),
    ])  # fmt: skip
    ranked = with_probe(rank_text_strategies(runs, 50), runs, 0.40)
    assert [o["strategy"] for o in ranked] == ["text_full_fine_tune", "text_linear_probe", "text_tfidf_logreg"]
    expected = {o["strategy"]: o["accuracy"] for o in ranked}
    assert expected == pytest.approx({"text_full_fine_tune": 0.50, "text_linear_probe": 0.40,
                                      "text_tfidf_logreg": 0.25})  # fmt: skip
    assert ranked[0]["study_accuracy"] == pytest.approx(0.80) and ranked[0]["datasets_paired"] == 2
