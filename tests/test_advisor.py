"""The advisor on constructed results where the truth is known, its textbook baseline, its CLI and a real store.

The synthetic study below is built so that the right answer is known: on every domain feature extraction wins
below ~500 images and full fine-tuning above; on the far domain (gap 6) the small from-scratch CNN wins from
~2000 images. Backbone ``bb_b`` is always one point worse than ``bb_a``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from advisor import Advisor, AdvisorError, Traits, leave_one_dataset_out, load_results, textbook_rule
from advisor.cli import main
from advisor.data import prepare
from advisor.evaluate import REGRET_BASIS, _folds, summary
from advisor.model import freeze_level
from advisor.relative import BANDWIDTHS, RelativeAccuracy, cell_table, similarity_groups, trait_defaults, with_features
from advisor.textbook import SMALL_N, preferences, quadrant
from study.analysis.tables import flatten

REPO = Path(__file__).resolve().parents[1]

DATASETS = {  # name: (domain, relative gap, classes)
    "nat_a": ("natural", 0.9, 2),
    "nat_b": ("natural", 1.1, 10),
    "med_a": ("medical", 3.0, 2),
    "med_b": ("medical", 3.2, 5),
    "dig": ("digits", 2.5, 10),
    "far": ("satellite", 6.0, 7),
}
SIZES = (50, 100, 250, 500, 1000, 2000, 4000)
STRATEGIES = ("feature_extraction", "linear_probe", "fine_tune_top", "full_fine_tune", "scratch_small")
UNITS = {"bb_a": 500.0, "bb_b": 900.0}  # Fréchet distance of a gap-1 dataset per backbone


def advantage(strategy: str, n: int, gap: float) -> float:
    """The known truth: each strategy's accuracy offset as a function of size and domain gap."""
    lg, pen = np.log2(n), 0.02 * gap
    return {
        "feature_extraction": 0.02 * lg - pen,
        "linear_probe": 0.02 * lg - 0.01 - pen,
        "fine_tune_top": 0.035 * lg - 0.145 - pen,
        "full_fine_tune": 0.05 * lg - 0.27 - pen,
        "scratch_small": 0.07 * lg - 0.6 + (0.03 if gap > 5 else 0.0),
    }[strategy]


def store_rows(seed: int = 0, noise: float = 0.004, datasets: dict | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Runs in the shape of ``ResultsStore.to_frame`` (details inside ``metrics``) and the datasets table."""
    rng = np.random.default_rng(seed)
    rows = []
    for ds, (domain, gap, k) in (datasets or DATASETS).items():
        level = 0.55 + 0.3 / k + rng.normal(0, 0.03)
        for n in SIZES:
            for strategy in STRATEGIES:
                for bb in ("none",) if strategy == "scratch_small" else ("bb_a", "bb_b"):
                    for s in (0, 1):
                        acc = level + advantage(strategy, n, gap) - (0.01 if bb == "bb_b" else 0) + rng.normal(0, noise)
                        acc = float(np.clip(acc, 0.0, 1.0))
                        rows.append({
                            "cell_key": f"{ds}[n={n}]/{strategy}/{bb}/s64/seed={s}", "status": "complete",
                            "dataset": ds, "domain": domain, "n_images": n, "strategy": strategy, "backbone": bb,
                            "image_size": 64, "seed": s, "accuracy": acc, "balanced_accuracy": acc,
                            "majority_share": 1.0 / k, "degenerate": False,
                            "train_seconds": n * (0.01 if strategy in ("feature_extraction", "linear_probe") else 0.1),
                            "extract_seconds": 1.0,
                            "metrics": {"n_classes": k, "pool_majority_share": 1.0 / k, "base_dataset": ds,
                                        "top_prediction_share": 1.0 / k, "n_test": 200, "top_k": 4},
                            "params": {"lr_head": 1e-3, "lr_finetune": 1e-4, "dropout": 0.2, "weight_decay": 1e-4,
                                       "top_k": None, "linear_c": 1.0, "epochs": 10},
                            "curves": [{"phase": "head", "epoch": e + 1} for e in range(6)]
                            + [{"phase": "fine_tune", "epoch": e + 1} for e in range(3)],
                        })  # fmt: skip
    datasets_rows = [
        {"name": ds, "domain": domain,
         "similarity": {f"{bb}@64": {"backbone": bb, "image_size": 64, "frechet_distance": gap * unit}
                        for bb, unit in UNITS.items()}}
        for ds, (domain, gap, _) in (datasets or DATASETS).items()
    ]  # fmt: skip
    return pd.DataFrame(rows), pd.DataFrame(datasets_rows)


def synthetic(**kwargs) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The study as ``load_results`` returns it: flattened runs and the similarity table."""
    runs, datasets = store_rows(**kwargs)
    sims = [{"dataset": r.name, "domain": r.domain, **s} for r in datasets.itertuples() for s in r.similarity.values()]
    return flatten(runs), pd.DataFrame(sims)


def write_export(folder: Path, **kwargs) -> Path:
    """The synthetic study as ``python -m study.analysis.export`` writes it (JSON columns as strings)."""
    runs, datasets = store_rows(**kwargs)
    runs["domain"] = None  # as in a real store: the runs table leaves it to the datasets table
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in (("runs", runs), ("datasets", datasets)):
        frame = frame.copy()
        for col in ("metrics", "params", "curves", "similarity"):
            if col in frame:
                frame[col] = frame[col].map(lambda v: json.dumps(v, sort_keys=True))
        frame.to_parquet(folder / f"{name}.parquet", index=False)
    return folder


@pytest.fixture(scope="module")
def study() -> tuple[pd.DataFrame, pd.DataFrame]:
    return synthetic()


@pytest.fixture(scope="module")
def fitted(study) -> Advisor:
    return Advisor().fit(*study)


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory) -> Path:
    return write_export(tmp_path_factory.mktemp("export") / "study")


# ---------------------------------------------------------------------------------------------------- the estimator


def test_estimator_contract(study):
    advisor = Advisor(n_evidence=2, random_state=3)
    assert advisor.get_params()["n_evidence"] == 2
    assert clone(advisor).get_params() == advisor.get_params()
    assert advisor.fit(*study) is advisor
    on = advisor.fitted_on_
    assert on["n_rows"] + on["n_excluded_degenerate"] == len(study[0]) and on["n_excluded_degenerate"] > 0
    assert advisor.fitted_on_["datasets"] == sorted(DATASETS)
    with pytest.raises(Exception, match="not fitted"):
        Advisor().recommend({"n_images": 100, "domain": "natural"})
    with pytest.raises(Exception, match="not fitted"):
        Advisor().rules_text()


def test_results_mixing_tuning_budgets_are_refused(study):
    runs, similarity = study
    mixed = runs.assign(trials_budget=np.where(runs["strategy"] == "scratch_small", 4, 1))
    with pytest.raises(AdvisorError, match="mix training budgets within one comparison"):
        Advisor().fit(mixed, similarity)


def test_reproducible_and_records_its_data(study):
    a, b = Advisor().fit(*study), Advisor().fit(*study)
    q = {"n_images": 700, "domain": "medical"}
    pd.testing.assert_frame_equal(a.predict_table(q), b.predict_table(q))
    assert a.fitted_on_ == b.fitted_on_
    runs, sims = study
    changed = runs.copy()
    changed.loc[0, "accuracy"] += 0.01
    assert Advisor().fit(changed, sims).fitted_on_["checksum"] != a.fitted_on_["checksum"]


@pytest.mark.parametrize(
    ("n", "domain", "gap", "expected"),
    [
        (100, "natural", None, "feature_extraction"),
        (3000, "natural", None, "full_fine_tune"),
        (150, "medical", None, "feature_extraction"),
        (2500, "medical", None, "full_fine_tune"),
        (4000, "satellite", 6.0, "scratch_small"),
    ],
)
def test_recommends_the_known_winner(fitted, n, domain, gap, expected):
    rec = fitted.recommend({"n_images": n, "domain": domain, "gap": gap, "n_classes": 5})
    assert rec.best.strategy == expected
    if expected != "scratch_small":
        assert rec.best.backbone == "bb_a"  # bb_b is one point worse everywhere
    assert rec.best.low <= rec.best.accuracy <= rec.best.high
    assert rec.best.evidence and rec.best.evidence[0].strategy == expected
    assert rec.best.recipe["freeze"]


@pytest.mark.parametrize(("domain", "gap"), [("natural", 1.0), ("medical", 3.1), ("digits", 2.5), ("satellite", 6.0)])
def test_more_data_never_prefers_freezing_more(fitted, domain, gap):
    sizes = np.unique(np.geomspace(30, 10000, 25).astype(int))
    levels = [
        freeze_level(fitted.predict_table({"n_images": int(n), "domain": domain, "gap": gap}).iloc[0]["strategy"])
        for n in sizes
    ]
    assert all(later <= earlier for earlier, later in zip(levels, levels[1:], strict=False)), levels


def test_monotone_unless_the_results_say_so():
    """When the results themselves say that more data favours freezing, the advisor follows them."""
    runs, sims = synthetic()
    runs.loc[(runs["n_images"] >= 1000) & (runs["strategy"] == "feature_extraction"), "accuracy"] += 0.2
    runs.loc[(runs["n_images"] <= 250) & (runs["strategy"] == "full_fine_tune"), "accuracy"] += 0.2
    advisor = Advisor().fit(runs, sims)
    assert advisor.predict_table({"n_images": 100, "domain": "natural"}).iloc[0]["strategy"] == "full_fine_tune"
    assert advisor.predict_table({"n_images": 3000, "domain": "natural"}).iloc[0]["strategy"] == "feature_extraction"


def test_extrapolation_is_flagged(fitted):
    inside = fitted.recommend({"n_images": 500, "domain": "medical", "n_classes": 5, "gap": 3.1})
    assert inside.extrapolation == []
    assert inside.trust == "high"
    bigger = fitted.recommend({"n_images": 50000, "domain": "medical", "n_classes": 5})
    assert any("training-set size" in f for f in bigger.extrapolation)
    assert bigger.trust in ("medium", "low")
    smaller = fitted.recommend({"n_images": 10, "domain": "natural"})
    assert any("outside the measured range 50-4000" in f for f in smaller.extrapolation)
    unseen = fitted.recommend({"n_images": 500, "domain": "other"})
    assert any("domain 'other' is outside the study" in f for f in unseen.extrapolation)
    assert any("gap" in a for a in unseen.assumed)


def test_budget_and_backbone_filters(fitted):
    rec = fitted.recommend({"n_images": 3000, "domain": "natural", "budget_minutes": 1.0})
    assert rec.best.within_budget and rec.best.cost_minutes <= 1.0
    assert rec.best.strategy in ("feature_extraction", "linear_probe")
    assert any(not o.within_budget for o in rec.options)
    only_b = fitted.recommend({"n_images": 3000, "domain": "natural", "backbone": "bb_b"})
    assert {o.backbone for o in only_b.options} <= {"bb_b", "none"}
    with pytest.raises(AdvisorError, match="known backbones: bb_a, bb_b"):
        fitted.recommend({"n_images": 3000, "domain": "natural", "backbone": "no_such_net"})
    # a registered backbone without cells in the results: say how to measure it
    with pytest.raises(AdvisorError, match=r"'vgg16' has no cells in these results \(they hold bb_a, bb_b\); sweep it"):
        fitted.recommend({"n_images": 3000, "domain": "natural", "backbone": "vgg16"})


def test_bad_traits_are_one_line_errors(fitted):
    for bad, match in (
        ({"n_images": 0}, "positive"),
        ({"n_images": -5}, "positive"),
        ({"n_images": 10, "n_classes": 1}, "n-classes"),
        ({"n_images": 10, "colour": "x"}, "unknown"),
    ):
        with pytest.raises(AdvisorError, match=match):
            fitted.recommend({"domain": "natural", **bad})  # fmt: skip
    with pytest.raises(AdvisorError, match="unknown domain 'xray'; known domains: .*medical.*natural"):
        fitted.recommend({"n_images": 100, "domain": "xray"})


def test_recommendation_to_dict_is_json(fitted):
    rec = fitted.recommend(Traits(n_images=2000, domain="medical"))
    data = json.loads(json.dumps(rec.to_dict()))
    assert data["options"][0]["strategy"] == rec.best.strategy
    assert data["fitted_on"]["checksum"] == fitted.fitted_on_["checksum"]
    assert data["options"][0]["recipe"]["epochs"] == {"head": 6, "fine_tune": 3}


def test_rules_text(fitted):
    text = fitted.rules_text()
    assert "feature_extraction" in text and "full_fine_tune" in text
    assert "n <= " in text and "images" in text
    assert len(text.splitlines()) <= 10
    assert fitted.rules_fidelity_ >= 0.8


# ---------------------------------------------------------------------------------------------------- textbook


def test_textbook_rule_table():
    assert SMALL_N == 1000
    assert textbook_rule(200, "natural") == "feature_extraction"
    assert textbook_rule(200, "medical") == "fine_tune_top"
    assert textbook_rule(5000, "natural") == "fine_tune_top"
    assert textbook_rule(5000, "medical") == "full_fine_tune"
    assert textbook_rule(999, "natural") == "feature_extraction" and textbook_rule(1000, "natural") == "fine_tune_top"
    # a non-natural label with a measured gap below the natural median counts as similar
    assert quadrant(200, "satellite", gap=0.8) == ("small", "similar")
    assert quadrant(200, "shifted", gap=1.3) == ("small", "different")
    # a strategy the cell did not measure falls back to the next in the quadrant's list
    assert textbook_rule(5000, "medical", available={"scratch", "fine_tune_top"}) == "fine_tune_top"
    assert textbook_rule(5000, "medical", available={"scratch", "scratch_small"}) == "scratch"
    # the rule as the strategy records state it, quadrant by quadrant (CS231n / TF / Keras tutorials)
    assert preferences(("small", "similar")) == ("feature_extraction", "linear_probe", "fine_tune_top")
    assert preferences(("small", "different")) == ("fine_tune_top", "feature_extraction", "full_fine_tune")
    assert preferences(("large", "similar")) == ("fine_tune_top", "full_fine_tune", "feature_extraction")
    assert preferences(("large", "different")) == ("full_fine_tune", "fine_tune_top", "scratch", "scratch_small")


# ---------------------------------------------------------------------------------------------------- evaluation


def test_leave_one_dataset_out_beats_the_textbook(study):
    table = leave_one_dataset_out(*study)
    cells = table[~table["is_summary"]]
    assert len(cells) == len(DATASETS) * len(SIZES)
    assert table["is_summary"].sum() == 1
    assert (cells["advisor_regret"] >= -1e-12).all() and (cells["textbook_regret"] >= -1e-12).all()
    s = summary(table)
    assert s["advisor_regret_points"] < s["textbook_regret_points"]
    assert s["advisor_regret_points"] <= 1.0 and s["target_met"]


def test_leave_one_dataset_out_groups_the_shift_ladder():
    runs, sims = synthetic()
    ladder = runs[runs["dataset"] == "nat_a"].copy()
    ladder["dataset"] = "nat_a@grey"
    ladder["domain"] = "shifted"
    ladder["accuracy"] -= 0.05
    extra = pd.DataFrame([{"dataset": "nat_a@grey", "domain": "shifted", "backbone": b, "image_size": 64,
                           "frechet_distance": 1.5 * u} for b, u in UNITS.items()])  # fmt: skip
    table = leave_one_dataset_out(pd.concat([runs, ladder], ignore_index=True), pd.concat([sims, extra]))
    assert set(table.loc[table["dataset"] == "nat_a@grey", "group"]) == {"nat_a"}


def poison(runs: pd.DataFrame, dataset: str, seed: int = 0) -> pd.DataFrame:
    """``runs`` with one dataset's usable accuracies shuffled among its rows: a different winner in every cell,
    the same degenerate runs (the values stay above the dataset's majority share)."""
    out = runs.copy()
    usable = prepare(runs, None)[["cell_key"]].assign(ok=True)
    ok = out["cell_key"].isin(usable["cell_key"]) & (out["dataset"] == dataset)
    perm = np.random.default_rng(seed).permutation(int(ok.sum()))
    for col in ("accuracy", "balanced_accuracy"):
        out.loc[ok, col] = out.loc[ok, col].to_numpy()[perm]
    return out


def test_held_out_results_never_reach_the_advisor(study):
    """Nested: the held-out dataset's results change nothing the advisor picks for it, its inner selection
    (bandwidth, shrinkage) included, although they change which option is best there."""
    runs, sims = study
    clean = leave_one_dataset_out(runs, sims)
    dirty = leave_one_dataset_out(poison(runs, "med_a"), sims)
    held = clean["dataset"] == "med_a"
    cols = ["advisor_strategy", "advisor_backbone", "advisor_config"]
    pd.testing.assert_frame_equal(clean.loc[held, cols], dirty.loc[held, cols])
    assert (clean.loc[held, "best_strategy"] != dirty.loc[held, "best_strategy"]).any()  # the poison did something
    assert (clean.loc[held, "advisor_regret"] != dirty.loc[held, "advisor_regret"]).any()


def test_folds_hold_out_runs_and_similarity_rows(study):
    """The training side of a fold has neither the held-out dataset's runs nor its (or its ladder's) similarity."""
    runs, sims = study
    ladder = sims[sims["dataset"] == "nat_a"].assign(dataset="nat_a@grey", domain="shifted")
    sims = pd.concat([sims, ladder], ignore_index=True)
    for group, train, train_sims, held in _folds(runs, sims, sorted(DATASETS)):
        assert group not in set(train["dataset"]) and set(held["dataset"]) == {group}
        assert group not in set(similarity_groups(train_sims))
        assert len(train_sims) + (similarity_groups(sims) == group).sum() == len(sims)


def test_held_out_gap_is_in_the_training_datasets_units(study):
    """The gap unit is the median natural-photo distance of the *training* datasets: with nat_a held out, only nat_b
    (relative gap 1.1 on the full study) defines it, so nat_a's gap is 0.9 / 1.1, not 0.9."""
    table = leave_one_dataset_out(*study)
    gaps = table.loc[table["dataset"] == "nat_a", "gap"]
    assert np.allclose(gaps, 0.9 / 1.1)
    runs, sims = study
    moved = sims.copy()
    moved.loc[moved["dataset"] == "nat_a", "frechet_distance"] *= 10
    (_, train, train_sims, _), (_, _, moved_sims, _) = (
        next(f for f in _folds(runs, s, sorted(DATASETS)) if f[0] == "nat_a") for s in (sims, moved)
    )
    clean, dirty = Advisor(bandwidth=1.0).fit(train, train_sims), Advisor(bandwidth=1.0).fit(train, moved_sims)
    assert clean.gap_scales_ == dirty.gap_scales_ and clean.fitted_on_ == dirty.fitted_on_


def test_bandwidth_is_chosen_by_inner_leave_one_dataset_out(fitted, study):
    sel = fitted.selection_
    assert sel["rule"] == "1se" and sel["inner_datasets"] == len(DATASETS)
    assert [c["bandwidth"] for c in sel["candidates"]] == list(BANDWIDTHS)
    assert np.isfinite(fitted.bandwidth_)  # the size effects are real and the same on every dataset: local wins
    chosen = next(c for c in sel["candidates"] if c["bandwidth"] == fitted.bandwidth_)
    assert chosen["excess"] <= chosen["excess_se"] + 1e-12
    fixed = Advisor(bandwidth=1.0, shrinkage=2.0).fit(*study)
    assert fixed.selection_["rule"] == "fixed" and fixed.bandwidth_ == 1.0 and fixed.shrinkage_ == 2.0
    with pytest.raises(AdvisorError, match="bandwidth must be a positive number or 'auto'"):
        Advisor(bandwidth=0).fit(*study)
    with pytest.raises(AdvisorError, match="selection must be one of"):
        Advisor(selection="best").fit(*study)


def test_traits_without_signal_give_one_global_ranking():
    """When the options' order does not depend on the traits (only noise does), the one-standard-error rule keeps
    the simplest candidate: one ranking for every dataset."""
    runs, sims = synthetic(noise=0.02)
    flat = {"feature_extraction": 0.0, "linear_probe": -0.01, "fine_tune_top": 0.01, "full_fine_tune": 0.02,
            "scratch_small": -0.05}  # fmt: skip
    rng = np.random.default_rng(1)
    base = runs.groupby("dataset")["accuracy"].transform("mean")
    runs["accuracy"] = base + runs["strategy"].map(flat) + rng.normal(0, 0.02, len(runs))
    runs["balanced_accuracy"] = runs["accuracy"]
    advisor = Advisor().fit(runs, sims)
    assert advisor.bandwidth_ == np.inf
    assert "one ranking for every dataset" in advisor.rules_text()
    assert advisor.predict_table({"n_images": 100, "domain": "medical"}).iloc[0]["strategy"] == "full_fine_tune"


def test_shrinkage_grows_with_seed_noise():
    clean = Advisor(bandwidth=1.0).fit(*synthetic(noise=0.002))
    noisy = Advisor(bandwidth=1.0).fit(*synthetic(noise=0.03))
    assert 0 < clean.shrinkage_ < noisy.shrinkage_


def test_relative_accuracy_is_unbiased_by_missing_options():
    """accuracy = cell level + option effect exactly: the effects come back, whichever options a cell lacks."""
    runs, _ = synthetic(noise=0.0)
    runs = runs[runs["strategy"] != "scratch_small"].copy()
    effect = {"feature_extraction": -0.02, "linear_probe": -0.03, "fine_tune_top": 0.01, "full_fine_tune": 0.04}
    level = runs["dataset"].map({d: 0.5 + 0.05 * i for i, d in enumerate(DATASETS)}) + 0.01 * np.log2(runs["n_images"])
    runs["accuracy"] = level + runs["strategy"].map(effect) - 0.01 * (runs["backbone"] == "bb_b")
    drop = (runs["strategy"] == "full_fine_tune") & (runs["n_images"] >= 1000)  # as the CPU grid's cap
    drop |= (runs["strategy"] == "feature_extraction") & (runs["dataset"] == "dig")
    frame = prepare(runs[~drop].assign(balanced_accuracy=lambda r: r["accuracy"]), None)
    frame = with_features(frame, trait_defaults(frame))
    options = sorted({(s, b) for s, b in zip(frame["strategy"], frame["backbone"], strict=True)})
    model = RelativeAccuracy(bandwidth=np.inf).fit(cell_table(frame, options))
    truth = np.array([effect[s] - 0.01 * (b == "bb_b") for s, b in options])
    assert np.allclose(model.global_ - model.global_.mean(), truth - truth.mean(), atol=1e-9)


def test_ranking_ignores_clipping_at_full_accuracy(study):
    """Expected accuracies above 1 are shown clipped, but ranked by the unclipped value (no ties at 100 %)."""
    runs, sims = study
    easy = runs.assign(accuracy=runs["accuracy"] + 0.3, balanced_accuracy=runs["balanced_accuracy"] + 0.3)
    advisor = Advisor().fit(easy, sims)
    table = advisor.predict_table({"n_images": 3000, "domain": "natural", "n_classes": 5})
    assert table["accuracy"].max() == 1.0 and (table["accuracy"] == 1.0).sum() > 1
    assert tuple(table.iloc[0][["strategy", "backbone"]]) == ("full_fine_tune", "bb_a")


def test_leave_one_dataset_out_states_its_regret_basis(study):
    table = leave_one_dataset_out(*study)
    assert table.attrs["regret_basis"] == REGRET_BASIS
    s = summary(table)
    assert s["nested"] and s["regret_basis"]["advisor_regret"].startswith("over all backbones")
    assert s["regret_basis"]["textbook_regret"].startswith("per strategy")
    cells = table[~table["is_summary"]]
    assert (cells["advisor_fixed_backbone_regret"] >= -1e-12).all()
    assert (cells["textbook_fixed_backbone_regret"] >= -1e-12).all()
    assert s["advisor_fixed_backbone_regret_points"] <= s["textbook_fixed_backbone_regret_points"]
    assert cells["advisor_config"].str.len().gt(0).all()
    assert "folds" in table.loc[table["is_summary"], "advisor_config"].iloc[0]
    assert sum(s["regret_by_dataset_points"].values()) == pytest.approx(100 * cells["advisor_regret"].sum(), abs=0.1)


# ---------------------------------------------------------------------------------------------------- data loading


def test_load_results_from_an_export_folder(export_dir, study):
    runs, sims = load_results(export_dir)
    assert len(runs) == len(study[0])
    assert isinstance(runs["params"].iloc[0], dict) and isinstance(runs["curves"].iloc[0], list)
    assert set(sims["dataset"]) == set(DATASETS)
    advisor = Advisor().fit(runs, sims)
    assert advisor.fitted_on_["source"] == str(export_dir)
    assert advisor.fitted_on_["checksum"] == Advisor().fit(*study).fitted_on_["checksum"]


def test_domain_comes_from_the_datasets_table_when_runs_lack_it(study):
    """The store's runs.domain can be empty; the datasets table (or the registry) supplies the label."""
    runs, sims = study
    advisor = Advisor().fit(runs.assign(domain=None), sims)
    assert advisor.domains_ == sorted({d for d, _, _ in DATASETS.values()})


def test_load_results_errors(tmp_path):
    with pytest.raises(AdvisorError, match="does not exist"):
        load_results(tmp_path / "nope")
    with pytest.raises(AdvisorError, match="no runs.parquet"):
        load_results(tmp_path)


# ---------------------------------------------------------------------------------------------------- the CLI


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exit_:  # argparse's own errors (e.g. a non-integer --n-images)
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_recommend(capsys, export_dir):
    code, out, err = run_cli(capsys, "recommend", "--n-images", "2000", "--domain", "medical",
                             "--results", str(export_dir))  # fmt: skip
    assert code == 0, err
    assert "full_fine_tune" in out.splitlines()[out.splitlines().index("") + 2]  # the first ranked option
    for part in ("Recipe for", "Evidence", "Trust:", "textbook 2x2 rule"):
        assert part in out
    code, out, _ = run_cli(capsys, "recommend", "--n-images", "2000", "--domain", "medical", "--json",
                           "--results", str(export_dir))  # fmt: skip
    assert code == 0 and json.loads(out)["options"][0]["strategy"] == "full_fine_tune"


def test_cli_fit_rules_evaluate(capsys, export_dir):
    code, out, _ = run_cli(capsys, "fit", "--results", str(export_dir))
    assert code == 0 and "fitted on" in out and "datasets (6)" in out
    code, out, _ = run_cli(capsys, "rules", "--results", str(export_dir))
    assert code == 0 and "Rules of thumb" in out
    code, out, _ = run_cli(capsys, "evaluate", "--results", str(export_dir))
    assert code == 0 and "target (advisor below the textbook and <= 1 point): met" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--n-images", "0", "--domain", "natural"], "--n-images must be a positive number"),
        (["--n-images", "-5", "--domain", "natural"], "--n-images must be a positive number"),
        (["--n-images", "many", "--domain", "natural"], "invalid int value"),
        (["--n-images", "100", "--domain", "xray"], "unknown domain 'xray'; known domains: "),
        (["--n-images", "100"], "--domain is required"),
        (["--n-images", "100", "--domain", "natural", "--budget", "0"], "--budget must be a positive"),
    ],
)
def test_cli_bad_inputs(capsys, export_dir, argv, message):
    code, _, err = run_cli(capsys, "recommend", *argv, "--results", str(export_dir))
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1, err


def test_cli_domain_help_lists_the_registry_labels(capsys):
    """The --domain help of recommend and train names every label of the registry's taxonomy, and other."""
    from study.data.datasets import known_domains

    for command in ("recommend", "train"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        help_text = " ".join(capsys.readouterr().out.split())
        assert f"one of {', '.join([*known_domains(), 'other'])}" in help_text, command


def test_cli_bad_data_dirs(capsys, export_dir, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    not_images = tmp_path / "other"  # (class folders of .txt files are text input: advisor.text)
    (not_images / "a").mkdir(parents=True)
    (not_images / "a" / "notes.dat").write_text("hello")
    cases = ((empty, "is empty"), (not_images, "holds no images"), (tmp_path / "nope", "does not exist"))
    for folder, message in cases:
        code, _, err = run_cli(capsys, "recommend", "--n-images", "100", "--domain", "natural",
                               "--data-dir", str(folder), "--results", str(export_dir))  # fmt: skip
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def make_folder(root: Path, counts: dict[str, int], size: int = 40) -> Path:
    """A user's image folder: one sub-folder of small PNGs per class."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls, n in counts.items():
        (root / cls).mkdir(parents=True)
        for i in range(n):
            pixels = rng.integers(0, 255, (size, size + 8, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / cls / f"{i}.png")
    return root


def test_measure_folder_traits_without_tensorflow(tmp_path):
    from advisor.traits import measure

    folder = make_folder(tmp_path / "xrays", {"normal": 12, "pneumonia": 4})
    traits = measure(folder, "medical", measure_gap=False)
    assert traits["n_images"] == 16 and traits["n_classes"] == 2
    assert traits["imbalance"] == pytest.approx(12 / 16)
    assert traits["native_size"] == 40 and traits["gap"] is None


def test_cli_no_results(capsys, tmp_path, monkeypatch):
    import advisor.data as data

    monkeypatch.setattr(data, "REFERENCE_DIR", tmp_path / "reference")
    monkeypatch.setattr(data, "STUDY_DB", tmp_path / "study.db")
    monkeypatch.chdir(tmp_path)  # nor a results/ folder in the working directory
    for argv in (["fit"], ["rules"], ["recommend", "--n-images", "100", "--domain", "natural"]):
        code, _, err = run_cli(capsys, *argv)
        assert code == 2 and "no results to fit on" in err and len(err.strip().splitlines()) == 1, err
    code, _, err = run_cli(capsys, "fit", "--results", str(tmp_path / "missing.db"))
    assert code == 2 and "does not exist" in err


def test_python_dash_m_advisor_help():
    proc = subprocess.run([sys.executable, "-m", "advisor", "--help"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0 and "recommend" in proc.stdout


# ---------------------------------------------------------------------------------------------------- real results


def test_smoke_store_end_to_end(smoke_store, capsys):
    """The tiny real smoke grid: too small to advise well, but every command must run and say sane things."""
    url, _, _ = smoke_store
    runs, sims = load_results(url)
    advisor = Advisor().fit(runs, sims)
    assert advisor.fitted_on_["source"] == url and advisor.fitted_on_["n_rows"] >= 1
    code, out, err = run_cli(capsys, "recommend", "--n-images", "2000", "--domain", "medical", "--results", url)
    assert code == 0, err
    assert "EXTRAPOLATING" in out and "training-set size 2000 is outside the measured range" in out
    code, out, err = run_cli(capsys, "rules", "--results", url)
    assert code == 0 and "Rules of thumb" in out, err
    code, out, err = run_cli(capsys, "evaluate", "--results", url)
    # two datasets at 40 images: when one of them has only degenerate runs there is nothing to leave out
    if code == 0:
        assert "Leave-one-dataset-out over 2 datasets" in out and "textbook: mean regret" in out
    else:
        assert code == 2 and "needs results on at least 2 datasets" in err and len(err.strip().splitlines()) == 1


def test_smoke_store_measures_a_folder(smoke_store, capsys, tmp_path):
    """--data-dir counts the images and measures the domain gap with the backbone the study used (no training)."""
    url, _, _ = smoke_store
    folder = make_folder(tmp_path / "mine", {"a": 10, "b": 10}, size=48)
    code, out, err = run_cli(capsys, "recommend", "--data-dir", str(folder), "--json", "--results", url)
    assert code == 0, err
    assert "no --domain given" in err
    data = json.loads(out)
    assert data["measured"]["n_images"] == 20 and data["measured"]["n_classes"] == 2
    assert data["measured"]["gap"] is not None and data["measured"]["gap"] > 0
    assert data["traits"]["gap"] == pytest.approx(data["measured"]["gap"])
    assert any("domain 'other'" in f for f in data["extrapolation"])


@pytest.mark.parametrize(("share", "k", "said"), [(0.88, 2, True), (0.70, 2, False), (0.45, 10, True),
                                                  (0.14, 10, False), (0.34, 3, False)])  # fmt: skip
def test_a_dominant_class_is_named_with_the_accuracy_of_always_answering_it(share, k, said):
    """An expected accuracy of 0.90 on a folder whose largest class holds 88 % must be read against 0.88."""
    from advisor.render import imbalance_note

    note = imbalance_note({"imbalance": share, "n_classes": k})
    assert (note is not None) == said
    if said:
        assert f"{share:.0%}" in note and f"{share:.3f}" in note and "balanced accuracy" in note
    assert imbalance_note(None) is None and imbalance_note({"imbalance": None, "n_classes": 2}) is None


def test_smoke_store_says_when_a_folder_is_dominated_by_one_class(smoke_store, capsys, tmp_path):
    url, _, _ = smoke_store
    folder = make_folder(tmp_path / "skewed", {"a": 18, "b": 3}, size=48)
    code, out, err = run_cli(capsys, "recommend", "--data-dir", str(folder), "--results", url)
    assert code == 0, err
    assert "largest class holds 86% of the training images, so always answering it scores about 0.857" in out
