"""The backbones view: ImageNet top-1 against transfer accuracy, its rank correlation and interval, in the analysis
CLI and the report, on a small synthetic store whose accuracies have a planted rank order (no training)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from test_reports import Page, _png_size

from reports import build, data, figures
from reports import context as report_context
from study.analysis import backbones as bb
from study.analysis import tables as analysis
from study.engine.store import ResultsStore, make_cell_key
from study.zoo.backbones import get_backbone

# Registered backbones in ImageNet top-1 order: mobilenet_075 68.4 < mobilenet_v2 71.8 < lite0 75.1 < lite1 76.7.
BACKBONES = ("mobilenet_075", "mobilenet_v2", "efficientnet_lite0", "efficientnet_lite1")
N_TEST = 200
# dataset -> accuracy per backbone (in the order above), the same for both strategies and seeds.
PLANTED = {
    "agree": (0.60, 0.70, 0.80, 0.90),  # ranks 1 2 3 4: rho = +1
    "reverse": (0.90, 0.80, 0.70, 0.60),  # ranks 4 3 2 1: rho = -1
    "swapped": (0.70, 0.60, 0.90, 0.80),  # ranks 2 1 4 3: sum d^2 = 4, rho = 1 - 6*4/(4*15) = 0.6
    "close": (0.700, 0.705, 0.695, 0.710),  # ranks 2 3 1 4: rho = 0.4, but within test-set noise
}
EXPECTED_RHO = {"agree": 1.0, "reverse": -1.0, "swapped": 0.6, "close": 0.4}
TWO_ONLY = "two_only"  # a dataset with two backbones measured: no correlation, a note instead
STRATEGIES = ("linear_probe", "fine_tune_top")
SEEDS = (0, 1)


def _correct(acc: float, seed: int) -> list[int]:
    """A 0/1 vector with exactly round(acc * N_TEST) ones, in a seed-dependent order (the same order for the same
    seed: a better backbone is then right on a superset of the examples, as a clearly better model would be)."""
    k = round(acc * N_TEST)
    vec = np.array([1] * k + [0] * (N_TEST - k))
    return np.random.default_rng(seed).permutation(vec).tolist()


def _cells() -> list[tuple[dict[str, Any], dict[str, Any]]]:
    plan = {**PLANTED, TWO_ONLY: (0.65, 0.75, None, None)}
    out = []
    for dataset, accs in plan.items():
        for strategy in STRATEGIES:
            for backbone, acc in zip(BACKBONES, accs, strict=True):
                if acc is None:
                    continue
                for seed in SEEDS:
                    # "close": each backbone right on different examples, so 0.5-point gaps are noise
                    order = 100 * seed + (BACKBONES.index(backbone) + 1 if dataset == "close" else 0)
                    correct = _correct(acc, order)
                    cell = dict(dataset=dataset, domain="natural", n_images=250, strategy=strategy,
                                backbone=backbone, image_size=64, seed=seed, epochs_budget=10, trials_budget=1,
                                grid="synthetic-backbones")  # fmt: skip
                    result = {"accuracy": float(np.mean(correct)), "balanced_accuracy": float(np.mean(correct)),
                              "majority_share": 0.5, "degenerate": False, "train_seconds": 1.0,
                              "total_params": 1000 * (1 + BACKBONES.index(backbone)),
                              "latency_ms": 2.0 + BACKBONES.index(backbone),
                              "metrics": {"correct": correct, "n_test": N_TEST, "n_classes": 2,
                                          "top_prediction_share": 0.6}}  # fmt: skip
                    out.append((cell, result))
        for seed in SEEDS:  # a from-scratch baseline, which the backbones view must ignore
            cell = dict(dataset=dataset, domain="natural", n_images=250, strategy="scratch_small", backbone="none",
                        image_size=64, seed=seed, epochs_budget=10, trials_budget=1, grid="synthetic-backbones")
            correct = _correct(0.62, seed)
            out.append((cell, {"accuracy": float(np.mean(correct)), "balanced_accuracy": float(np.mean(correct)),
                               "majority_share": 0.5, "degenerate": False,
                               "metrics": {"correct": correct, "n_test": N_TEST, "n_classes": 2}}))  # fmt: skip
    return out


@pytest.fixture(scope="module")
def store_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('bb') / 'study.db'}"
    store = ResultsStore(url)
    for cell, result in _cells():
        assert store.claim(cell)
        assert store.complete(make_cell_key(cell), result)
    store.close()
    return url


@pytest.fixture(scope="module")
def frame(store_url: str) -> pd.DataFrame:
    with ResultsStore(store_url, create=False) as store:
        return analysis.results_frame(store)


@pytest.fixture(scope="module")
def correlations(frame: pd.DataFrame) -> pd.DataFrame:
    return bb.rank_correlations(frame, n_boot=1000)


def _row(corr: pd.DataFrame, dataset: str, strategy: str = "linear_probe") -> dict[str, Any]:
    sel = corr[(corr["dataset"] == dataset) & (corr["strategy"] == strategy)]
    assert len(sel) == 1
    return sel.iloc[0].to_dict()


def test_top1_comes_from_the_registry_records() -> None:
    assert [bb.imagenet_top1(b) for b in BACKBONES] == [get_backbone(b).imagenet_top1 for b in BACKBONES]
    assert [bb.imagenet_top1(b) for b in BACKBONES] == [68.4, 71.8, 75.1, 76.7]
    assert bb.imagenet_top1("none") is None and bb.imagenet_top1("not_registered") is None


def test_rank_correlation_equals_the_planted_value(correlations: pd.DataFrame) -> None:
    assert set(correlations["strategy"]) == set(STRATEGIES)  # scratch_small has no ImageNet accuracy to correlate
    for dataset, rho in EXPECTED_RHO.items():
        for strategy in STRATEGIES:
            row = _row(correlations, dataset, strategy)
            assert row["n_backbones"] == 4
            assert row["rho"] == pytest.approx(rho, abs=1e-12), dataset
            assert row["ci_method"] == "seeds+examples (paired across backbones)"
            assert row["rho_ci_low"] <= row["rho"] + 1e-9 and row["rho"] - 1e-9 <= row["rho_ci_high"], dataset


def test_interval_is_tight_for_clear_gaps_and_wide_within_noise(correlations: pd.DataFrame) -> None:
    agree, reverse, close = (_row(correlations, d) for d in ("agree", "reverse", "close"))
    assert agree["rho_ci_low"] == pytest.approx(1.0) and reverse["rho_ci_high"] == pytest.approx(-1.0)
    # accuracies 0.5 points apart on 200 test examples: the order is noise, and the interval says so
    assert close["rho_ci_low"] < 0.0 < close["rho_ci_high"]
    # exact permutation p-value over 4! orderings: only the identity and its reverse reach |rho| = 1
    assert agree["p"] == pytest.approx(2 / 24) and reverse["p"] == pytest.approx(2 / 24)


def test_fewer_than_three_backbones_gives_a_note_not_a_correlation(correlations: pd.DataFrame) -> None:
    row = _row(correlations, TWO_ONLY)
    assert row["n_backbones"] == 2 and np.isnan(row["rho"]) and np.isnan(row["rho_ci_low"])
    assert "only 2 backbones" in row["note"] and "at least 3" in row["note"]


def test_mean_over_datasets_resamples_datasets(correlations: pd.DataFrame) -> None:
    means = bb.mean_rank_correlations(correlations, n_boot=1000)
    assert len(means) == len(STRATEGIES)
    row = means[means["strategy"] == "linear_probe"].iloc[0]
    assert row["n_datasets"] == 4  # two_only has no rho and does not count
    assert row["mean_rho"] == pytest.approx(np.mean(list(EXPECTED_RHO.values())))
    assert row["ci_low"] < row["mean_rho"] < row["ci_high"] and row["ci_low"] >= -1.0 and row["ci_high"] <= 1.0


def test_backbone_table_has_top1_accuracy_and_cost(frame: pd.DataFrame) -> None:
    table = bb.backbone_table(frame, n_boot=200)
    lp = table[(table["dataset"] == "swapped") & (table["strategy"] == "linear_probe")].set_index("backbone")
    assert list(lp.index) == list(BACKBONES)  # sorted by ImageNet top-1
    assert list(lp["accuracy"]) == pytest.approx(PLANTED["swapped"])
    assert list(lp["total_params"]) == [1000, 2000, 3000, 4000] and list(lp["latency_ms"]) == [2.0, 3.0, 4.0, 5.0]
    assert (lp["ci_low"] <= lp["accuracy"]).all() and (lp["accuracy"] <= lp["ci_high"]).all()


def test_unpaired_rows_fall_back_to_independent_bootstrap(frame: pd.DataFrame) -> None:
    rows = frame[(frame["dataset"] == "swapped") & (frame["strategy"] == "linear_probe")]
    rows = rows[~((rows["backbone"] == "mobilenet_v2") & (rows["seed"] == 1))]  # one backbone lost a seed
    rows = rows.assign(imagenet_top1=rows["backbone"].map(bb.imagenet_top1))
    got = bb.rank_correlation(rows, n_boot=500)
    assert got["rho"] == pytest.approx(0.6) and got["ci_method"].endswith("(independent per backbone)")


def test_no_usable_rows_give_empty_tables_not_errors(frame: pd.DataFrame) -> None:
    degenerate = frame.assign(accuracy=0.5, majority_share=0.5)  # no better than the majority class: all excluded
    for rows in (degenerate, frame[frame["strategy"] == "scratch_small"]):
        assert bb.backbone_table(rows).empty and bb.rank_correlations(rows).empty
        assert bb.mean_rank_correlations(bb.rank_correlations(rows)).empty


def test_figure_renders_with_alt_text(frame: pd.DataFrame, correlations: pd.DataFrame) -> None:
    table = bb.backbone_table(frame, n_boot=200)
    fig = figures.backbone_transfer(table, correlations, ["agree", "reverse", "swapped", "close", TWO_ONLY])
    width, height = _png_size(fig)
    assert width > 300 and height > 200
    assert "ImageNet top-1" in fig.alt and "efficientnet_lite1 76.7 %" in fig.alt
    assert "swapped N=250 linear_probe +0.60" in fig.alt and "fewer than 3 backbones" in fig.alt
    with pytest.raises(figures.NoData, match="two backbones"):
        figures.backbone_transfer(table[table["backbone"] == "mobilenet_v2"], correlations, [])


def _only_the_backbones_view(monkeypatch: pytest.MonkeyPatch) -> None:
    """The other figures and the advisor are tested in test_reports.py; here they would only cost time."""

    def skipped(*_: Any, **__: Any) -> Any:
        raise figures.NoData("not drawn in this test")

    for name in ("accuracy_vs_size", "strategy_map", "gain_over_scratch", "gain_vs_similarity", "cost_vs_accuracy",
                 "learning_curves"):  # fmt: skip
        monkeypatch.setattr(figures, name, skipped)
    monkeypatch.setattr(report_context, "advisor_section", lambda *_: {"available": False, "reason": "not under test"})


def test_report_section_and_cli_show_the_same_numbers(
    store_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _only_the_backbones_view(monkeypatch)
    with ResultsStore(store_url, create=False) as store:
        gathered = data.gather(store, n_boot=300)
    html = build.render(build.context(gathered, {"links": [], "error": ""}))
    page = Page(html)
    assert "backbones" in page.ids and "fig-backbones" in page.ids
    shown = {r["key"]: r["cells"] for r in page.tables["backbone-correlations"]}
    corr = gathered.backbone_correlations
    assert len(shown) == len(corr) == 10
    for rec in corr.to_dict("records"):
        cells = shown[f"{rec['dataset']}|{rec['n_images']}|{rec['image_size']}|{rec['strategy']}"]
        if np.isnan(rec["rho"]):
            assert cells[5] == "" and "only 2 backbones" in cells[-1]
        else:
            assert float(cells[5]) == pytest.approx(rec["rho"], abs=5e-3)
    assert len(page.tables["backbones"]) == len(gathered.backbones)
    assert len(page.images) == 1 and "ImageNet top-1" in page.images[0]["alt"]
    assert page.images[0]["src"].startswith("data:image/png;base64,")
    assert any("mean Spearman ρ = +0.25" in f for f in data.key_findings(gathered))  # (1 - 1 + 0.6 + 0.4) / 4
    assert analysis.main(["--store", store_url]) == 0
    out = capsys.readouterr().out
    assert "## ImageNet top-1 vs transfer accuracy" in out
    prefix = "| swapped | 250 | 64 | linear_probe | 4 |"  # the correlation table's row (n_backbones = 4)
    assert next(line for line in out.splitlines() if line.startswith(prefix)).startswith(f"{prefix} 0.600 |")
    assert "only 2 backbones measured here" in out
