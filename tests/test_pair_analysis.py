"""The analysis carries the pair axis (#20): pair cells never mix with ordinary cells or with each other."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from study.analysis import adaptation, backbones, stats, tables


def _rows(strategy: str, accs: list[float], rng: np.random.Generator, **extra: object) -> list[dict]:
    out = []
    for seed, acc in enumerate(accs):
        correct = np.zeros(200, np.int8)
        correct[: round(acc * 200)] = 1
        base = dict(dataset="mnist_m", n_images=100, strategy=strategy, backbone="mobilenet_v2", image_size=32,
                    seed=seed, accuracy=acc, balanced_accuracy=acc, majority_share=0.11, n_classes=10,
                    correct=rng.permutation(correct).tolist(), degenerate=False, source=None, n_target_labels=None)
        out.append({**base, **extra})
    return out


@pytest.fixture
def frame() -> pd.DataFrame:
    """One target (mnist_m, 100 images, 32 px): an ordinary linear probe, and pair cells from two sources and
    two N_t whose dataset, n_images, strategy, backbone and size coincide, so only the pair axis tells them apart."""
    rng = np.random.default_rng(0)
    rows = (
        _rows("linear_probe", [0.90, 0.92], rng)
        + _rows("scratch_small", [0.50, 0.52], rng, backbone="none")
        + _rows("source_only", [0.30, 0.32], rng, source="mnist", n_target_labels=0)
        + _rows("dann", [0.40, 0.44], rng, source="mnist", n_target_labels=0)
        + _rows("source_only", [0.60, 0.62], rng, source="mnist", n_target_labels=50)
        + _rows("dann", [0.70, 0.72], rng, source="mnist", n_target_labels=50)
        + _rows("target_only", [0.20, 0.24], rng, source="mnist", n_target_labels=50)
        + _rows("dann", [0.35, 0.37], rng, source="svhn", n_target_labels=0)
        + _rows("dann_cnn", [0.80, 0.84], rng, backbone=None, source="mnist", n_target_labels=0)
    )
    return pd.DataFrame(rows)


def test_summarise_keeps_each_pair_cell_apart(frame):
    summary = stats.summarise(frame)
    assert {"source", "n_target_labels"} <= set(summary.columns)
    dann = summary[summary["strategy"] == "dann"].set_index(["source", "n_target_labels"])["accuracy_mean"]
    assert dann.loc[("mnist", 0)] == pytest.approx(0.42) and dann.loc[("mnist", 50)] == pytest.approx(0.71)
    assert dann.loc[("svhn", 0)] == pytest.approx(0.36)
    probe = summary[summary["strategy"] == "linear_probe"]
    assert len(probe) == 1 and probe["source"].isna().all() and probe["n_seeds"].iloc[0] == 2


def test_an_ordinary_frame_keeps_its_columns(frame):
    plain = frame[frame["source"].isna()].drop(columns=["source", "n_target_labels"])
    assert list(stats.summarise(plain).columns[:5]) == list(stats.CELL_KEYS)
    assert "source" not in stats.summarise(plain).columns


def test_best_per_cell_and_gains_never_mix_pairs_with_ordinary_cells(frame):
    best = tables.best_per_cell(stats.summarise(frame))
    ordinary = best[best["source"].isna()]
    assert list(ordinary["best_strategy"]) == ["linear_probe"]  # not dann_cnn (0.82), a pair cell
    assert len(best) == 4  # ordinary; mnist N_t 0; mnist N_t 50; svhn N_t 0
    at50 = best[(best["source"] == "mnist") & (best["n_target_labels"] == 50)].iloc[0]
    assert at50["best_strategy"] == "dann" and at50["runner_up"] == "source_only/mobilenet_v2"
    gains = stats.transfer_gain(frame)
    assert list(gains["strategy"]) == ["linear_probe"] and gains["baseline_strategy"].iloc[0] == "scratch_small"


def test_the_backbone_analysis_leaves_pair_cells_out(frame):
    table = backbones.backbone_table(frame)
    assert set(table["strategy"]) == {"linear_probe"}


def test_the_domain_adaptation_table(frame):
    table = adaptation.domain_adaptation_table(frame).set_index(["source", "n_target_labels", "network"])
    row = table.loc[("mnist", 50, "mobilenet_v2 features")]
    assert (row["source_only"], row["dann"], row["target_only"]) == pytest.approx((0.61, 0.71, 0.22))
    assert row["dann_ci_low"] < 0.71 < row["dann_ci_high"] and row["dann_seeds"] == 2
    assert np.isnan(row["source_then_target"]) and row["source_then_target_seeds"] == 0
    assert table.loc[("mnist", 0, "small CNN"), "dann"] == pytest.approx(0.82)  # the CNN on its own row
    assert np.isnan(table.loc[("mnist", 0, "small CNN"), "source_only"])
    assert table.loc[("svhn", 0, "mobilenet_v2 features"), "dann"] == pytest.approx(0.36)
    assert len(table) == 4
    text = adaptation.markdown(adaptation.domain_adaptation_table(frame))
    assert "| mnist → mnist_m | 50 | 100 | 32 | mobilenet_v2 features | 0.610 [" in text
    assert adaptation.domain_adaptation_table(frame[frame["source"].isna()]).empty


def test_anchors_match_pair_cells_by_source_and_n_target_labels(frame):
    from types import SimpleNamespace

    from reports import data as rdata

    (dann,) = [a for a in rdata.load_anchors() if a["id"] == "dann-mnist-m"]
    assert dann["value"] == 0.7666 and dann["ours"]["n_target_labels"] == 0
    runs = SimpleNamespace(runs=frame)
    (row,) = rdata.anchor_rows(runs, [{**dann, "ours": {**dann["ours"], "strategies": ["dann"]}}])
    assert row["ours_value"] == pytest.approx(0.42)  # mnist -> mnist_m at N_t = 0, not N_t = 50 (0.71) or svhn
    plain = {**dann, "ours": {"strategies": "any", "n_images": "max"}}
    (row,) = rdata.anchor_rows(runs, [plain])
    assert row["ours_cell"] == "linear_probe/mobilenet_v2"  # an ordinary anchor never picks a pair cell


def test_the_analysis_command_prints_the_domain_adaptation_table_from_a_pair_only_store(tmp_path, capsys):
    """``python -m study.analysis`` on a store holding only pair cells: no transfer-gain rows (none apply), and the
    domain-adaptation section with each recipe's interval."""
    from study.engine.store import ResultsStore, make_cell_key

    url = f"sqlite:///{tmp_path / 'pairs.db'}"
    store = ResultsStore(url)
    rng = np.random.default_rng(0)
    for strategy, accs in (("source_only", [0.30, 0.32]), ("dann", [0.50, 0.54])):
        for seed, acc in enumerate(accs):
            cell = dict(dataset="pacs_cartoon", domain="art", n_images=100, strategy=strategy, backbone="mobilenet_v2",
                        image_size=64, seed=seed, epochs_budget=2, trials_budget=1, grid="g", source="pacs_photo",
                        n_target_labels=0)  # fmt: skip
            correct = np.zeros(200, np.int8)
            correct[: round(acc * 200)] = 1
            assert store.claim(cell)
            assert store.complete(make_cell_key(cell), {
                "accuracy": acc, "balanced_accuracy": acc, "majority_share": 0.2, "degenerate": False,
                "metrics": {"correct": rng.permutation(correct).tolist(), "n_test": 200, "n_classes": 7}})
    store.close()
    assert tables.main(["--store", url]) == 0
    out = capsys.readouterr().out
    assert "## Domain adaptation" in out
    assert "| pacs_photo → pacs_cartoon | 0 | 100 | 64 | mobilenet_v2 features | 0.310 [" in out


def test_the_report_data_of_pair_cells_only_has_no_negative_transfer_and_no_crash(frame):
    """A store of pair cells only gives an empty gains table; its object-dtype flag columns must still act as masks
    (pandas reads an empty object Series as a list of column labels: the report crashed with KeyError 'gain')."""
    from reports.data import gather

    data = gather(frame[frame["source"].notna()], n_boot=50)
    assert data.gains.empty
    assert data.negative_transfer.empty and "gain" in data.negative_transfer.columns
