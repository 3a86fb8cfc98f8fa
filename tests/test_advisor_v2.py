"""Advisor v2 on a constructed study where the truth is known: baselines, probes, the gain model, intervals.

The study below: each dataset has its own backbone quality per backbone (``QUALITY``: which backbone is best
differs between datasets), the frozen options are exactly their backbone's probe (+ a fixed offset), and full
fine-tuning gains ``0.03 * (log2 n - 8)`` over the best probe (plus a per-dataset effect), on a backbone that
loses half of its probe deficit. So below ~256 images the probe alone decides (the linear probe on the best-probed
backbone), above it the study's fine-tuning gain must override the probe's verdict.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from advisor import Advisor
from advisor.baselines import best_probe_pick, logme_pick, measured_fallback
from advisor.data import AdvisorError
from advisor.evaluate import ADVISOR_PROBES, BEST_PROBE, HINDSIGHT, LOGME_FT, TEXTBOOK, evaluate_methods, method_summary
from advisor.gain import GainModel
from study.analysis.tables import flatten
from study.errors import StudyError

SIZES = (50, 150, 500, 1500, 4000)
RNG = np.random.default_rng(7)
QUALITY = {f"ds{i}": {"bb_a": float(RNG.uniform(0.6, 0.9)), "bb_b": float(RNG.uniform(0.6, 0.9))} for i in range(6)}
EFFECT = {d: float(RNG.normal(0, 0.01)) for d in QUALITY}  # the dataset's own fine-tuning quirk


def probe(d: str, b: str, n: int) -> float:
    return QUALITY[d][b] - 0.02 * (12 - math.log2(n))


def truth(d: str, s: str, b: str, n: int) -> float:
    best = max(probe(d, x, n) for x in ("bb_a", "bb_b"))
    if s == "linear_probe":
        return probe(d, b, n) + 0.01
    if s == "feature_extraction":
        return probe(d, b, n) - 0.005
    if s == "full_fine_tune":
        return best + 0.03 * (math.log2(n) - 8) + 0.5 * (probe(d, b, n) - best) + EFFECT[d]
    return best - 0.2  # scratch_small


def constructed(noise: float = 0.002, raw: bool = False) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(runs, similarity, probes) of the constructed study, in the shapes ``load_results`` / ``cell_probes`` give
    (``raw``: the runs as the store holds them, details inside ``metrics``)."""
    rng = np.random.default_rng(0)
    runs, probes = [], []
    for d in QUALITY:
        for n in SIZES:
            for s in ("linear_probe", "feature_extraction", "full_fine_tune", "scratch_small"):
                for b in ("none",) if s == "scratch_small" else ("bb_a", "bb_b"):
                    for seed in (0, 1):
                        acc = float(np.clip(truth(d, s, b, n) + rng.normal(0, noise), 0, 1))
                        runs.append({"cell_key": f"{d}/{n}/{s}/{b}/{seed}", "status": "complete", "dataset": d,
                                     "domain": "natural", "n_images": n, "strategy": s, "backbone": b,
                                     "image_size": 64, "seed": seed, "accuracy": acc, "balanced_accuracy": acc,
                                     "majority_share": 0.2, "degenerate": False, "train_seconds": 1.0,
                                     "extract_seconds": 1.0,
                                     "metrics": {"n_classes": 5, "pool_majority_share": 0.2, "base_dataset": d,
                                                 "top_prediction_share": 0.2, "n_test": 500}})  # fmt: skip
            for b in ("bb_a", "bb_b"):
                for seed in (0, 1):
                    p = probe(d, b, n)
                    probes.append({"dataset": d, "n_images": n, "seed": seed, "image_size": 64, "backbone": b,
                                   "linear_probe_accuracy": p, "linear_probe_std": 0.01, "knn_accuracy": p - 0.05,
                                   "logme": p - 1.0})  # fmt: skip
    sims = [{"dataset": d, "domain": "natural", "backbone": b, "image_size": 64, "frechet_distance": 100.0}
            for d in QUALITY for b in ("bb_a", "bb_b")]  # fmt: skip
    frame = pd.DataFrame(runs)
    return (frame if raw else flatten(frame)), pd.DataFrame(sims), pd.DataFrame(probes)


CHEAP = Advisor(bandwidth=math.inf, n_estimators=10)
"""The traits-only advisor without its inner bandwidth selection: these tests are about the other methods."""


@pytest.fixture(scope="module")
def study() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    return constructed()


@pytest.fixture(scope="module")
def evaluated(study):
    runs, sims, probes = study
    return evaluate_methods(runs, sims, CHEAP, probes=probes, gain=GainModel())


def test_folds_in_parallel_processes_give_the_same_tables(study, evaluated, monkeypatch):
    import advisor.evaluate as evaluate

    monkeypatch.setattr(evaluate, "PARALLEL_MIN_RUNS", 0)  # the constructed table is small: force the processes
    monkeypatch.setattr("study.config.cpu_count", lambda: 2)
    runs, sims, probes = study
    table, picks = evaluate_methods(runs, sims, CHEAP, probes=probes, gain=GainModel())
    pd.testing.assert_frame_equal(table, evaluated[0])
    pd.testing.assert_frame_equal(picks, evaluated[1])
    assert picks.attrs["gain_configs"] == evaluated[1].attrs["gain_configs"]


# ---------------------------------------------------------------------------------------------------- baselines


def test_measured_fallback_keeps_the_backbone_and_the_freezing_level():
    pool = [("fine_tune_top", "bb_a"), ("linear_probe", "bb_a"), ("scratch_small", "none"), ("full_fine_tune", "bb_b")]
    assert measured_fallback(("full_fine_tune", "bb_b"), pool) == ("full_fine_tune", "bb_b")
    assert measured_fallback(("full_fine_tune", "bb_a"), pool) == ("fine_tune_top", "bb_a")
    assert measured_fallback(("feature_extraction", "bb_a"), pool) == ("linear_probe", "bb_a")
    assert measured_fallback(("full_fine_tune", "bb_c"), pool) is None
    assert measured_fallback(("scratch", "none"), pool) is None  # backbone-free: no stand-in


def test_probe_baselines_follow_the_probe_and_logme_rankings():
    probes = pd.DataFrame({"backbone": ["bb_a", "bb_b"], "linear_probe_accuracy": [0.7, 0.8], "logme": [0.1, -0.2]})
    pool = [("linear_probe", "bb_a"), ("linear_probe", "bb_b"), ("full_fine_tune", "bb_a"), ("fine_tune_top", "bb_b")]
    assert best_probe_pick(probes, pool) == ("linear_probe", "bb_b")
    assert logme_pick(probes, pool) == ("full_fine_tune", "bb_a")
    assert best_probe_pick(probes, [("feature_extraction", "bb_b")]) == ("feature_extraction", "bb_b")


def test_every_constant_and_the_hindsight_constant_are_scored(evaluated, study):
    _, picks = evaluated
    summary = method_summary(picks).set_index("method")
    constants = summary[summary["kind"] == "constant"]
    assert len(constants) == 7  # 3 strategies x 2 backbones + scratch_small
    cells = len(QUALITY) * len(SIZES)
    assert (constants["cells"] == cells).all()
    hindsight = summary[summary["kind"] == "hindsight"]
    assert len(hindsight) == 1 and hindsight.index[0].startswith(HINDSIGHT)
    assert hindsight["mean_regret"].iloc[0] == pytest.approx(constants["mean_regret"].min())
    # by construction: constant regret is exactly computable from the truth (noise aside)
    lp_a = np.mean([max(truth(d, s, b, n) for s in ("linear_probe", "feature_extraction", "full_fine_tune",
                                                    "scratch_small") for b in ("bb_a", "bb_b", "none")
                        if not (s == "scratch_small") ^ (b == "none")) - truth(d, "linear_probe", "bb_a", n)
                    for d in QUALITY for n in SIZES])  # fmt: skip
    assert summary.loc["constant linear_probe/bb_a", "mean_regret"] == pytest.approx(100 * lp_a, abs=0.3)
    assert TEXTBOOK in summary.index


def test_probe_advisor_beats_every_baseline_where_the_truth_is_known(evaluated):
    _, picks = evaluated
    s = method_summary(picks).set_index("method")
    ours = s.loc[ADVISOR_PROBES]
    assert ours["mean_regret"] < 0.5
    for method in (BEST_PROBE, LOGME_FT, TEXTBOOK, *s.index[s["kind"] == "hindsight"]):
        assert ours["mean_regret"] < s.loc[method, "mean_regret"], method
    assert ours["top1_agreement"] >= 0.7


def test_the_probe_decides_small_and_the_fine_tuning_gain_overrides_it_large(evaluated):
    _, picks = evaluated
    ours = picks[picks["method"] == ADVISOR_PROBES].set_index(["dataset", "n_images"])
    for d in QUALITY:
        best_b = max(("bb_a", "bb_b"), key=lambda b: QUALITY[d][b])
        assert tuple(ours.loc[(d, 50), ["strategy", "backbone"]]) == ("linear_probe", best_b)  # the probe decides
        assert ours.loc[(d, 4000), "strategy"] == "full_fine_tune"  # the study's gain overrides the probe
    probe_only = picks[picks["method"] == BEST_PROBE].set_index(["dataset", "n_images"])
    assert (probe_only.xs(4000, level="n_images")["regret"] > 0.05).all()


def test_interval_coverage_is_close_to_the_stated_80_percent(evaluated):
    _, picks = evaluated
    coverage = method_summary(picks).set_index("method").loc[ADVISOR_PROBES, "option_coverage"]
    assert 0.6 <= coverage <= 0.97


def test_intervals_are_calibrated_on_held_out_residuals(study):
    runs, sims, probes = study
    wide = GainModel().fit(runs, sims, probes)
    noisy = GainModel().fit(*constructed(noise=0.03)[:2], constructed(noise=0.03)[2])
    assert noisy.bounds_[False][1] - noisy.bounds_[False][0] > wide.bounds_[False][1] - wide.bounds_[False][0]
    assert len(wide.residuals_) > 0 and set(wide.residuals_["frozen"]) == {True, False}


def test_gain_model_marks_sizes_never_measured_as_extrapolated(study):
    runs, sims, probes = study
    small = runs[~((runs["strategy"] == "full_fine_tune") & (runs["n_images"] > 1000))]
    model = GainModel().fit(small, sims, probes)
    p = pd.DataFrame({"backbone": ["bb_a", "bb_b"], "linear_probe_accuracy": [0.8, 0.7], "logme": [0.0, -0.1]})
    table = model.predict({"n_images": 3000, "n_classes": 5}, p)
    ft = table[table["strategy"] == "full_fine_tune"]
    assert ft["extrapolated"].all() and not table[table["strategy"] != "full_fine_tune"]["extrapolated"].any()
    assert table["extrapolated"].is_monotonic_increasing  # never ranked before a measured option
    frozen = table[table["strategy"] == "linear_probe"]
    assert list(frozen["backbone"]) == ["bb_a", "bb_b"]  # frozen options ranked by their measured probe
    ft_key = "full_fine_tune" if model.pooling_ == "strategy" else "full_fine_tune/bb_a"
    assert set(model.coefficients()["option"]) >= {"linear_probe", ft_key}


def test_held_out_results_never_reach_the_gain_model(study, evaluated):
    """Changing a dataset's measured accuracies cannot change what the advisor predicted for it while held out."""
    runs, sims, probes = study
    poisoned = runs.copy()
    ft = (poisoned["dataset"] == "ds0") & (poisoned["strategy"] == "full_fine_tune")
    poisoned.loc[ft, "accuracy"] = (poisoned.loc[ft, "accuracy"] + 0.15).clip(upper=1.0)
    _, clean = evaluated
    _, dirty = evaluate_methods(poisoned, sims, CHEAP, probes=probes, gain=GainModel())
    cols = ["strategy", "backbone", "low", "high"]
    held = [(t["dataset"] == "ds0") & (t["method"] == ADVISOR_PROBES) for t in (clean, dirty)]
    pd.testing.assert_frame_equal(clean[held[0]][cols].reset_index(drop=True),
                                  dirty[held[1]][cols].reset_index(drop=True))
    assert not dirty[held[1]]["regret"].equals(clean[held[0]]["regret"])  # the poison did reach the scoring


# ---------------------------------------------------------------------------------------------------- probes


def test_probe_scores_on_constructed_features():
    from study.probes.scores import probe_scores

    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], 20)
    separable = np.eye(3)[y] * 5 + rng.normal(0, 0.1, (60, 3))
    s = probe_scores(np.hstack([separable, rng.normal(0, 0.1, (60, 5))]), y)
    assert s["linear_probe_accuracy"] == 1.0 and s["knn_accuracy"] == 1.0 and s["linear_probe_std"] == 0.0
    noise = probe_scores(rng.normal(0, 1, (60, 8)), y)
    assert noise["linear_probe_accuracy"] < 0.6 and noise["logme"] < s["logme"]
    assert noise["linear_probe_std"] > 0 and s["folds"] == 5 and s["n"] == 60
    with pytest.raises(StudyError, match="1 training image"):
        probe_scores(rng.normal(0, 1, (9, 4)), [0, 0, 0, 0, 1, 1, 1, 1, 2])


def test_probe_averages_repeated_fold_partitions():
    """Repeats average the single-partition probes of seeds seed .. seed + R - 1 (the same images, other folds), so
    the partition a probe draws stops deciding between backbones; small sets get more of them."""
    from study.probes.scores import MAX_REPEATS, probe_scores, repeats_for

    rng = np.random.default_rng(1)
    y = np.repeat([0, 1, 2], 15)
    f = rng.normal(0, 1, (45, 6)) + np.eye(3)[y] @ rng.normal(0, 0.8, (3, 6))
    singles = [probe_scores(f, y, seed=3 + i, repeats=1) for i in range(4)]
    four = probe_scores(f, y, seed=3, repeats=4)
    assert four["repeats"] == 4 and four["folds"] == 5
    assert four["linear_probe_accuracy"] == pytest.approx(np.mean([s["linear_probe_accuracy"] for s in singles]))
    assert four["knn_accuracy"] == pytest.approx(np.mean([s["knn_accuracy"] for s in singles]))
    assert len({s["linear_probe_accuracy"] for s in singles}) > 1  # the partitions do differ on 45 images
    assert probe_scores(f, y, seed=3)["repeats"] == repeats_for(45) == MAX_REPEATS
    assert [repeats_for(n) for n in (50, 250, 500, 1000, 4000)] == [8, 4, 2, 1, 1]
    grid = probe_scores(f, y, c_grid=(0.01, 1.0), repeats=2)  # C chosen on the mean over the partitions
    best = max(np.mean([probe_scores(f, y, seed=i, repeats=1, c_grid=(c,))["linear_probe_accuracy"]
                        for i in range(2)]) for c in (0.01, 1.0))  # fmt: skip
    assert grid["linear_probe_accuracy"] == pytest.approx(best)
    with pytest.raises(StudyError, match="repeats"):
        probe_scores(f, y, repeats=0)


def test_probes_of_many_classes_with_few_images_each_are_quiet():
    """30 classes x 2 images: scikit-learn's "looks like a regression target" warning (once per fold and repeat) and
    LogME's overflow on labels a linear model fits exactly must not reach the user's terminal."""
    import warnings

    from study.probes.scores import probe_scores

    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(30), 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = probe_scores(rng.normal(0, 1, (60, 5)), y)
    assert s["repeats"] == 8 and 0.0 <= s["linear_probe_accuracy"] <= 1.0


def make_folder(root: Path, counts: dict[str, int], size: int = 24) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls, n in counts.items():
        (root / cls).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(root / cls / f"{i}.png")
    return root


def test_folder_probes_never_see_the_test_split(tmp_path, monkeypatch):
    import advisor.probes as probes_module

    root = tmp_path / "photos"
    make_folder(root / "train", {"a": 8, "b": 8})
    make_folder(root / "test", {"a": 3, "b": 3})
    seen = []

    def fake(engine, data, backbone, rows, labels, groups, seed=0):
        seen.append([data.pool.ids[r] for r in rows])
        return {"linear_probe_accuracy": 0.5, "linear_probe_std": 0.0, "knn_accuracy": 0.5, "logme": 0.0}

    monkeypatch.setattr(probes_module, "probe_images", fake)
    table = probes_module.folder_probes(root, ["mobilenet_075"], 32, progress=False)
    assert len(table) == 1 and len(seen[0]) == 16
    assert all(str(i).startswith("train/") for i in seen[0])


def test_folder_probes_bad_folders_are_one_line_errors(tmp_path):
    from advisor.data import AdvisorError
    from advisor.probes import folder_probes

    with pytest.raises(AdvisorError, match="only one class"):
        folder_probes(make_folder(tmp_path / "one", {"a": 6}), ["mobilenet_075"], 32, progress=False)
    with pytest.raises(AdvisorError, match="too few images"):
        folder_probes(make_folder(tmp_path / "few", {"a": 6, "b": 2}), ["mobilenet_075"], 32, progress=False)



def test_probe_scores_are_cached_by_everything_they_depend_on(tmp_path):
    from types import SimpleNamespace

    from advisor.probes import probe_images
    from study import config

    rng = np.random.default_rng(0)
    feats = rng.normal(0, 1, (40, 6))
    calls = []

    class Engine:
        weights = config.weights_dirs()
        cache = SimpleNamespace(root=tmp_path / "activations")

        def pooled(self, data, spec, split, rows):
            calls.append(split)
            return feats[rows][None]

    data = SimpleNamespace(fingerprint="abc", image_size=32)
    rows, labels = np.arange(40), np.repeat([0, 1], 20)
    first = probe_images(Engine(), data, "mobilenet_075", rows, labels, None)
    again = probe_images(Engine(), data, "mobilenet_075", rows, labels, None)
    assert calls == ["pool"] and again["linear_probe_accuracy"] == first["linear_probe_accuracy"]
    assert again["probe_seconds"] == 0.0
    probe_images(Engine(), data, "mobilenet_075", rows[:30], labels[:30], None)  # other rows: computed again
    probe_images(Engine(), data, "mobilenet_075", rows, labels, None, seed=1)  # other folds: computed again
    assert calls == ["pool"] * 3


def test_auto_alpha_is_chosen_by_inner_leave_one_dataset_out(study):
    from advisor.gain import ALPHAS

    model = GainModel(alpha="auto", variant="option-linear").fit(*study)
    assert model.alpha_ in ALPHAS and {c["candidate"] for c in model.selection_["candidates"]} == {
        f"option-linear/{a}" for a in ALPHAS}
    fixed = GainModel(alpha=10.0, variant="strategy-logit").fit(*study)
    assert fixed.alpha_ == 10.0 and fixed.selection_ == {} and fixed.variant_ == "strategy-logit"


def test_variant_is_chosen_by_inner_leave_one_dataset_out(study):
    from advisor.gain import VARIANTS

    model = GainModel().fit(*study)
    assert model.variant_ in VARIANTS
    regrets = {c["candidate"]: c["inner_regret"] for c in model.selection_["candidates"]}
    assert set(regrets) == {f"{v}/1.0" for v in VARIANTS}
    best = min(regrets.values())
    assert regrets[f"{model.variant_}/1.0"] <= best + max(c["se"] for c in model.selection_["candidates"])
    with pytest.raises(AdvisorError, match="unknown gain-model variant"):
        GainModel(variant="deep").fit(*study)



def test_cli_evaluate_and_probes(tmp_path, capsys):
    import json

    from conftest import run_advisor

    runs, sims, probes = constructed(raw=True)
    folder = tmp_path / "export"
    folder.mkdir()
    runs.assign(metrics=runs["metrics"].map(json.dumps)).to_parquet(folder / "runs.parquet", index=False)
    datasets = [{"name": d, "domain": "natural", "similarity": json.dumps({f"{b}@64": {"backbone": b, "image_size": 64,
                 "frechet_distance": 100.0} for b in ("bb_a", "bb_b")})} for d in QUALITY]  # fmt: skip
    pd.DataFrame(datasets).to_parquet(folder / "datasets.parquet", index=False)
    code, out, err = run_advisor("evaluate", "--results", str(folder))
    assert code == 0, err
    assert "No cell probes beside these results" in out and ADVISOR_PROBES not in out
    probes.to_parquet(folder / "probes.parquet", index=False)
    code, out, err = run_advisor("evaluate", "--results", str(folder), "--json")
    assert code == 0, err
    methods = {m["method"]: m for m in json.loads(out)["methods"]}
    assert methods[ADVISOR_PROBES]["mean_regret"] < methods[BEST_PROBE]["mean_regret"]
    assert any(name.startswith(HINDSIGHT) for name in methods)
    code, _, err = run_advisor("probes", "--results", "sqlite:///nowhere.db")
    assert code == 2 and err.startswith("error:") and len(err.strip().splitlines()) == 1


def test_rules_distil_the_probe_advisor_into_a_size_threshold(study, evaluated):
    from advisor.evaluate import RULES
    from advisor.rules import ProbeRules

    rules = ProbeRules().fit(GainModel().fit(*study))
    assert rules.fidelity_ >= 0.9
    # the truth: the linear probe wins below ~320 images, full fine-tuning above (tests' constructed study)
    by_strategy = {r["strategy"]: r["conditions"] for r in rules.rules_}
    assert set(by_strategy) == {"linear_probe", "full_fine_tune"}
    assert 150 <= by_strategy["linear_probe"]["n_images"][1] < 500
    assert 150 <= by_strategy["full_fine_tune"]["n_images"][0] < 500
    text = rules.text()
    assert "if n <= " in text and "full_fine_tune on the backbone with the best probe" in text
    scored = evaluated[1][evaluated[1]["method"] == RULES].dropna(subset=["regret"])
    assert len(scored) == 30 and scored["regret"].mean() < 0.01  # refitted per held-out dataset, then scored


def test_noise_floor_is_zero_without_noise_and_grows_with_it():
    from advisor.evaluate import noise_floor

    exact = noise_floor(*constructed(noise=0.0)[:2])
    assert exact["cells"] == 30 and exact["regret_points"] == 0.0
    noisy = noise_floor(*constructed(noise=0.05)[:2])
    assert noisy["regret_points"] > 1.0


def test_a_worse_probed_backbone_is_never_predicted_to_fine_tune_better():
    """The gain models keep the signs of ``SIGNS``: with the data pulling the LogME difference's coefficient
    negative, the fitted coefficient stays at 0 (and a free fit equals scikit-learn's Ridge)."""
    from sklearn.linear_model import Ridge

    from advisor.gain import _Linear

    rng = np.random.default_rng(0)
    probe_gap = -np.abs(rng.normal(0, 0.05, 80))
    logme_gap = 4 * probe_gap + rng.normal(0, 0.1, 80)  # related to the probe's
    x = np.column_stack([probe_gap, logme_gap])
    y = 0.8 * probe_gap - 0.2 * (logme_gap - 4 * probe_gap) + rng.normal(0, 0.001, 80)  # a spurious LogME effect
    free = Ridge(alpha=1.0).fit((x - x.mean(0)) / x.std(0), y)
    held = _Linear(x, y, 1.0, ["probe_vs_best", "logme_vs_best"])
    assert free.coef_[1] < 0 and held.coef[1] == 0.0 and held.coef[0] > 0
    far_below = np.array([[-0.2, -1.0]])  # a backbone far below the best on both
    assert held.predict(far_below)[0] < held.predict(np.array([[0.0, 0.0]]))[0]
    same = _Linear(x, y, 1.0, ["a", "b"])
    assert np.allclose(same.coef, free.coef_) and same.intercept == pytest.approx(free.intercept_)


def test_paired_difference_resamples_held_out_datasets(evaluated):
    from advisor.evaluate import paired_difference

    _, picks = evaluated
    d = paired_difference(picks, ADVISOR_PROBES, HINDSIGHT)
    assert d["datasets"] == 6 and d["cells"] == 30 and d["low"] <= d["difference"] <= d["high"]
    assert d["baseline"].startswith(HINDSIGHT)  # the prefix finds the hindsight constant's full name
    same = paired_difference(picks, ADVISOR_PROBES, ADVISOR_PROBES)
    assert same["difference"] == 0 and same["low"] == same["high"] == 0
    textbook = paired_difference(picks, ADVISOR_PROBES, TEXTBOOK)
    assert textbook["high"] < 0  # on the constructed study the advisor loses less than the textbook, beyond noise
    assert paired_difference(picks, "no such method", TEXTBOOK) is None


def test_the_domain_gap_is_computed_once_per_pair_of_feature_matrices(tmp_path, monkeypatch):
    """``gap_distance`` keys its Fréchet distance by the bytes of both feature matrices: asking again about the same
    images is a file read (warm ``advisor recommend --data-dir``), other images are computed afresh."""
    from types import SimpleNamespace

    import study.probes.domain as domain

    rng = np.random.default_rng(0)
    ours, ref = rng.normal(0, 1, (40, 6)), rng.normal(0.5, 1, (60, 6))
    calls = []
    real = domain.frechet_distance
    monkeypatch.setattr(domain, "frechet_distance", lambda a, b: calls.append(1) or real(a, b))
    monkeypatch.setattr(domain, "sample_features", lambda ds, spec, size, engine: (ds, None))
    monkeypatch.setattr(domain, "reference_features", lambda spec, size, engine, load: ref)
    engine = SimpleNamespace(cache=SimpleNamespace(root=tmp_path / "activations"))
    first = domain.gap_distance(ours, "mobilenet_v2", 64, engine, None)
    again = domain.gap_distance(ours, "mobilenet_v2", 64, engine, None)
    assert first == again and len(calls) == 1 and first == pytest.approx(real(ours, ref))
    other = domain.gap_distance(ours + 1.0, "mobilenet_v2", 64, engine, None)
    assert len(calls) == 2 and other != first


def test_fitted_models_are_cached_by_their_rows_code_and_versions(tmp_path, monkeypatch):
    """``cached_fit``: the same rows give the stored model without fitting; any changed cell refits; a corrupt entry
    is refitted, never an error."""
    from advisor.fitted import cached_fit

    monkeypatch.setenv("TRANSFER_STUDY_CACHE", str(tmp_path))
    runs, sims, _ = constructed()
    fits = []

    def fit():
        fits.append(1)
        return {"fitted": len(fits)}

    first = cached_fit("demo", fit, runs, sims)
    assert cached_fit("demo", fit, runs, sims) == first and len(fits) == 1
    changed = runs.copy()
    changed.loc[changed.index[0], "accuracy"] += 0.001
    assert cached_fit("demo", fit, changed, sims) == {"fitted": 2}
    for entry in (tmp_path / "advisor").glob("demo-*.pkl"):
        entry.write_bytes(b"not a pickle")
    assert cached_fit("demo", fit, runs, sims) == {"fitted": 3}


def test_probe_shrinkage_recovers_the_noise_and_trusts_probes_more_as_n_grows():
    from advisor.gain import ProbeShrinkage

    rng = np.random.default_rng(0)
    offsets = {"bb_a": 0.02, "bb_b": 0.0, "bb_c": -0.02}
    tau2, kappa = 0.0004, 0.1  # true deviation sd 2 points; sampling noise sd 4.5 points at n = 50, 0.5 at 4000
    rows = []
    for d in range(60):
        level = rng.uniform(0.5, 0.8)
        deviation = {b: rng.normal(0, math.sqrt(tau2)) for b in offsets}
        for n in (50, 250, 1000, 4000):
            for b, off in offsets.items():
                probe = level + off + deviation[b] + rng.normal(0, math.sqrt(kappa / n))
                rows.append({"dataset": f"d{d}", "n_images": n, "image_size": 64, "backbone": b, "probe": probe,
                             "best_probe": np.nan, "strategy": "linear_probe"})  # fmt: skip
    table = pd.DataFrame(rows)
    shrink = ProbeShrinkage().fit(table)
    assert shrink.tau2_ == pytest.approx(tau2, rel=0.5) and shrink.kappa_ == pytest.approx(kappa, rel=0.25)
    assert shrink.offsets_["bb_a"] - shrink.offsets_["bb_c"] == pytest.approx(0.04, abs=0.006)
    w = shrink.weight([50, 250, 1000, 4000])
    assert np.all(np.diff(w) > 0) and w[0] < 0.3 and w[-1] > 0.9
    # one new cell: at n = 50 a 3-point probe lead of the backbone the study rates lowest is mostly noise and is
    # shrunk below the best-rated backbone; at n = 4000 the same lead is believed
    for n, leader in ((50, "bb_a"), (4000, "bb_c")):
        cell = pd.DataFrame({"dataset": "new", "n_images": n, "image_size": 64, "backbone": list(offsets),
                             "probe": [0.70, 0.70, 0.73], "best_probe": 0.73, "strategy": "linear_probe"})  # fmt: skip
        out = shrink.transform(cell).set_index("backbone")
        assert out["probe"].idxmax() == leader
        assert set(out["best_probe"]) == {out["probe"].max()} and out.loc[leader, "probe_vs_best"] == 0
