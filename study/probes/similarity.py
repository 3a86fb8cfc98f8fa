"""Transferability and domain-gap scores computed on frozen, globally pooled ImageNet features.

Why: training every (strategy, backbone) cell is expensive; these scores are cheap predictors of how well
a frozen backbone's features already fit the target task (LogME, kNN, linear probe) and of how far the
target domain lies from the source domain (Fréchet distance to reference features, as FID does for
Inception features). The study records them next to the measured accuracies so the advisor can learn
which score predicts transfer.

Inputs are plain arrays: ``F`` is (n, d) float features, ``y`` a length-n label vector of any hashable
values.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from sklearn.covariance import LedoitWolf
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold
from sklearn.neighbors import KNeighborsClassifier

from study.errors import StudyError

Covariance = Literal["auto", "empirical", "ledoit_wolf"]
_F64 = npt.NDArray[np.float64]


# ----------------------------------------------------------------------------------------------------------
# Fréchet distance
# ----------------------------------------------------------------------------------------------------------


def frechet_distance_gaussians(
    mu_a: npt.ArrayLike, cov_a: npt.ArrayLike, mu_b: npt.ArrayLike, cov_b: npt.ArrayLike
) -> float:
    """Fréchet (2-Wasserstein squared) distance between N(mu_a, cov_a) and N(mu_b, cov_b).

    ``||mu_a - mu_b||^2 + Tr(Sa) + Tr(Sb) - 2 Tr((Sa Sb)^{1/2})``. The trace of the matrix square root is
    computed from eigenvalues instead of ``scipy.linalg.sqrtm``: ``Sa Sb`` is similar to the symmetric PSD
    matrix ``Sa^{1/2} Sb Sa^{1/2}``, so ``Tr((Sa Sb)^{1/2}) = sum(sqrt(eigvalsh(Sa^{1/2} Sb Sa^{1/2})))``.
    Only symmetric eigensolvers run, so there is no complex round-off to discard and no eps offset needed
    for singular covariances; tiny negative eigenvalues from round-off are clipped to 0.
    """
    ma, mb = np.asarray(mu_a, np.float64).reshape(-1), np.asarray(mu_b, np.float64).reshape(-1)
    sa, sb = np.atleast_2d(np.asarray(cov_a, np.float64)), np.atleast_2d(np.asarray(cov_b, np.float64))
    d = ma.size
    if mb.size != d or sa.shape != (d, d) or sb.shape != (d, d):
        raise StudyError(
            f"Gaussian shapes disagree: means {ma.size} and {mb.size}, covariances {sa.shape} and {sb.shape}"
        )
    sqrt_a = _psd_sqrt(sa)
    middle = sqrt_a @ sb @ sqrt_a
    eig = np.linalg.eigvalsh((middle + middle.T) / 2.0)
    tr_sqrt = float(np.sqrt(np.clip(eig, 0.0, None)).sum())
    diff = ma - mb
    value = float(diff @ diff + np.trace(sa) + np.trace(sb) - 2.0 * tr_sqrt)
    return max(value, 0.0)


def frechet_distance(F_a: npt.ArrayLike, F_b: npt.ArrayLike, covariance: Covariance = "auto") -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (FID's formula on any features).

    ``covariance`` chooses the covariance estimator, applied to BOTH sets:

    - ``"empirical"``: the unbiased sample covariance (``np.cov``), as FID. With n < d it is singular and
      its eigenvalues are badly spread, so the distance is dominated by estimation noise.
    - ``"ledoit_wolf"``: Ledoit-Wolf shrinkage towards a scaled identity (scikit-learn ``LedoitWolf``,
      shrinkage intensity chosen analytically). Well-conditioned for any n, and it converges to the
      sample covariance as n/d grows, so it is stable for ~500 images of 1280-d features.
    - ``"auto"`` (default): Ledoit-Wolf when either set has fewer samples than dimensions (n < d),
      empirical otherwise. ``frechet_covariance_used`` tells which one a pair gets; compare distances
      only when they used the same estimator.
    """
    a, b = _features(F_a, "F_a"), _features(F_b, "F_b")
    if a.shape[1] != b.shape[1]:
        raise StudyError(f"feature sets differ in width ({a.shape[1]} vs {b.shape[1]}); use the same backbone")
    for name, x in (("F_a", a), ("F_b", b)):
        if x.shape[0] < 2:
            raise StudyError(f"{name} has {x.shape[0]} row(s); a covariance needs at least 2 samples")
    method = frechet_covariance_used(a.shape[0], b.shape[0], a.shape[1], covariance)
    mu_a, cov_a = _gaussian(a, method)
    mu_b, cov_b = _gaussian(b, method)
    return frechet_distance_gaussians(mu_a, cov_a, mu_b, cov_b)


def frechet_covariance_used(n_a: int, n_b: int, d: int, covariance: Covariance = "auto") -> str:
    """The estimator ``frechet_distance`` applies for these sizes: ``"empirical"`` or ``"ledoit_wolf"``."""
    if covariance not in ("auto", "empirical", "ledoit_wolf"):
        raise StudyError(f"unknown covariance {covariance!r}; known: auto, empirical, ledoit_wolf")
    if covariance == "auto":
        return "ledoit_wolf" if min(n_a, n_b) < d else "empirical"
    return covariance


# ----------------------------------------------------------------------------------------------------------
# LogME
# ----------------------------------------------------------------------------------------------------------


@np.errstate(over="ignore", invalid="ignore", divide="ignore")  # overflow on exactly fitted labels: NaN, said below
def logme(F: npt.ArrayLike, y: npt.ArrayLike, max_iter: int = 1000, tol: float = 1e-10) -> float:
    """LogME (You et al., ICML 2021): mean over classes of the maximum log evidence per example.

    For each class k, the one-vs-rest target ``y_k`` in {0,1}^n is modelled by Bayesian linear regression
    ``y_k = F w + noise``, ``w ~ N(0, 1/alpha I)``, ``noise ~ N(0, 1/beta I)``. Its log marginal evidence

        L(a, b) = n/2 log b + d/2 log a - n/2 log 2pi - b/2 ||F m - y||^2 - a/2 m'm - 1/2 log|A|,
        A = a I + b F'F,   m = b A^{-1} F' y,

    is maximised over (alpha, beta) by MacKay's fixed point (the paper's Algorithm 1):
    ``gamma = sum b s_i / (a + b s_i)``, ``a = gamma / m'm``, ``b = (n - gamma) / ||F m - y||^2``, where
    ``s_i`` are the eigenvalues of F'F. The score is ``mean_k L_k / n``: higher means the features
    explain the labels linearly with less capacity.

    All quantities come from one decomposition of F shared by every class: ``eigh(F'F)`` when n > d
    (d x d is the small side), a thin SVD of F otherwise, keeping the r non-zero singular values. With
    ``x = U'y`` the per-class work is O(r) per iteration and vectorised over classes. ``log|A|`` sums
    ``log(alpha + beta s_i)`` over the r kept values AND ``(d - r) log alpha`` for the null space of F;
    the authors' fixed-point code omits the latter when n < d (thuml/LogME issue #23), here it is
    included so the value is the evidence of the formula above.

    ``max_iter``/``tol`` bound the fixed point: it stops when alpha and beta, or the evidence, change by
    less than ``tol`` relatively. For a class with no linear signal alpha diverges (the best model is
    "weights = 0") while the evidence converges to its supremum, which is the value returned.
    """
    f = _features(F, "F")
    labels = _labels(y, f.shape[0])
    classes = np.unique(labels)
    if classes.size < 2:
        raise StudyError("LogME needs at least 2 classes in y")
    n, d = f.shape
    targets = (labels[:, None] == classes[None, :]).astype(np.float64)  # (n, C)

    if n > d:
        sig, v = np.linalg.eigh(f.T @ f)  # ascending eigenvalues of F'F
        keep = sig > sig.max() * max(n, d) * np.finfo(np.float64).eps
        sig, v = sig[keep], v[:, keep]
        x = (v.T @ (f.T @ targets)) / np.sqrt(sig)[:, None]  # U'y with U = F V / s
    else:
        u, s, _ = np.linalg.svd(f, full_matrices=False)
        sig = s**2
        keep = sig > sig.max() * max(n, d) * np.finfo(np.float64).eps
        sig, u = sig[keep], u[:, keep]
        x = u.T @ targets
    r = sig.size
    if r == 0:
        raise StudyError("the feature matrix is all zeros; LogME is undefined")
    x2 = x**2  # (r, C)
    # ||y||^2 - ||U'y||^2: the part of y outside F's column space, which no weights can fit.
    outside = np.clip((targets**2).sum(axis=0) - x2.sum(axis=0), 0.0, None)  # (C,)
    sig_c = sig[:, None]
    tiny = np.finfo(np.float64).tiny

    def evidence(alpha: _F64, beta: _F64) -> _F64:
        denom = alpha + beta * sig_c  # eigenvalues of A on F's row space, shape (r, C)
        mm = (beta**2 * sig_c * x2 / denom**2).sum(axis=0)  # m'm
        res = (x2 * (alpha / denom) ** 2).sum(axis=0) + outside  # ||F m - y||^2
        log_det_a = np.log(denom).sum(axis=0) + (d - r) * np.log(alpha)
        value = (
            n / 2.0 * np.log(beta)
            + d / 2.0 * np.log(alpha)
            - n / 2.0 * math.log(2.0 * math.pi)
            - beta / 2.0 * res
            - alpha / 2.0 * mm
            - 0.5 * log_det_a
        )
        return value / n

    alpha = np.ones(classes.size)
    beta = np.ones(classes.size)
    previous = evidence(alpha, beta)
    for _ in range(max_iter):
        denom = alpha + beta * sig_c
        gamma = (beta * sig_c / denom).sum(axis=0)  # effective number of parameters
        mm = (beta**2 * sig_c * x2 / denom**2).sum(axis=0)
        res = (x2 * (alpha / denom) ** 2).sum(axis=0) + outside
        new_alpha = gamma / np.maximum(mm, tiny)
        new_beta = np.maximum(n - gamma, tiny) / np.maximum(res, tiny)
        steady = np.all(np.abs(new_alpha - alpha) <= tol * alpha) and np.all(np.abs(new_beta - beta) <= tol * beta)
        alpha, beta = new_alpha, new_beta
        current = evidence(alpha, beta)
        # When the labels carry no linear signal alpha grows without bound while the evidence levels off.
        flat = np.all(np.abs(current - previous) <= tol * np.maximum(1.0, np.abs(current)))
        previous = current
        if steady or flat:
            break
    value = float(np.mean(previous))
    # Labels a linear model fits exactly (e.g. 2 images per class in 30 classes) send beta to infinity and the
    # evidence with it: no finite score to compare, so none (the advisor reads a missing LogME as no evidence).
    return value if math.isfinite(value) else math.nan


def logme_evidence(F: npt.ArrayLike, y: npt.ArrayLike, alpha: float, beta: float) -> float:
    """The log evidence L(alpha, beta) of one real-valued target, evaluated by the formula with explicit
    d x d matrices. Slow (O(d^3)) and meant for checking ``logme`` and for small diagnostics.
    """
    f = _features(F, "F")
    t = np.asarray(y, dtype=np.float64).reshape(-1)
    n, d = f.shape
    if t.size != n:
        raise StudyError(f"y has {t.size} values but F has {n} rows")
    a_mat = alpha * np.eye(d) + beta * f.T @ f
    m = beta * np.linalg.solve(a_mat, f.T @ t)
    _, log_det = np.linalg.slogdet(a_mat)
    return float(
        n / 2 * math.log(beta)
        + d / 2 * math.log(alpha)
        - n / 2 * math.log(2 * math.pi)
        - beta / 2 * float(np.sum((f @ m - t) ** 2))
        - alpha / 2 * float(m @ m)
        - 0.5 * log_det
    )


# ----------------------------------------------------------------------------------------------------------
# Cross-validated probes
# ----------------------------------------------------------------------------------------------------------


FitPredict = Callable[[_F64, npt.NDArray[Any], _F64], npt.NDArray[Any]]
"""(training features, training labels, held-out features) -> predicted labels: one fold of a probe."""


def knn_predictor(k: int) -> FitPredict:
    """The kNN probe's fold: ``k`` nearest neighbours (fewer when the training fold is smaller)."""

    def fit_predict(train_x: _F64, train_y: npt.NDArray[Any], test_x: _F64) -> npt.NDArray[Any]:
        return KNeighborsClassifier(n_neighbors=min(k, train_x.shape[0])).fit(train_x, train_y).predict(test_x)

    return fit_predict


def linear_predictor(c: float, standardise: bool = False) -> FitPredict:
    """The linear probe's fold: L2-regularised logistic regression with inverse regularisation ``c``; with
    ``standardise``, features standardised on the training fold first (the recipe both linear-probe strategies used
    before 2026-12-01, kept for ``bench.linear_probe_recipe``; both now take the features as they are)."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def fit_predict(train_x: _F64, train_y: npt.NDArray[Any], test_x: _F64) -> npt.NDArray[Any]:
        model = LogisticRegression(C=c, max_iter=2000)
        model = make_pipeline(StandardScaler(), model) if standardise else model
        return model.fit(train_x, train_y).predict(test_x)

    return fit_predict


def select_c(
    f: _F64, labels: npt.NDArray[Any], grid: Sequence[float], folds: int, seed: int, groups: npt.ArrayLike | None = None
) -> tuple[float, npt.NDArray[Any], list[npt.NDArray[np.int64]]]:  # fmt: skip
    """(C, its out-of-fold predictions, the folds' test rows): the ``grid`` value whose logistic regression on the
    raw features is most accurate over ``out_of_fold``'s folds; ties go to the smaller C (the stronger penalty).

    SentEval's recipe for frozen sentence embeddings (``KFoldClassifier``: 5-fold cross-validation over C on the
    training set only), so choosing C never reads a test split.
    """
    c, _, runs = select_c_repeated(f, labels, grid, folds, [seed], groups)
    return c, runs[0][0], runs[0][1]


def select_c_repeated(
    f: _F64, labels: npt.NDArray[Any], grid: Sequence[float], folds: int, seeds: Sequence[int],
    groups: npt.ArrayLike | None = None,
) -> tuple[float, float, list[tuple[npt.NDArray[Any], list[npt.NDArray[np.int64]]]]]:  # fmt: skip
    """``select_c`` over several fold partitions (one per seed): (C, its accuracy averaged over the partitions, each
    partition's ``out_of_fold`` result for that C). A grid of one value is plain repeated cross-validation."""
    best: tuple[float, float, list[tuple[npt.NDArray[Any], list[npt.NDArray[np.int64]]]]] | None = None
    for c in sorted(grid):
        runs = [out_of_fold(f, labels, folds, s, linear_predictor(float(c)), groups) for s in seeds]
        accuracy = float(np.mean([np.mean(predictions == labels) for predictions, _ in runs]))
        if best is None or accuracy > best[1]:
            best = (float(c), accuracy, runs)
    if best is None:
        raise StudyError("select_c needs at least one C in its grid")
    return best


def knn_accuracy(
    F: npt.ArrayLike,
    y: npt.ArrayLike,
    k: int = 5,
    folds: int = 5,
    seed: int = 0,
    groups: npt.ArrayLike | None = None,
) -> float:
    """Stratified cross-validated accuracy of a k-nearest-neighbour classifier on L2-normalised features.

    Normalised features make Euclidean neighbours cosine neighbours, the usual choice for pooled CNN
    features. Folds shrink to the smallest class count (at least 2), and ``k`` to the smallest training
    fold, so tiny data sets still get a number. The accuracy is pooled over all out-of-fold predictions.
    ``groups`` (one id per row: patient, slide, track) keeps each group inside one fold, as the study's
    splits do; otherwise a near-duplicate from the same group in the training fold inflates the score.
    """
    if k < 1:
        raise StudyError(f"k must be at least 1, got {k}")
    f, labels = _probe_inputs(F, y)

    return _cross_validate(f, labels, folds, seed, knn_predictor(k), groups)


def linear_probe_accuracy(
    F: npt.ArrayLike,
    y: npt.ArrayLike,
    folds: int = 5,
    seed: int = 0,
    c: float = 1.0,
    groups: npt.ArrayLike | None = None,
) -> float:
    """Stratified cross-validated accuracy of L2-regularised logistic regression on L2-normalised features.

    The cheap stand-in for "train only the head": if a linear classifier on frozen features is already
    good, feature extraction is a strong strategy. ``c`` is scikit-learn's inverse regularisation.
    Fold handling (and ``groups``) as ``knn_accuracy``; a training fold that holds a single class predicts that
    class.
    """
    if c <= 0:
        raise StudyError(f"c must be positive, got {c}")
    f, labels = _probe_inputs(F, y)

    return _cross_validate(f, labels, folds, seed, linear_predictor(c), groups)


def similarity_report(
    F: npt.ArrayLike,
    y: npt.ArrayLike,
    F_reference: npt.ArrayLike | None = None,
    k: int = 5,
    folds: int = 5,
    seed: int = 0,
    covariance: Covariance = "auto",
    groups: npt.ArrayLike | None = None,
) -> dict[str, Any]:
    """Every score for one (dataset, backbone) feature set, keyed by name, ready to become a table row.

    Keys: ``n``, ``d``, ``n_classes``, ``majority_share`` (the chance level the probes must beat),
    ``logme``, ``knn_accuracy``, ``linear_probe_accuracy`` and, when ``F_reference`` (e.g. features of
    ImageNet images through the same backbone) is given, ``frechet_distance`` and
    ``frechet_covariance`` (the estimator used); without it those two are NaN and None. ``groups`` makes the
    probes' folds group-aware (``knn_accuracy``); ``cv_groups`` records how many groups the folds kept whole
    (None: ungrouped folds).
    """
    f = _features(F, "F")
    labels = _labels(y, f.shape[0])
    _, counts = np.unique(labels, return_counts=True)
    report: dict[str, Any] = {
        "n": int(f.shape[0]),
        "d": int(f.shape[1]),
        "n_classes": int(counts.size),
        "majority_share": float(counts.max() / counts.sum()),
        "logme": logme(f, labels),
        "knn_accuracy": knn_accuracy(f, labels, k=k, folds=folds, seed=seed, groups=groups),
        "linear_probe_accuracy": linear_probe_accuracy(f, labels, folds=folds, seed=seed, groups=groups),
        "cv_groups": None if groups is None else int(np.unique(_row_groups(groups, f.shape[0])).size),
        "frechet_distance": math.nan,
        "frechet_covariance": None,
    }
    if F_reference is not None:
        ref = _features(F_reference, "F_reference")
        report["frechet_distance"] = frechet_distance(f, ref, covariance)
        report["frechet_covariance"] = frechet_covariance_used(f.shape[0], ref.shape[0], f.shape[1], covariance)
    return report


# ----------------------------------------------------------------------------------------------------------
# Internals
# ----------------------------------------------------------------------------------------------------------


def _features(F: npt.ArrayLike, name: str) -> _F64:
    f = np.asarray(F, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] == 0 or f.shape[1] == 0:
        raise StudyError(f"{name} must be a non-empty (n, d) feature matrix, got shape {f.shape}")
    if not np.all(np.isfinite(f)):
        raise StudyError(f"{name} contains NaN or infinite values; check the feature extractor")
    return f


def _labels(y: npt.ArrayLike, n: int) -> npt.NDArray[Any]:
    labels = np.asarray(y).reshape(-1)
    if labels.size != n:
        raise StudyError(f"y has {labels.size} labels but the features have {n} rows")
    return labels


def _psd_sqrt(s: _F64) -> _F64:
    w, v = np.linalg.eigh((s + s.T) / 2.0)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def _gaussian(x: _F64, method: str) -> tuple[_F64, _F64]:
    if method == "ledoit_wolf":
        lw = LedoitWolf().fit(x)
        return lw.location_, lw.covariance_
    return x.mean(axis=0), np.atleast_2d(np.cov(x, rowvar=False))


def _probe_inputs(F: npt.ArrayLike, y: npt.ArrayLike) -> tuple[_F64, npt.NDArray[Any]]:
    f = _features(F, "F")
    labels = _labels(y, f.shape[0])
    if np.unique(labels).size < 2:
        raise StudyError("a probe needs at least 2 classes in y")
    if f.shape[0] < 4:
        raise StudyError(f"a cross-validated probe needs at least 4 examples, got {f.shape[0]}")
    norms = np.linalg.norm(f, axis=1, keepdims=True)
    return f / np.where(norms > 0, norms, 1.0), labels


def _row_groups(groups: npt.ArrayLike, n: int) -> npt.NDArray[Any]:
    g = np.asarray(groups).reshape(-1)
    if g.size != n:
        raise StudyError(f"groups has {g.size} values but the features have {n} rows")
    return g


def _cross_validate(
    f: _F64, labels: npt.NDArray[Any], folds: int, seed: int, fit_predict: Any, groups: npt.ArrayLike | None = None
) -> float:
    """Pooled out-of-fold accuracy over stratified folds, reduced to what the smallest class allows.

    With ``groups`` the folds are ``StratifiedGroupKFold``'s (each group in one fold, classes spread as evenly as
    whole groups allow), also capped at the number of groups.
    """
    predictions = out_of_fold(f, labels, folds, seed, fit_predict, groups)[0]
    return float(np.mean(predictions == labels))


def out_of_fold(
    f: _F64, labels: npt.NDArray[Any], folds: int, seed: int, fit_predict: Any, groups: npt.ArrayLike | None = None
) -> tuple[npt.NDArray[Any], list[npt.NDArray[np.int64]]]:
    """(out-of-fold predictions, each fold's test rows): the folds of ``_cross_validate``, for per-fold spreads."""
    if folds < 2:
        raise StudyError(f"folds must be at least 2, got {folds}")
    _, counts = np.unique(labels, return_counts=True)
    n_splits = max(2, min(folds, int(counts.min())))
    splitter: StratifiedKFold | StratifiedGroupKFold = StratifiedKFold(n_splits, shuffle=True, random_state=seed)
    group_ids = None
    if groups is not None:
        group_ids = _row_groups(groups, labels.size)
        n_groups = np.unique(group_ids).size
        if n_groups < 2:
            raise StudyError("a grouped probe needs at least 2 groups; pass groups=None for ungrouped folds")
        n_splits = min(n_splits, n_groups)
        splitter = StratifiedGroupKFold(n_splits, shuffle=True, random_state=seed)
    predictions = np.empty(labels.shape, dtype=labels.dtype)
    with warnings.catch_warnings():
        # A singleton class cannot appear in every fold; sklearn warns, the pooled accuracy is still fair.
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        # Few images per class (a fold of 250 with 101 classes) is the point, as in the linear_probe strategy's fit;
        # scikit-learn suspects a regression target and would say so once per fold.
        warnings.filterwarnings("ignore", message="The number of unique classes", category=UserWarning)
        splits = list(splitter.split(f, labels, group_ids))
        for train, test in splits:
            train_labels = labels[train]
            if np.unique(train_labels).size < 2:
                predictions[test] = train_labels[0]
            else:
                predictions[test] = fit_predict(f[train], train_labels, f[test])
    return predictions, [test for _, test in splits]
