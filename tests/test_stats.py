"""Fair-comparison statistics: degeneracy, bootstrap intervals, summaries and the transfer verdict."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from study.analysis.stats import (
    bootstrap_ci,
    bootstrap_ci_from_accuracies,
    difference_ci,
    is_degenerate,
    mark_degenerate,
    mixed_budgets,
    prediction_summary,
    summarise,
    transfer_gain,
)
from study.errors import StudyError


def _correct(n: int, acc: float, rng: np.random.Generator) -> np.ndarray:
    """A 0/1 vector of length n with exactly round(acc * n) ones, shuffled."""
    v = np.zeros(n, dtype=np.int8)
    v[: int(round(acc * n))] = 1
    return rng.permutation(v)


# -- degenerate models ---------------------------------------------------------------------------------------


def test_constant_predictions_are_degenerate() -> None:
    y = np.repeat([0, 1, 2], [50, 30, 20])
    assert is_degenerate(y, np.zeros_like(y), n_classes=3)
    assert is_degenerate(y, np.full_like(y, 2), n_classes=3)


def test_decent_model_is_not_degenerate() -> None:
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], [50, 30, 20])
    pred = y.copy()
    wrong = rng.choice(y.size, 20, replace=False)
    pred[wrong] = (pred[wrong] + 1) % 3
    assert not is_degenerate(y, pred, n_classes=3)


def test_good_model_on_imbalanced_test_set_is_not_a_collapse() -> None:
    # 96% of the test set is class 0; a model right on almost everything predicts class 0 96% of the time.
    y = np.array([0] * 96 + [1] * 4)
    pred = y.copy()
    pred[96] = 0  # one minority example missed
    assert not is_degenerate(y, pred, n_classes=2)


def test_chance_balanced_accuracy_is_degenerate() -> None:
    # Beats the majority share a little, but only because it never predicts class 1 correctly.
    y = np.array([0] * 50 + [1] * 50)
    pred = np.array([0] * 50 + [0] * 45 + [1] * 5)
    pred[:5] = 1  # 5 class-0 errors, 5 class-1 hits: balanced accuracy exactly 0.5
    assert is_degenerate(y, pred, n_classes=2)


def test_prediction_summary_columns() -> None:
    s = prediction_summary([0, 0, 0, 1], [0, 0, 1, 1], n_classes=2)
    assert s["accuracy"] == 0.75
    assert s["balanced_accuracy"] == pytest.approx((2 / 3 + 1) / 2)
    assert s["majority_share"] == 0.75
    assert s["top_prediction_share"] == 0.5
    assert s["correct"] == [1, 1, 0, 1]
    with pytest.raises(StudyError, match="pass one prediction per label"):
        prediction_summary([0, 1], [0], n_classes=2)


def test_mark_degenerate_on_a_frame_keeps_runner_flags() -> None:
    frame = pd.DataFrame(
        {
            "accuracy": [0.50, 0.90, 0.90],
            "majority_share": [0.50, 0.50, 0.50],
            "balanced_accuracy": [0.50, 0.90, 0.90],
            "n_classes": [2, 2, 2],
            "degenerate": [False, False, True],  # the third was flagged by the runner (e.g. NaN loss)
        }
    )
    out = mark_degenerate(frame)
    assert out["degenerate"].tolist() == [True, False, True]
    assert "degenerate" in frame and frame["degenerate"].tolist() == [False, False, True]  # input untouched
    with pytest.raises(StudyError, match="majority_share"):
        mark_degenerate(pd.DataFrame({"accuracy": [0.5]}))


# -- bootstrap ---------------------------------------------------------------------------------------------


def test_bootstrap_ci_contains_mean_and_is_deterministic() -> None:
    rng = np.random.default_rng(1)
    seeds = [_correct(200, a, rng) for a in (0.70, 0.74, 0.78)]
    mean, low, high = bootstrap_ci(seeds)
    assert mean == pytest.approx(np.mean([0.70, 0.74, 0.78]))
    assert low < mean < high
    assert bootstrap_ci(seeds) == (mean, low, high)
    assert bootstrap_ci(seeds, rng_seed=1) != (mean, low, high)


def test_bootstrap_ci_shrinks_with_more_data() -> None:
    rng = np.random.default_rng(2)

    def width(n_seeds: int, n_test: int) -> float:
        accs = 0.75 + 0.02 * rng.standard_normal(n_seeds)
        _, low, high = bootstrap_ci([_correct(n_test, a, rng) for a in accs])
        return high - low

    assert width(3, 2000) < width(3, 100)  # more test examples
    assert width(1, 4000) < width(1, 250)  # the one-seed case is the test-example bootstrap alone
    single = bootstrap_ci([_correct(400, 0.8, rng)])
    assert single[1] < 0.8 < single[2]


def test_bootstrap_matches_a_naive_resampling_loop() -> None:
    """The binomial shortcut must give the distribution of explicit seed-then-example resampling."""
    rng = np.random.default_rng(3)
    seeds = [_correct(150, a, rng) for a in (0.6, 0.7, 0.8)]
    naive_rng = np.random.default_rng(99)
    reps = []
    for _ in range(3000):
        drawn = naive_rng.integers(0, 3, 3)
        reps.append(np.mean([seeds[s][naive_rng.integers(0, 150, 150)].mean() for s in drawn]))
    _, low, high = bootstrap_ci(seeds, n_boot=20000)
    naive_low, naive_high = np.quantile(reps, [0.025, 0.975])
    assert low == pytest.approx(naive_low, abs=0.01)
    assert high == pytest.approx(naive_high, abs=0.01)


def test_fallback_from_accuracies() -> None:
    rng = np.random.default_rng(4)
    seeds = [_correct(300, a, rng) for a in (0.70, 0.80)]
    # With n_test the counts are recovered, so the interval is the full hierarchical one.
    assert bootstrap_ci_from_accuracies([0.70, 0.80], n_test=300) == bootstrap_ci(seeds)
    mean, low, high = bootstrap_ci_from_accuracies([0.70, 0.72, 0.80])  # seeds only
    assert low <= mean <= high and low >= 0.70 - 1e-12 and high <= 0.80 + 1e-12
    mean, low, high = bootstrap_ci_from_accuracies([0.7])  # nothing to resample
    assert mean == 0.7 and math.isnan(low) and math.isnan(high)


def test_difference_ci_pairing_and_sign() -> None:
    rng = np.random.default_rng(5)
    base = [_correct(500, 0.7, rng) for _ in range(3)]
    # B is A with 40 extra examples fixed: highly correlated with A, as two models on one test set are.
    better = []
    for v in base:
        w = v.copy()
        w[np.flatnonzero(w == 0)[:40]] = 1
        better.append(w)
    mean, low, high = difference_ci(better, base)
    assert mean == pytest.approx(0.08)
    assert 0 < low < mean < high
    assert difference_ci(better, base) == (mean, low, high)
    # Unpaired (different test-set sizes) must be wider: it cannot cancel shared easy/hard examples.
    _, ulow, uhigh = difference_ci(better, [np.concatenate([v, v[:1]]) for v in base])
    assert uhigh - ulow > high - low
    with pytest.raises(StudyError, match="0/1"):
        difference_ci([np.array([0.5, 1.0])], base)


# -- tables ------------------------------------------------------------------------------------------------


def _rows(strategy: str, backbone: str, accs: list[float], rng: np.random.Generator, **extra: object) -> list[dict]:
    rows = []
    for seed, acc in enumerate(accs):
        rows.append(
            dict(
                dataset="toy",
                n_images=100,
                strategy=strategy,
                backbone=backbone,
                image_size=96,
                seed=seed,
                accuracy=acc,
                balanced_accuracy=acc,
                majority_share=0.5,
                n_classes=2,
                correct=_correct(400, acc, rng).tolist(),
                **extra,
            )
        )
    return rows


@pytest.fixture
def results() -> pd.DataFrame:
    rng = np.random.default_rng(6)
    rows = (
        _rows("scratch", "b1", [0.64, 0.66, 0.65], rng)
        + _rows("scratch", "b2", [0.60, 0.61, 0.62], rng)
        # Looks like the best baseline, but the runner flagged it (say its loss diverged): must not count.
        + _rows("scratch_small", "b1", [0.80, 0.82, 0.81], rng, degenerate=True)
        + _rows("fine_tune", "b1", [0.80, 0.82, 0.84], rng)  # clear gain
        + _rows("linear_probe", "b1", [0.52, 0.55, 0.54], rng)  # clear loss
        + _rows("frozen", "b2", [0.64, 0.66, 0.655], rng)  # indistinguishable
    )
    for row in rows:
        row.setdefault("degenerate", False)
    # A collapsed seed inside the fine_tune cell: accuracy at the majority share, no correctness vector.
    assert rows[9]["strategy"] == "fine_tune"
    rows.append({**rows[9], "seed": 9, "accuracy": 0.5, "balanced_accuracy": 0.5, "correct": None})
    return pd.DataFrame(rows)


def test_summarise_excludes_degenerate_rows(results: pd.DataFrame) -> None:
    summary = summarise(results).set_index(["strategy", "backbone"])
    fine = summary.loc[("fine_tune", "b1")]
    assert (fine["n_rows"], fine["n_degenerate"], fine["n_seeds"]) == (4, 1, 3)
    assert fine["accuracy_mean"] == pytest.approx(0.82)
    assert fine["accuracy_std"] == pytest.approx(0.02)
    assert fine["accuracy_ci_low"] < 0.82 < fine["accuracy_ci_high"]
    assert fine["ci_method"] == "seeds+examples"
    flagged = summary.loc[("scratch_small", "b1")]
    assert flagged["n_seeds"] == 0 and math.isnan(flagged["accuracy_mean"])
    assert summarise(results).equals(summarise(results))


def test_summarise_without_correctness_vectors(results: pd.DataFrame) -> None:
    plain = results.drop(columns=["correct"])
    summary = summarise(plain).set_index(["strategy", "backbone"])
    assert summary.loc[("scratch", "b1"), "ci_method"] == "seeds"
    with_n = summarise(plain.assign(n_test=400)).set_index(["strategy", "backbone"])
    assert with_n.loc[("scratch", "b1"), "ci_method"] == "seeds+examples"


def test_transfer_gain_verdicts(results: pd.DataFrame) -> None:
    gains = transfer_gain(results).set_index("strategy")
    # The best valid scratch baseline, across backbones; the flagged scratch_small never is.
    assert set(gains["baseline_strategy"]) == {"scratch"}
    assert set(gains["baseline_backbone"]) == {"b1"}
    assert gains.loc["frozen", "backbone"] == "b2"  # a b2 cell is still compared with the b1 baseline
    assert gains["baseline_accuracy"].iloc[0] == pytest.approx(0.65)

    fine = gains.loc["fine_tune"]
    assert fine["gain"] == pytest.approx(0.17) and fine["gain_ci_low"] > 0
    assert fine["significant_gain"] and not fine["negative_transfer"]
    assert fine["n_degenerate"] == 1 and fine["n_seeds"] == 3

    probe = gains.loc["linear_probe"]
    assert probe["gain"] < 0 and probe["gain_ci_high"] < 0
    assert probe["negative_transfer"] and not probe["significant_gain"]

    frozen = gains.loc["frozen"]
    assert frozen["gain_ci_low"] < 0 < frozen["gain_ci_high"]
    assert not frozen["negative_transfer"] and not frozen["significant_gain"]
    assert transfer_gain(results).equals(transfer_gain(results))


def test_transfer_gain_without_a_valid_baseline(results: pd.DataFrame) -> None:
    no_scratch = results[~results["strategy"].isin(["scratch"])]
    gains = transfer_gain(no_scratch)
    assert gains["baseline_strategy"].isna().all()
    assert not gains["negative_transfer"].any() and not gains["significant_gain"].any()


def test_paired_difference_matches_a_naive_resampling_loop() -> None:
    rng = np.random.default_rng(7)
    a = [_correct(120, acc, rng) for acc in (0.7, 0.75)]
    b = [_correct(120, acc, rng) for acc in (0.6, 0.7)]
    naive_rng = np.random.default_rng(98)
    reps = []
    for _ in range(3000):
        drawn = naive_rng.integers(0, 2, 2)
        idx = [naive_rng.integers(0, 120, 120) for _ in drawn]
        reps.append(np.mean([a[s][i].mean() - b[s][i].mean() for s, i in zip(drawn, idx, strict=True)]))
    _, low, high = difference_ci(a, b, n_boot=20000)
    naive_low, naive_high = np.quantile(reps, [0.025, 0.975])
    assert low == pytest.approx(naive_low, abs=0.01)
    assert high == pytest.approx(naive_high, abs=0.01)


def test_rows_without_a_measurement_are_degenerate() -> None:
    frame = pd.DataFrame(
        {
            "accuracy": pd.array([0.9, pd.NA], dtype="Float64"),
            "majority_share": pd.array([0.5, pd.NA], dtype="Float64"),
            "degenerate": pd.array([pd.NA, pd.NA], dtype="boolean"),
        }
    )
    assert mark_degenerate(frame)["degenerate"].tolist() == [False, True]


def test_a_comparison_under_two_training_budgets_is_refused(results: pd.DataFrame) -> None:
    one_budget = results.assign(trials_budget=1, epochs_budget=10, augment=False)
    assert mixed_budgets(one_budget) == []
    summarise(one_budget, n_boot=50)  # one budget: accepted
    tuned = one_budget["strategy"] == "fine_tune"
    mixed = one_budget.assign(trials_budget=np.where(tuned, 4, 1))  # the fine-tune searched 4 trials, the rest 1
    assert mixed_budgets(mixed) == ["toy n=100 at 96 px (trials_budget=1, epochs_budget=10, augment=False vs "
                                    "trials_budget=4, epochs_budget=10, augment=False)"]  # fmt: skip
    for compare in (summarise, transfer_gain):
        with pytest.raises(StudyError, match="mix training budgets within one comparison: toy n=100"):
            compare(mixed, n_boot=50)
    other_cell = mixed.assign(n_images=np.where(tuned, 200, 100))  # different comparisons may differ
    assert mixed_budgets(other_cell) == []


def test_a_model_whose_scores_carry_no_information_is_degenerate_on_an_imbalanced_test_set():
    """Issue 16: a near-constant model (p = 0.50 everywhere, ROC-AUC 0.5) passed as a 0.625-accuracy result."""
    from study.quality import degenerate_rule
    from study.train.training import classification_metrics

    y = np.array([1] * 250 + [0] * 150)  # 62.5 % majority
    p1 = 0.5 + np.random.default_rng(0).normal(0, 1e-6, len(y))  # nothing learned: noise around 0.5
    m = classification_metrics(y, np.stack([1 - p1, p1], axis=1), 2)
    assert m["roc_auc"] == pytest.approx(0.5, abs=0.05) and m["degenerate"]
    # the rule itself: an accuracy above the majority share but chance-level ranking
    assert degenerate_rule(0.64, 0.625, 0.53, 2, 0.9, roc_auc=0.5)
    assert not degenerate_rule(0.64, 0.625, 0.53, 2, 0.9)  # without the scores the other rules let it pass
    assert not degenerate_rule(0.64, 0.625, 0.53, 2, 0.9, roc_auc=0.56)  # weak but informative (RetinaMNIST-like)
