"""The report's text section (issue 23): built from the committed text grid's rows, checked against them and opened in
headless Chromium; an image-only report has no trace of it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from advisor.data import load_results
from reports import build, data
from reports import text as rtext
from study.analysis import stats
from tests.test_reports import ARTIFACTS, Page, check_browser, open_in_browser, synthetic_cells

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def text_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The report of ``results/text`` (the text grid's 244 real rows), built from the frame as a user would."""
    runs, _ = load_results(REPO / "results" / "text")
    out = tmp_path_factory.mktemp("text-report") / "report.html"
    build.build_report(runs, out=out)
    return {"runs": runs, "report": out, "html": out.read_text("utf-8"), "data": data.gather(runs, n_boot=500)}


def _mean(runs: pd.DataFrame, dataset: str, n: int, strategy: str) -> float:
    good = stats.mark_degenerate(runs)
    rows = good[(good["dataset"] == dataset) & (good["n_images"] == n) & (good["strategy"] == strategy)]
    return float(rows.loc[~rows["degenerate"], "accuracy"].mean())


def test_text_section_matches_the_text_grid(text_report: dict[str, Any]) -> None:
    page = Page(text_report["html"])
    runs, d = text_report["runs"], text_report["data"]
    assert "text" in page.ids and "fig-text-accuracy" in page.ids and "text-h" in page.ids
    # best text strategy per dataset x N: every text cell of the grid, the same winners as best_per_cell
    shown = {r["key"]: r["cells"] for r in page.tables["text-best"]}
    assert len(shown) == 26  # 7 datasets x their sizes (medical_abstracts and tweet_emotion stop at 1000)
    for rec in d.best.to_dict("records"):
        cells = shown[f"{rec['dataset']}|{rec['n_images']}|{rec['image_size']}"]
        assert cells[3] == rec["best_strategy"] and float(cells[5]) == pytest.approx(rec["accuracy"], abs=5e-4)
    assert shown["sms_spam|4000|128"][3] == "text_tfidf_logreg"  # where TF-IDF catches up
    # MiniLM minus TF-IDF: four pretrained strategies where they ran, each against the same cell's TF-IDF rows
    vs = {r["key"]: r for r in page.tables["text-vs-tfidf"]}
    cols = rtext.GAIN_COLUMNS
    top = vs["ag_news|50|128|text_fine_tune_top"]["cells"]
    expected = _mean(runs, "ag_news", 50, "text_fine_tune_top") - _mean(runs, "ag_news", 50, "text_tfidf_logreg")
    assert float(top[cols.index("gain")]) == pytest.approx(expected, abs=5e-4)
    assert top[cols.index("encoder")] == "fine-tuned" and top[cols.index("verdict")] == "MiniLM better"
    worse = vs["sms_spam|4000|128|text_feature_extraction"]
    assert worse["cells"][cols.index("verdict")] == "TF-IDF better" and worse["class"] == "negative"
    assert float(worse["cells"][cols.index("gain_ci_high")]) < 0
    assert {r["cells"][cols.index("strategy")] for r in vs.values()} == {
        "text_linear_probe", "text_feature_extraction", "text_fine_tune_top", "text_full_fine_tune"}  # fmt: skip
    # negative transfer: the analysis's four flagged text cells, no more
    neg = d.negative_transfer
    assert set(page.keys("text-negative-transfer")) == {build.gain_key(r) for r in neg.to_dict("records")}
    assert len(page.keys("text-negative-transfer")) == 4
    assert "Fine-tuned MiniLM vs TF-IDF" in text_report["html"]


def test_text_report_opens_in_headless_chromium(text_report: dict[str, Any]) -> None:
    seen = open_in_browser(text_report["report"], ARTIFACTS / "report-text-overview.png")
    page = Page(text_report["html"])
    check_browser(seen, len(page.images))
    text_imgs = [i for i in seen["images"] if i["alt"].startswith("Line charts of text classification")]
    assert len(text_imgs) == 1 and text_imgs[0]["w"] > 600


def test_image_only_report_has_no_text_section(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "advisor.model", None)  # the advisor section is not under test here
    cells = synthetic_cells()[:40]
    frame = pd.DataFrame([{**c, **r, "status": "complete", "cell_key": f"k{i}"} for i, (c, r) in enumerate(cells)])
    d = data.gather(frame, n_boot=200)
    assert rtext.gather_text(d) is None and build.context(d, {"links": [], "error": None})["text"] is None
    html = build.build_report(frame, out=tmp_path / "report.html").read_text("utf-8")
    assert 'id="text"' not in html and "Text classification" not in html and "MiniLM" not in html


def test_mixed_store_shows_only_its_text_datasets(text_report: dict[str, Any]) -> None:
    """Image and text rows together: the text section holds the text datasets only, the image rows stay outside."""
    image = pd.DataFrame([{**c, **r, "status": "complete", "cell_key": f"img{i}"}
                          for i, (c, r) in enumerate(synthetic_cells()[:40])])  # fmt: skip
    text = text_report["runs"][text_report["runs"]["dataset"].isin(["trec", "sst2"])]
    both = pd.concat([data._frame_rows(image), text], ignore_index=True)
    t = rtext.gather_text(data.gather(both, n_boot=200), n_boot=200)
    assert t is not None and t.datasets == ["sst2", "trec"]
    assert set(t.best["dataset"]) == {"sst2", "trec"} and set(t.vs_tfidf["dataset"]) == {"sst2", "trec"}
