"""Transferability and domain-gap scores on frozen features."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import scipy.optimize
import scipy.stats

from study.errors import StudyError
from study.probes.similarity import (
    frechet_covariance_used,
    frechet_distance,
    frechet_distance_gaussians,
    knn_accuracy,
    linear_probe_accuracy,
    logme,
    logme_evidence,
    similarity_report,
)


def _blobs(n_per_class: int, n_classes: int, d: int, sep: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, d)) * sep
    y = np.repeat(np.arange(n_classes), n_per_class)
    return centres[y] + rng.normal(size=(y.size, d)), y


# -- Fréchet distance --------------------------------------------------------------------------------------


def test_frechet_of_a_set_with_itself_is_zero() -> None:
    x = np.random.default_rng(0).normal(size=(200, 8))
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-8)
    assert frechet_distance(x, x, covariance="ledoit_wolf") == pytest.approx(0.0, abs=1e-8)


def test_frechet_of_a_shifted_set_is_the_squared_shift() -> None:
    x = np.random.default_rng(1).normal(size=(300, 6))
    distances = [frechet_distance(x, x + s) for s in (0.0, 0.5, 1.0, 2.0)]
    assert distances == sorted(distances)
    assert distances[2] == pytest.approx(6 * 1.0**2, rel=1e-6)  # same covariance: only the means differ
    assert distances[3] == pytest.approx(6 * 2.0**2, rel=1e-6)


def test_frechet_matches_the_1d_closed_form() -> None:
    rng = np.random.default_rng(2)
    a, b = rng.normal(1.0, 2.0, size=(400, 1)), rng.normal(-0.5, 0.5, size=(300, 1))
    expected = (a.mean() - b.mean()) ** 2 + (a.std(ddof=1) - b.std(ddof=1)) ** 2
    assert frechet_distance(a, b, covariance="empirical") == pytest.approx(expected, rel=1e-9)


def test_frechet_gaussians_match_closed_and_general_forms() -> None:
    mu_a, mu_b = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    var_a, var_b = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    diagonal = np.sum((mu_a - mu_b) ** 2) + np.sum((np.sqrt(var_a) - np.sqrt(var_b)) ** 2)
    got = frechet_distance_gaussians(mu_a, np.diag(var_a), mu_b, np.diag(var_b))
    assert got == pytest.approx(diagonal, rel=1e-12)
    # Full covariances against the textbook sqrtm formula.
    rng = np.random.default_rng(3)
    m_a, m_b = rng.normal(size=(5, 5)), rng.normal(size=(5, 5))
    s_a, s_b = m_a @ m_a.T, m_b @ m_b.T
    covmean = scipy.linalg.sqrtm(s_a @ s_b).real
    textbook = 5 * 1.0**2 + np.trace(s_a + s_b - 2 * covmean)
    assert frechet_distance_gaussians(np.zeros(5), s_a, np.ones(5), s_b) == pytest.approx(textbook, rel=1e-8)


def test_frechet_with_fewer_samples_than_dimensions_is_stable() -> None:
    rng = np.random.default_rng(4)
    d = 64
    a, b, c = rng.normal(size=(40, d)), rng.normal(size=(40, d)), rng.normal(0.5, 1.0, size=(40, d))
    assert frechet_covariance_used(40, 40, d) == "ledoit_wolf"
    assert frechet_covariance_used(400, 400, d) == "empirical"
    same, shifted = frechet_distance(a, b), frechet_distance(a, c)
    assert math.isfinite(same) and same >= 0
    assert shifted > same + d * 0.25 * 0.5  # the mean shift alone contributes d * 0.25
    with pytest.raises(StudyError, match="width"):
        frechet_distance(a, b[:, :10])
    with pytest.raises(StudyError, match="unknown covariance"):
        frechet_distance(a, b, covariance="oas")  # type: ignore[arg-type]


# -- LogME -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "d"), [(6, 3), (5, 8)])
def test_logme_matches_direct_maximisation_of_the_evidence(n: int, d: int) -> None:
    rng = np.random.default_rng(n * 10 + d)
    f = rng.normal(size=(n, d))
    y = np.array([0, 1] * (n // 2) + [1] * (n % 2))
    maxima = []
    for cls in (0, 1):
        target = (y == cls).astype(float)

        def negative(p: np.ndarray, target: np.ndarray = target) -> float:
            # The formula with explicit d x d matrices (no SVD), as written in the paper.
            alpha, beta = np.exp(p)
            a_mat = alpha * np.eye(d) + beta * f.T @ f
            m = beta * np.linalg.solve(a_mat, f.T @ target)
            value = (
                n / 2 * np.log(beta)
                + d / 2 * np.log(alpha)
                - n / 2 * np.log(2 * np.pi)
                - beta / 2 * np.sum((f @ m - target) ** 2)
                - alpha / 2 * m @ m
                - 0.5 * np.linalg.slogdet(a_mat)[1]
            )
            return -float(value)

        starts = [(0.0, 0.0), (-3.0, 3.0), (3.0, -1.0), (5.0, 1.0)]
        opts = {"xatol": 1e-10, "fatol": 1e-13, "maxiter": 4000}
        best = min(
            (scipy.optimize.minimize(negative, s, method="Nelder-Mead", options=opts) for s in starts),
            key=lambda r: r.fun,
        )
        maxima.append(-best.fun / n)
        # The helper evaluates the same formula.
        assert logme_evidence(f, target, *np.exp(best.x)) == pytest.approx(-best.fun, rel=1e-10)
    assert logme(f, y) == pytest.approx(np.mean(maxima), abs=1e-6)


def test_evidence_formula_is_the_gaussian_marginal_likelihood() -> None:
    """Independent check of the formula itself: y ~ N(0, F F'/alpha + I/beta)."""
    rng = np.random.default_rng(7)
    f, y = rng.normal(size=(6, 3)), rng.integers(0, 2, 6).astype(float)
    alpha, beta = 0.7, 2.5
    cov = f @ f.T / alpha + np.eye(6) / beta
    direct = scipy.stats.multivariate_normal(np.zeros(6), cov).logpdf(y)
    assert logme_evidence(f, y, alpha, beta) == pytest.approx(direct, rel=1e-10)


def test_logme_prefers_separable_features() -> None:
    separable, y = _blobs(40, 3, 16, sep=3.0, seed=8)
    noise = np.random.default_rng(9).normal(size=separable.shape)
    assert logme(separable, y) > logme(noise, y) + 0.1
    assert logme(separable, y) == logme(separable, y)


def test_logme_rejects_bad_input() -> None:
    with pytest.raises(StudyError, match="2 classes"):
        logme(np.ones((5, 2)), np.zeros(5))
    with pytest.raises(StudyError, match="labels"):
        logme(np.ones((5, 2)), np.zeros(4))


# -- probes ------------------------------------------------------------------------------------------------


def test_probes_beat_chance_on_blobs_and_not_on_noise() -> None:
    blobs, y = _blobs(30, 4, 12, sep=2.0, seed=10)
    noise = np.random.default_rng(11).normal(size=blobs.shape)
    assert knn_accuracy(blobs, y) > 0.85
    assert linear_probe_accuracy(blobs, y) > 0.85
    assert knn_accuracy(noise, y) < 0.25 + 0.15
    assert linear_probe_accuracy(noise, y) < 0.25 + 0.15
    assert knn_accuracy(blobs, y, seed=3) == knn_accuracy(blobs, y, seed=3)


def test_probes_handle_tiny_classes_and_string_labels() -> None:
    f, y = _blobs(6, 3, 5, sep=3.0, seed=12)
    labels = np.array(["cat", "dog", "owl"])[y]
    keep = np.r_[0:6, 6:8, 12]  # 6 cats, 2 dogs, 1 owl
    for score in (knn_accuracy(f[keep], labels[keep]), linear_probe_accuracy(f[keep], labels[keep])):
        assert 0.0 <= score <= 1.0
    assert knn_accuracy(f[[0, 1, 6, 7]], y[[0, 1, 6, 7]], k=5) >= 0.0
    with pytest.raises(StudyError, match="2 classes"):
        knn_accuracy(f, np.zeros(len(f)))


def _near_duplicate_groups(n_groups: int = 30, per_group: int = 8, d: int = 128, seed: int = 20):
    """Groups of near-duplicates (one patient's slices, one sign's track) with a label drawn per group at random:
    the features say which group an image is from and nothing about its class."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_groups, d))
    group_labels = np.repeat([0, 1], n_groups // 2)
    rng.shuffle(group_labels)
    groups = np.repeat(np.arange(n_groups), per_group)
    f = centres[groups] + 0.01 * rng.normal(size=(groups.size, d))
    return f, group_labels[groups], groups


def test_grouped_folds_do_not_leak_near_duplicates() -> None:
    f, y, groups = _near_duplicate_groups()
    # Ungrouped folds put a group's near-duplicates on both sides: both probes look almost perfect.
    assert knn_accuracy(f, y) > 0.95
    assert linear_probe_accuracy(f, y) > 0.95
    # Grouped folds keep each group in one fold: labels are random per group, so the probes fall to chance.
    assert knn_accuracy(f, y, groups=groups) < 0.7
    assert linear_probe_accuracy(f, y, groups=groups) < 0.7
    # Group ids of any type; a single group, or a length mismatch, is a one-line error.
    assert knn_accuracy(f, y, groups=[f"slide{g}" for g in groups]) < 0.7
    with pytest.raises(StudyError, match="2 groups"):
        knn_accuracy(f, y, groups=np.zeros(len(y)))
    with pytest.raises(StudyError, match="groups has"):
        linear_probe_accuracy(f, y, groups=groups[:-1])


def test_grouped_folds_without_leakage_match_the_signal() -> None:
    """Where classes are truly separable, group-aware folds still find it (they are not simply pessimistic)."""
    f, y = _blobs(30, 4, 12, sep=2.0, seed=10)
    groups = np.arange(len(y)) % 15
    assert knn_accuracy(f, y, groups=groups) > 0.85
    assert linear_probe_accuracy(f, y, groups=groups) > 0.85


def test_similarity_report_has_every_score() -> None:
    f, y = _blobs(20, 3, 8, sep=2.0, seed=13)
    ref = np.random.default_rng(14).normal(size=(50, 8))
    report = similarity_report(f, y, ref)
    assert set(report) == {
        "n",
        "d",
        "n_classes",
        "majority_share",
        "logme",
        "knn_accuracy",
        "linear_probe_accuracy",
        "frechet_distance",
        "frechet_covariance",
        "cv_groups",
    }
    assert report["frechet_covariance"] == "empirical" and report["frechet_distance"] > 0
    assert report["cv_groups"] is None
    assert similarity_report(f, y, groups=np.arange(len(y)) // 4)["cv_groups"] == len(y) // 4
    assert math.isnan(similarity_report(f, y)["frechet_distance"])


def test_select_c_takes_the_penalty_its_folds_prefer_and_the_stronger_one_on_a_tie():
    from study.probes.similarity import select_c

    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], [45, 15])
    signal = labels[:, None] * 2.0 - 1.0 + rng.normal(0, 0.5, (60, 4))
    # Tiny coordinates (as unit-norm embeddings have): a strong penalty flattens the fit to the majority class (75 %),
    # a weak one separates the classes, so the folds must prefer the large C.
    c, predictions, tests = select_c(signal * 1e-3, labels, (0.01, 1.0, 1e6), 5, 0)
    assert c == 1e6 and np.mean(predictions == labels) > 0.9
    assert sorted(np.concatenate(tests).tolist()) == list(range(60))  # every row held out exactly once
    # At unit scale C = 1 already separates them as well as 1e6: the tie goes to the smaller C, whatever the order.
    c, _, _ = select_c(signal, labels, (1e6, 1.0), 5, 0)
    assert c == 1.0
