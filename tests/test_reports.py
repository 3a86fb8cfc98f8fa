"""The HTML report: built from real result stores, checked against the data, and opened in a real browser.

A synthetic store (three datasets x three sizes x every strategy x two backbones x three seeds, with a planted
negative-transfer cell) exercises every figure at a realistic scale in seconds; the session's smoke-grid store
checks the report on real training results; headless Chromium checks what a reader sees.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from advisor.data import load_results
from reports import build, data, figures
from reports.context import best_key
from study.analysis import stats
from study.analysis import tables as analysis
from study.engine.store import NO_BACKBONE, ResultsStore, make_cell_key
from study.errors import StudyError

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]  # fmt: skip

# name: (domain, classes, base accuracy of a good pretrained model, Fréchet distance to natural photos)
DATASETS = {
    "natural_a": ("natural", 2, 0.86, 420.0),
    "medical_b": ("medical", 2, 0.78, 1700.0),
    "digits_c": ("digits", 10, 0.80, 2600.0),
}
SIZES = (50, 200, 1000)
SEEDS = (0, 1, 2)
BACKBONES = ("mobilenet_v2", "mobilenet_075")
PRETRAINED = ("linear_probe", "feature_extraction", "fine_tune_top", "full_fine_tune")
N_TEST = 200


# ----------------------------------------------------------------------------------------------------------
# A synthetic study, written through the real ResultsStore API
# ----------------------------------------------------------------------------------------------------------


def _accuracy(dataset: str, strategy: str, n: int) -> float:
    """Plausible accuracies: pretraining helps small N; digits_c's linear probe at N=1000 is far below scratch."""
    _, classes, good, _ = DATASETS[dataset]
    grow = np.log10(n / 50) / np.log10(20)  # 0 at N=50 .. 1 at N=1000
    if strategy in ("scratch", "scratch_small"):
        acc = 0.6 + (good - 0.03 - 0.6) * grow
    else:
        acc = good - 0.06 + 0.08 * grow + {"linear_probe": 0.0, "feature_extraction": 0.01,
                                            "fine_tune_top": 0.03, "full_fine_tune": 0.02}[strategy]  # fmt: skip
    if dataset == "digits_c" and strategy == "linear_probe" and n == 1000:
        acc = 0.62  # planted negative transfer
    return float(min(acc, 0.97))


def _curves(strategy: str, acc: float) -> list[dict[str, Any]]:
    if strategy == "linear_probe":
        return []
    phases = [("head", 4), ("fine_tune", 3)] if strategy in ("fine_tune_top", "full_fine_tune") else [(strategy, 6)]
    rows, k = [], 0
    total = sum(n for _, n in phases)
    for phase, n in phases:
        for e in range(n):
            k += 1
            frac = k / total
            rows.append({"phase": phase, "epoch": e + 1, "loss": 1.2 - 0.8 * frac, "val_loss": 1.25 - 0.7 * frac,
                         "accuracy": 0.5 + (acc - 0.45) * frac, "val_accuracy": 0.5 + (acc - 0.5) * frac,
                         "best": k == total})  # fmt: skip
    return rows


def synthetic_cells() -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(cell, result) pairs as the sweep writes them."""
    rng = np.random.default_rng(7)
    out = []
    combos = [(s, b) for s in PRETRAINED for b in BACKBONES] + [("scratch", b) for b in BACKBONES]
    combos.append(("scratch_small", "none"))
    for dataset, (domain, classes, _, _) in DATASETS.items():
        for n in SIZES:
            for strategy, backbone in combos:
                for seed in SEEDS:
                    acc = _accuracy(dataset, strategy, n)
                    correct = (rng.random(N_TEST) < acc).astype(int)
                    measured = float(correct.mean())
                    cell = dict(dataset=dataset, domain=domain, n_images=n, strategy=strategy,
                                backbone=backbone, image_size=64, seed=seed, epochs_budget=10, trials_budget=1,
                                grid="synthetic")  # fmt: skip
                    big = strategy in ("scratch", "full_fine_tune")
                    result = {
                        "accuracy": measured, "balanced_accuracy": measured, "macro_f1": measured,
                        "roc_auc": min(0.99, measured + 0.05), "log_loss": 1.0 - measured,
                        "majority_share": 1.0 / classes + 0.02, "degenerate": False,
                        "train_seconds": (30.0 if big else 2.0) * n / 50 * (1 + 0.1 * seed),
                        "extract_seconds": 0.0 if strategy.startswith("scratch") else 5.0,
                        "eval_seconds": 0.5, "trainable_params": 2_200_000 if big else 2_562,
                        "total_params": 2_260_000, "model_mb": 9.0 if backbone != "none" else 0.9,
                        "latency_ms": 9.5 if backbone != "none" else 1.1,
                        "metrics": {"correct": correct.tolist(), "n_test": N_TEST, "n_classes": classes,
                                    "top_prediction_share": 1.0 / classes + 0.1, "wall_seconds": 10.0 + n / 100},
                        "curves": _curves(strategy, measured),
                        "params": {"lr_head": 0.001, "dropout": 0.2, "seed": seed},
                        "provenance": {"host": "testhost", "machine": "x86_64", "cpus": 2, "gpus": 0,
                                       "tensorflow": "2.21.0", "keras": "3.15.1", "study": "0.1.0"},
                    }  # fmt: skip
                    out.append((cell, result))
    return out


def synthetic_store(path: Path) -> str:
    """A SQLite store holding the synthetic study and similarity scores per dataset; returns its URL."""
    url = f"sqlite:///{path}"
    store = ResultsStore(url)
    for cell, result in synthetic_cells():
        assert store.claim(cell)
        assert store.complete(make_cell_key(cell), result)
    for name, (domain, _, _, fd) in DATASETS.items():
        for backbone in BACKBONES:
            fd_b = fd * (1.0 if backbone == "mobilenet_v2" else 1.1)
            scores = {"backbone": backbone, "image_size": 64, "frechet_distance": fd_b, "logme": -0.5,
                      "knn_accuracy": 0.7, "linear_probe_accuracy": 0.75}  # fmt: skip
            store.put_dataset(name, domain=domain, similarity={f"{backbone}@64": scores})
    store.close()
    return url


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The synthetic store, its gathered data and its report, built once with build_report's own steps."""
    tmp = tmp_path_factory.mktemp("synthetic")
    url = synthetic_store(tmp / "study.db")
    out = tmp / "site" / "report.html"
    rc = dict(mpl.rcParams)
    with ResultsStore(url, create=False) as store:
        gathered = data.gather(store)
        ctx = build.context(gathered, build.export_tables(store, out.parent / "export", out.parent))
    build.write_atomic(out, build.render(ctx))
    return {"url": url, "tmp": tmp, "report": out, "data": gathered, "ctx": ctx, "html": out.read_text("utf-8"),
            "rc_unchanged": dict(mpl.rcParams) == rc, "open_figures": plt.get_fignums()}  # fmt: skip


@pytest.fixture(scope="module")
def smoke(smoke_store: tuple[str, Any, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The report of the session's real smoke-grid store."""
    url = smoke_store[0]
    tmp = tmp_path_factory.mktemp("smoke-report")
    store = ResultsStore(url, create=False)
    before = store.to_frame()
    out = build.build_report(store, out=tmp / "report.html", export_dir=tmp / "tables")
    after = store.to_frame()
    runs = analysis.results_frame(store)
    sims = analysis.similarity_table(store)
    store.close()
    return {"url": url, "report": out, "html": out.read_text(encoding="utf-8"), "runs": runs, "sims": sims,
            "before": before, "after": after, "tmp": tmp}  # fmt: skip


# ----------------------------------------------------------------------------------------------------------
# Reading the HTML back
# ----------------------------------------------------------------------------------------------------------


class Page(HTMLParser):
    """The parts of the report the tests compare with the data: tables' row keys, images, links, scripts."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.tables: dict[str, list[dict[str, Any]]] = {}
        self.images: list[dict[str, str]] = []
        self.links: list[str] = []
        self.resources: list[str] = []
        self.ids: set[str] = set()
        self._table: str | None = None
        self._in_body = False
        self._row: dict[str, Any] | None = None
        self._cell: list[str] | None = None
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "table":
            self._table = a.get("id", "")
            self.tables[self._table] = []
        elif tag == "tbody":
            self._in_body = True
        elif tag == "tr" and self._table is not None and self._in_body:
            self._row = {"key": a.get("data-key", ""), "class": a.get("class", ""), "cells": []}
        elif tag == "td" and self._row is not None:
            self._cell = []
        elif tag == "img":
            self.images.append(a)
            self.resources.append(a.get("src", ""))
        elif tag == "a":
            self.links.append(a.get("href", ""))
        elif tag in ("script", "link", "iframe", "source", "video", "audio") and (a.get("src") or a.get("href")):
            self.resources.append(a.get("src") or a.get("href", ""))

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._row is not None and self._cell is not None:
            self._row["cells"].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None and self._table is not None:
            self.tables[self._table].append(self._row)
            self._row = None
        elif tag == "tbody":
            self._in_body = False
        elif tag == "table":
            self._table = None

    def handle_data(self, text: str) -> None:
        if self._cell is not None:
            self._cell.append(text)

    def keys(self, table_id: str) -> list[str]:
        return [r["key"] for r in self.tables[table_id]]


def expected_figures(d: data.ReportData) -> int:
    """How many figures the data supports: accuracy per backbone, the map, gain (and vs similarity), cost, backbones
    (two or more with a published ImageNet top-1), curves."""
    backbones = [b for b in d.summary["backbone"].unique() if b != NO_BACKBONE] or [NO_BACKBONE]
    accuracy = sum(figures.with_shared_baselines(d.summary, b)["accuracy_mean"].notna().any() for b in backbones)
    return (
        accuracy
        + int(not d.best.empty)
        + int(d.gains["gain"].notna().any())
        + int(
            d.reference_backbone is not None
            and not analysis.gap_vs_gain_cells(d.gains, d.similarity, d.reference_backbone).empty
        )
        + int(not figures.cost_frame(d.runs, d.summary).empty)
        + int(not d.backbones.empty and d.backbones["backbone"].nunique() >= 2)
        + int(d.runs["curves"].map(data.has_curves).any())
        + int(not d.adaptation.empty)  # the domain-adaptation figure, only for pair cells
    )


def negative_keys(gains: pd.DataFrame) -> set[str]:
    return {build.gain_key(r) for r in gains[gains["negative_transfer"]].to_dict("records")}


def check_report_against_data(html: str, d: data.ReportData) -> Page:
    """The contract of a report: its figures, tables and lists are the data's, nothing external is loaded."""
    page = Page(html)
    assert len(page.images) == expected_figures(d)
    for img in page.images:
        assert img["src"].startswith("data:image/png;base64,")
        assert base64.b64decode(img["src"].split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
        assert len(img.get("alt", "")) > 40
    assert all(r.startswith("data:") for r in page.resources), "the report must load nothing from outside"
    assert len(page.tables["runs"]) == len(d.runs)
    assert sorted(page.keys("runs")) == sorted(d.runs["cell_key"])
    assert len(page.tables["summary"]) == len(d.summary)
    assert set(page.keys("negative-transfer")) == negative_keys(d.gains)
    assert set(page.keys("gains")) == {build.gain_key(r) for r in d.gains.to_dict("records")}
    expected_best = analysis.best_per_cell(stats.summarise(d.runs))
    shown = {r["key"]: r["cells"] for r in page.tables["best-per-cell"]}
    assert len(shown) == len(expected_best)
    for rec in expected_best.to_dict("records"):
        cells = shown[best_key(rec)]
        at = 5 if "source" in rec else 3  # pair runs show source and N_t after dataset, n_images, image_size
        assert cells[at] == rec["best_strategy"] and cells[at + 1] == rec["best_backbone"]
        assert float(cells[at + 2]) == pytest.approx(rec["accuracy"], abs=5e-4)
    for section in ("overview", "accuracy", "strategy-map", "gain", "cost", "backbones", "curves", "advisor", "anchors",
                    "tables", "closing-note"):  # fmt: skip
        assert section in page.ids
    return page


# ----------------------------------------------------------------------------------------------------------
# Figures on a constructed frame
# ----------------------------------------------------------------------------------------------------------


def _png_size(fig: figures.Figure) -> tuple[int, int]:
    raw = base64.b64decode(fig.data_uri.split(",", 1)[1])
    assert raw[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(raw[16:20], "big"), int.from_bytes(raw[20:24], "big")


def test_every_figure_renders_a_png_with_descriptive_alt_text(synthetic: dict[str, Any]) -> None:
    d: data.ReportData = synthetic["data"]
    order = d.dataset_order
    assert order == ["natural_a", "medical_b", "digits_c"]  # by Fréchet distance, closest first
    assert synthetic["rc_unchanged"], "figures must not change global matplotlib settings"
    assert synthetic["open_figures"] == [], "figures must be closed after encoding"
    shown = synthetic["ctx"]["figures"]
    made = {f"accuracy-{i}": figures.Figure(f["uri"], f["alt"]) for i, f in enumerate(shown["accuracy"])}
    made.update({k: figures.Figure(shown[k]["uri"], shown[k]["alt"]) for k in ("cost", "curves")})
    made["map"] = figures.strategy_map(d.best, {}, order)
    made["gain"] = figures.gain_over_scratch(d.gains, order)
    assert plt.get_fignums() == []
    assert len(made) == 6
    for name, fig in made.items():
        width, height = _png_size(fig)
        assert width > 200 and height > 150, name
        assert len(fig.alt) > 80, name
    assert "natural_a, medical_b, digits_c" in made["accuracy-0"].alt
    assert "scratch_small" in made["accuracy-0"].alt  # the backbone-independent baseline is in every backbone's panels
    assert "linear_probe/mobilenet_v2 on digits_c at N=1000" in made["gain"].alt
    assert "Pareto front" in made["cost"].alt
    assert "start" in made["curves"].alt and "fine_tune_top" in made["curves"].alt


def test_figures_without_data_say_why() -> None:
    frame = pd.DataFrame({"dataset": ["x"], "n_images": [50], "strategy": ["linear_probe"], "backbone": ["b"],
                          "image_size": [32], "gain": [np.nan], "gain_ci_low": [np.nan], "gain_ci_high": [np.nan],
                          "negative_transfer": [False], "significant_gain": [False]})  # fmt: skip
    with pytest.raises(figures.NoData, match="baseline"):
        figures.gain_over_scratch(frame, ["x"])
    runs = pd.DataFrame({"dataset": ["x"], "n_images": [50], "strategy": ["linear_probe"], "backbone": ["b"],
                         "seed": [0], "curves": [[]]})  # fmt: skip
    with pytest.raises(figures.NoData, match="curves"):
        figures.learning_curves(runs, ["x"])
    with pytest.raises(figures.NoData):
        figures.strategy_map(pd.DataFrame(), {}, [])


def test_pareto_front_keeps_only_undominated_cells() -> None:
    pts = pd.DataFrame({"cost": [1.0, 2.0, 3.0, 4.0, 5.0], "gap": [-0.3, -0.35, -0.1, -0.2, 0.0]})
    assert list(figures.pareto_front(pts)["cost"]) == [1.0, 3.0, 5.0]


def test_backbone_independent_cells_appear_for_every_backbone(synthetic: dict[str, Any]) -> None:
    d: data.ReportData = synthetic["data"]
    for backbone in BACKBONES:
        frame = figures.with_shared_baselines(d.summary, backbone)
        assert set(frame["backbone"]) == {backbone, "none"}


# ----------------------------------------------------------------------------------------------------------
# The report of a store, checked against the store's data
# ----------------------------------------------------------------------------------------------------------


def test_synthetic_report_matches_the_data(synthetic: dict[str, Any]) -> None:
    d: data.ReportData = synthetic["data"]
    page = check_report_against_data(synthetic["html"], d)
    assert negative_keys(d.gains) == {"digits_c|1000|mobilenet_v2|64|linear_probe",
                                      "digits_c|1000|mobilenet_075|64|linear_probe"}  # fmt: skip
    assert all("negative" in r["class"] for r in page.tables["negative-transfer"])
    findings = synthetic["html"].split('<ul class="findings">', 1)[1].split("</ul>", 1)[0]
    assert "Transfer hurt in 2 of" in findings and "linear_probe/mobilenet_v2 on digits_c at N=1000" in findings
    assert "Best strategy on medical data" in findings
    # every trained model with epochs can be picked in the learning-curve chooser
    payload = json.loads(synthetic["html"].split('id="curves-data">', 1)[1].split("</script>", 1)[0])
    with_curves = d.runs[d.runs["strategy"] != "linear_probe"]
    assert set(payload) == set(with_curves["cell_key"])
    # downloads beside the report, linked relatively
    report_dir = synthetic["report"].parent
    for name in ("runs.csv", "runs.parquet"):
        assert f'href="export/{name}"' in synthetic["html"]
        assert (report_dir / "export" / name).is_file()
    assert len(pd.read_parquet(report_dir / "export" / "runs.parquet")) == len(d.runs)


def test_report_lists_datasets_by_similarity_with_domains(synthetic: dict[str, Any]) -> None:
    page = Page(synthetic["html"])
    rows = page.tables["datasets"]
    assert [r["cells"][0] for r in rows] == ["natural_a", "medical_b", "digits_c"]
    assert [r["cells"][1] for r in rows] == ["natural", "medical", "digits"]


def test_anchors_are_cited_and_matched_to_our_cells(synthetic: dict[str, Any]) -> None:
    anchors = data.load_anchors()
    ids = [a["id"] for a in anchors]
    assert len(ids) == len(set(ids)) >= 10
    known = {"scratch", "scratch_small", "linear_probe", "feature_extraction", "fine_tune_top", "full_fine_tune",
             "dann", "dann_cnn", "source_only", "source_only_cnn", "text_linear_probe", "text_tfidf_logreg",
             "text_full_fine_tune", "text_fine_tune_top"}  # fmt: skip
    for a in anchors:
        assert a["url"].startswith("https://") and a["source"] and a["quote"] and a["protocol_differences"]
        assert 0 < a["value"] <= 1
        strategies = a["ours"]["strategies"]
        assert strategies == "any" or set(strategies) <= known
    published_on = {a["dataset"] for a in anchors}
    assert published_on >= {"cats_and_dogs_filtered", "retinamnist", "chest_xray_pneumonia_224", "mnist", "sst2",
                            "ag_news", "trec"}  # fmt: skip
    ours = {"strategies": ["feature_extraction"], "backbone": "mobilenet_v2", "n_images": "max"}
    fake = [{**anchors[0], "id": "t", "dataset": "natural_a", "metric": "accuracy", "value": 0.9, "ours": ours}]
    (row,) = data.anchor_rows(synthetic["data"], fake)
    s = synthetic["data"].summary
    cell = s[(s["dataset"] == "natural_a") & (s["strategy"] == "feature_extraction") & (s["backbone"] == "mobilenet_v2")
             & (s["n_images"] == 1000)]  # fmt: skip
    assert row["ours_value"] == pytest.approx(float(cell["accuracy_mean"].iloc[0]))
    assert row["ours_n_images"] == 1000 and row["difference"] == pytest.approx(row["ours_value"] - 0.9)
    (missing,) = data.anchor_rows(synthetic["data"], [{**fake[0], "dataset": "mnist"}])
    assert missing["ours_value"] is None and missing["ours_note"]


def test_text_anchors_sit_beside_text_cells_in_tokens() -> None:
    """A text anchor (#23) is matched to the text strategy it names, at its N, and its cell is read in tokens; an image
    anchor's in px. The committed reference carries the text grid, so every text anchor finds its cell there."""
    from types import SimpleNamespace

    runs = pd.read_parquet(Path(__file__).resolve().parents[1] / "results" / "reference" / "runs.parquet")
    anchors = [a for a in data.load_anchors() if a.get("modality") == "text"]
    assert {a["dataset"] for a in anchors} == {"ag_news", "sst2", "trec"}
    rows = {r["id"]: r for r in data.anchor_rows(SimpleNamespace(runs=runs), anchors)}
    assert all(r["ours_value"] is not None and r["ours_unit"] == "tokens" for r in rows.values())
    mteb = rows["mteb-ag-news-minilm"]
    assert (mteb["ours_cell"], mteb["ours_n_images"], mteb["ours_image_size"]) == ("text_linear_probe/none", 50, 128)
    cell = runs[(runs["dataset"] == "ag_news") & (runs["strategy"] == "text_linear_probe") & (runs["n_images"] == 50)]
    assert mteb["ours_value"] == pytest.approx(cell["accuracy"].mean())
    assert rows["sbert-senteval-trec-glove"]["ours_cell"].startswith("text_tfidf_logreg")
    assert rows["minilm-l6-sst2-glue-dev"]["ours_cell"].split("/")[0] in {"text_full_fine_tune", "text_fine_tune_top"}
    image = [a for a in data.load_anchors() if a["id"] == "dann-mnist-m"]
    assert data.anchor_rows(SimpleNamespace(runs=runs), image)[0]["ours_unit"] == "px"


def test_advisor_failure_becomes_a_note(synthetic: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "advisor.model", None)  # import fails
    section = build.advisor_section(synthetic["data"].runs, synthetic["data"].similarity)
    assert section == {"available": False, "reason": section["reason"]} and "cannot be imported" in section["reason"]

    class Broken:
        def fit(self, *a: Any) -> Any:
            raise RuntimeError("no rules today")

    fake = type(sys)("advisor.model")
    fake.Advisor = Broken  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "advisor.model", fake)
    section = build.advisor_section(synthetic["data"].runs, synthetic["data"].similarity)
    assert not section["available"] and "no rules today" in section["reason"]
    html = build.render({**synthetic["ctx"], "advisor": section})
    assert 'id="advisor-unavailable"' in html and "no rules today" in html


def test_frame_input_and_atomic_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "advisor.model", None)  # the advisor is tested above; keep this test quick
    cells = synthetic_cells()[:40]
    frame = pd.DataFrame([{**c, **{k: v for k, v in r.items() if k != "metrics"}, "metrics": r["metrics"],
                           "status": "complete", "cell_key": f"k{i}"} for i, (c, r) in enumerate(cells)])  # fmt: skip
    out = build.build_report(frame, out=tmp_path / "r" / "report.html", title="From a frame")
    html = out.read_text(encoding="utf-8")
    assert "<title>From a frame</title>" in html
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(".")] == []  # no temp file left
    assert (out.parent / "export" / "runs.csv").is_file()
    assert len(Page(html).tables["runs"]) == 40


def test_cli_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert build.main(["--store", f"sqlite:///{tmp_path / 'missing.db'}", "--out", str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err
    empty = tmp_path / "empty.db"
    ResultsStore(f"sqlite:///{empty}").close()
    assert build.main(["--store", f"sqlite:///{empty}", "--out", str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err.strip()
    assert "python -m study.run" in err and "\n" not in err
    assert not (tmp_path / "r.html").exists()


def test_gather_rejects_an_empty_frame() -> None:
    with pytest.raises(StudyError, match="no complete rows"):
        data.gather(pd.DataFrame({"status": ["failed"], "dataset": ["x"]}))


# ----------------------------------------------------------------------------------------------------------
# The real smoke-grid store
# ----------------------------------------------------------------------------------------------------------


def test_smoke_report_matches_the_store(smoke: dict[str, Any]) -> None:
    runs, sims = smoke["runs"], smoke["sims"]
    with ResultsStore(smoke["url"], create=False) as store:
        d = data.gather(store)
    check_report_against_data(smoke["html"], d)
    assert len(Page(smoke["html"]).tables["runs"]) == len(runs)
    assert set(Page(smoke["html"]).keys("negative-transfer")) == negative_keys(stats.transfer_gain(runs))
    pd.testing.assert_frame_equal(smoke["before"], smoke["after"])  # the report never writes to the store
    assert "python -m reports.build" in smoke["html"] and "sqlite:///" in smoke["html"]  # closing note
    for name in ("runs.csv", "runs.parquet"):
        assert (smoke["tmp"] / "tables" / name).is_file() and f'href="tables/{name}"' in smoke["html"]
    assert sims.empty or set(sims["dataset"]) <= set(runs["dataset"])


# ----------------------------------------------------------------------------------------------------------
# A real headless browser
# ----------------------------------------------------------------------------------------------------------


def _chromium() -> str:
    path = os.environ.get("TRANSFER_STUDY_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).exists():
        pytest.fail("Chromium is missing: install Debian's chromium (apt-get install -y chromium; .ci/run does)")
    return path


INK = """() => ['curve-accuracy', 'curve-loss'].map(id => {
    const c = document.getElementById(id);
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let ink = 0;
    for (let i = 0; i < d.length; i += 4) if (d[i] < 200 || d[i + 2] < 200) ink++;
    return ink;
})"""
"""Count of non-white pixels on each learning-curve canvas (drawn curves leave thousands)."""


def open_in_browser(report: Path, screenshot: Path | None) -> dict[str, Any]:
    """Load the report in headless Chromium at laptop and phone widths; return what the page showed."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is missing: pip install -e '.[test]'")
    seen: dict[str, Any] = {"console": [], "errors": [], "requests": []}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=_chromium(), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: seen["console"].append(f"{m.type}: {m.text}"))
            page.on("pageerror", lambda e: seen["errors"].append(str(e)))
            page.on("requestfailed", lambda r: seen["errors"].append(f"request failed: {r.url[:100]}"))
            page.on("request", lambda r: seen["requests"].append(r.url))
            page.goto(report.resolve().as_uri(), wait_until="load")
            seen["images"] = page.eval_on_selector_all(
                "img", "els => els.map(e => ({w: e.naturalWidth, h: e.naturalHeight, alt: e.alt, done: e.complete}))"
            )
            options = page.eval_on_selector_all("#curve-cell option", "els => els.map(e => e.value)")
            seen["curve_options"] = options
            if options:
                page.select_option("#curve-cell", options[0])
                seen["canvas_ink"] = page.evaluate(INK)
                seen["curve_summary"] = page.inner_text("#curve-summary")
            # sorting: click the summary table's accuracy_mean header twice
            header = page.locator("#summary thead th", has_text="accuracy_mean").first
            column = page.eval_on_selector_all("#summary thead th", "ths => ths.map(t => t.innerText.trim())")
            idx = column.index("accuracy_mean")
            read = (
                f"() => Array.from(document.querySelectorAll('#summary tbody tr')).map(r => r.cells[{idx}].dataset.v)"
            )
            header.click()
            seen["sorted_up"] = page.evaluate(read)
            header.click()
            seen["sorted_down"] = page.evaluate(read)
            if screenshot is not None:
                screenshot.parent.mkdir(parents=True, exist_ok=True)
                page.locator("#overview").screenshot(path=str(screenshot))
            page.set_viewport_size({"width": 390, "height": 844})  # a phone
            page.wait_for_timeout(250)
            seen["phone_overflow"] = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            seen["phone_images"] = page.eval_on_selector_all(
                "img", "els => els.map(e => e.getBoundingClientRect().right <= window.innerWidth + 1)"
            )
            if screenshot is not None:
                page.evaluate("window.scrollTo(0, 0)")
                page.screenshot(path=str(screenshot.with_name(screenshot.stem + "-phone.png")))
        finally:
            browser.close()
    return seen


def check_browser(seen: dict[str, Any], n_figures: int) -> None:
    problems = [m for m in seen["console"] if m.split(":", 1)[0] in ("error", "warning", "assert")]
    assert problems == [] and seen["errors"] == []
    assert [u for u in seen["requests"] if not u.startswith(("file://", "data:"))] == []
    assert len(seen["images"]) == n_figures
    for img in seen["images"]:
        assert img["done"] and img["w"] > 0 and img["h"] > 0 and img["alt"].strip()
    if seen["curve_options"]:
        assert all(ink > 500 for ink in seen["canvas_ink"]) and "epochs" in seen["curve_summary"]
    up = [float(v) for v in seen["sorted_up"] if v not in (None, "", "None")]
    down = [float(v) for v in seen["sorted_down"] if v not in (None, "", "None")]
    assert up == sorted(up) and down == sorted(down, reverse=True)
    assert seen["phone_overflow"] <= 0, "the page scrolls sideways at phone width"
    assert all(seen["phone_images"])


def test_smoke_report_in_headless_chromium(smoke: dict[str, Any]) -> None:
    shot = ARTIFACTS / "report-overview.png"
    seen = open_in_browser(smoke["report"], shot)
    with ResultsStore(smoke["url"], create=False) as store:
        d = data.gather(store)
    check_browser(seen, expected_figures(d))
    assert shot.is_file() and shot.stat().st_size > 10_000


def test_synthetic_report_in_headless_chromium(synthetic: dict[str, Any]) -> None:
    seen = open_in_browser(synthetic["report"], ARTIFACTS / "report-synthetic-overview.png")
    check_browser(seen, expected_figures(synthetic["data"]))


def test_committed_reference_report_opens_and_matches_the_committed_tables() -> None:
    """A fresh clone shows the evidence without running anything: the committed report loads in Chromium with no
    console errors, draws every figure the committed tables support, and its download links resolve."""
    report = REPO / "reports" / "reference" / "report.html"
    assert report.is_file(), "reports/reference/report.html must be committed (see results/reference/README.md)"
    runs, _ = load_results(REPO / "results" / "reference")
    d = data.gather(runs, n_boot=200)
    page = Page(report.read_text())
    hrefs = [h for h in page.links if not h.startswith(("#", "http", "mailto:"))]
    assert any(h.endswith("runs.csv") for h in hrefs) and any(h.endswith("runs.parquet") for h in hrefs)
    for href in hrefs:
        assert (report.parent / href).resolve().is_file(), f"broken link in the committed report: {href}"
    assert len(page.tables["summary"]) == len(d.summary)
    seen = open_in_browser(report, ARTIFACTS / "reference-report-overview.png")
    check_browser(seen, len(page.images))
    assert len(page.images) >= expected_figures(d)


# ----------------------------------------------------------------------------------------------------------
# Domain adaptation (#20): the committed results/adaptation pair cells
# ----------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def adaptation_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The report of the committed domain_adaptation grid's rows, built with build_report's own steps."""
    from study.analysis import adaptation

    runs, _ = load_results(REPO / "results" / "adaptation")
    out = tmp_path_factory.mktemp("adaptation") / "report.html"
    gathered = data.gather(runs, n_boot=200)
    ctx = build.context(gathered, build.export_tables(runs, out.parent / "export", out.parent))
    build.write_atomic(out, build.render(ctx))
    return {"report": out, "data": gathered, "ctx": ctx, "html": out.read_text("utf-8"),
            "table": adaptation.domain_adaptation_table(runs, n_boot=200)}  # fmt: skip


def test_the_domain_adaptation_section_shows_the_pair_table(adaptation_report: dict[str, Any]) -> None:
    """Every row of study.analysis.adaptation's table, each recipe as mean [interval], the recipes not run as -."""
    from study.analysis import adaptation

    table = adaptation_report["table"]
    assert len(table) == 20  # 8 pairs (mnist -> mnist_m on two networks) x N_t 0 and 50/100
    page = check_report_against_data(adaptation_report["html"], adaptation_report["data"])
    assert {"domain-adaptation", "fig-domain-adaptation", "domain-adaptation-findings"} <= page.ids
    shown = {r["key"]: r["cells"] for r in page.tables["domain-adaptation"]}
    assert len(shown) == len(table)
    for rec in table.to_dict("records"):
        cells = shown["|".join(str(rec[k]) for k in adaptation.KEYS)]
        assert cells[0] == f"{rec['source']} → {rec['dataset']}" and cells[1] == str(rec["n_target_labels"])
        for i, r in enumerate(adaptation.RECIPES, start=5):
            text = "-" if np.isnan(rec[r]) else f"{rec[r]:.3f} [{rec[r + '_ci_low']:.3f}, {rec[r + '_ci_high']:.3f}]"
            assert cells[i] == text
    office = shown["office31_amazon|office31_webcam|100|250|64|mobilenet_v2 features"]
    assert office[6].startswith("0.475 [") and office[7].startswith("0.447 [")  # dann, target_only (as committed)
    assert shown["mnist|mnist_m|0|1000|32|small CNN"][7] == "-"  # target_only needs N_t > 0
    findings = adaptation_report["ctx"]["adaptation"]["findings"]
    assert findings[0].startswith("Without target labels (N_t = 0), DANN's 95 % interval lies wholly above "
                                  "source-only's on 0 of 10")  # fmt: skip
    assert "on 4 of 10" in findings[1]
    toc = adaptation_report["html"].split("</nav>")[0]
    assert "10. Domain adaptation" in toc and "11. Tables" in toc


def test_the_domain_adaptation_section_puts_the_pair_anchors_beside_our_cells(adaptation_report: dict) -> None:
    """The DANN paper's MNIST -> MNIST-M numbers beside our small-CNN cells at N_t = 0 (32 px, nearest to 28); every
    pair anchor whose target the run holds has a row (SynSigns -> GTSRB, Office-31)."""
    rows = {r["key"]: r["cells"] for r in Page(adaptation_report["html"]).tables["domain-adaptation-anchors"]}
    assert set(rows) == {"dann-mnist-m", "dann-mnist-m-source-only", "dann-synsigns-gtsrb",
                         "dann-synsigns-gtsrb-source-only", "tllib-office31-a2w-dann", "tllib-office31-a2w-erm",
                         "tllib-office31-d2w-dann", "tllib-office31-d2w-erm"}  # fmt: skip
    assert rows["tllib-office31-a2w-dann"][0] == "office31_amazon → office31_webcam"
    table = adaptation_report["table"].set_index(["source", "dataset", "n_target_labels", "network"])
    cnn = table.loc[("mnist", "mnist_m", 0, "small CNN")]
    for key, published, ours in (("dann-mnist-m", 0.7666, cnn["dann"]), ("dann-mnist-m-source-only", 0.5225,
                                                                         cnn["source_only"])):  # fmt: skip
        cells = rows[key]
        assert cells[0] == "mnist → mnist_m" and float(cells[2]) == published
        assert float(cells[3]) == pytest.approx(ours, abs=5e-4)
        assert float(cells[4]) == pytest.approx(ours - published, abs=1e-3)
        assert "32 px" in cells[5] and "N_t=0" in cells[5] and "small CNN" not in cells[5]
        assert "60,000" in cells[7]  # the protocol difference is stated


def test_a_store_without_pair_cells_has_no_domain_adaptation_section(synthetic: dict[str, Any]) -> None:
    assert synthetic["ctx"]["adaptation"] is None and synthetic["data"].adaptation.empty
    page = Page(synthetic["html"])
    assert "domain-adaptation" not in page.ids and "domain-adaptation" not in page.tables
    toc = synthetic["html"].split("</nav>")[0]
    assert "Domain adaptation" not in toc and "10. Tables" in toc


def test_the_domain_adaptation_figure_draws_the_table() -> None:
    """One panel per pair x network, points at the table's means; a table without pair rows says why."""
    table = pd.DataFrame([{"source": "a", "dataset": "b", "n_target_labels": n, "n_images": 100, "image_size": 32,
                           "network": "small CNN", "source_only": 0.3, "source_only_ci_low": 0.25,
                           "source_only_ci_high": 0.35, "dann": 0.4 + n / 1000, "dann_ci_low": 0.35,
                           "dann_ci_high": 0.45 + n / 1000, "target_only": np.nan if n == 0 else 0.2,
                           "target_only_ci_low": np.nan if n == 0 else 0.15,
                           "target_only_ci_high": np.nan if n == 0 else 0.25, "source_then_target": np.nan,
                           "source_then_target_ci_low": np.nan, "source_then_target_ci_high": np.nan}
                          for n in (0, 50)])  # fmt: skip
    long = figures.adaptation_long(table)
    assert len(long) == 5 and set(long["N_t"]) == {0, 50}  # NaN recipes are not drawn
    fig = figures.domain_adaptation(table)
    assert _png_size(fig)[0] > 200 and "N_t 50: source_only 0.300, dann 0.450, target_only 0.200" in fig.alt
    with pytest.raises(figures.NoData):
        figures.domain_adaptation(table.iloc[0:0])


def test_the_adaptation_report_in_headless_chromium(adaptation_report: dict[str, Any]) -> None:
    seen = open_in_browser(adaptation_report["report"], ARTIFACTS / "report-adaptation-overview.png")
    check_browser(seen, expected_figures(adaptation_report["data"]))
