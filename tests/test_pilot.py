"""The pilot (``advisor.pilot``): its size, its update rule, its leave-one-dataset-out evaluation on a constructed
study where the truth is known, and that a pilot on a folder never reads the folder's held-out split."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from advisor.gain import GainModel
from advisor.pilot import evaluate_pilot, pilot_size, pilot_summary, run_pilot, update
from study.analysis.tables import flatten

DATASETS = [f"ds{i}" for i in range(6)]
SIZES = (50, 250, 1000)
RNG = np.random.default_rng(3)
QUALITY = {d: {"bb_a": float(RNG.uniform(0.6, 0.8)), "bb_b": float(RNG.uniform(0.6, 0.8))} for d in DATASETS}
QUIRK = {d: float(q) for d, q in zip(DATASETS, [0.08, -0.08, 0.06, -0.06, 0.07, -0.07], strict=True)}
"""How much fine-tuning gains on the dataset beyond the study's average: nothing in the traits or probes tells it,
only training it on the dataset does (at any size: the pilot at a quarter of n sees it)."""


def probe(d: str, b: str, n: int) -> float:
    return QUALITY[d][b] - 0.02 * (10 - math.log2(n))


def truth(d: str, s: str, b: str, n: int) -> float:
    if s == "linear_probe":
        return probe(d, b, n)
    return probe(d, b, n) + QUIRK[d] + 0.01 * (math.log2(n) - 8)  # full_fine_tune


def constructed() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(runs with per-image test outcomes, similarity, probes) of the constructed study."""
    rng = np.random.default_rng(0)
    runs, probes = [], []
    for d in DATASETS:
        for n in SIZES:
            for s in ("linear_probe", "full_fine_tune"):
                for b in ("bb_a", "bb_b"):
                    for seed in (0, 1):
                        correct = (rng.random(1000) < truth(d, s, b, n)).astype(int)
                        runs.append({"cell_key": f"{d}/{n}/{s}/{b}/{seed}", "status": "complete", "dataset": d,
                                     "domain": "natural", "n_images": n, "strategy": s, "backbone": b,
                                     "image_size": 64, "seed": seed, "accuracy": float(correct.mean()),
                                     "balanced_accuracy": float(correct.mean()), "majority_share": 0.2,
                                     "degenerate": False, "train_seconds": 2.0, "extract_seconds": 1.0,
                                     "metrics": {"n_classes": 5, "pool_majority_share": 0.2, "base_dataset": d,
                                                 "top_prediction_share": 0.2, "n_test": 1000,
                                                 "correct": correct.tolist()}})  # fmt: skip
            for b in ("bb_a", "bb_b"):
                for seed in (0, 1):
                    p = probe(d, b, n)
                    probes.append({"dataset": d, "n_images": n, "seed": seed, "image_size": 64, "backbone": b,
                                   "linear_probe_accuracy": p, "linear_probe_std": 0.01, "knn_accuracy": p,
                                   "logme": p - 1.0})  # fmt: skip
    sims = [{"dataset": d, "domain": "natural", "backbone": b, "image_size": 64, "frechet_distance": 100.0}
            for d in DATASETS for b in ("bb_a", "bb_b")]  # fmt: skip
    return flatten(pd.DataFrame(runs)), pd.DataFrame(sims), pd.DataFrame(probes)


def test_pilot_size_is_a_study_size_at_most_a_quarter_of_n():
    assert pilot_size(199) is None
    assert (pilot_size(200), pilot_size(999), pilot_size(1000), pilot_size(3999), pilot_size(4000)) == (
        50, 50, 250, 250, 1000)  # fmt: skip
    assert pilot_size(1000, [50, 150, 500]) == 150


def test_update_shifts_each_piloted_option_by_its_miss_and_ranks_the_piloted_first():
    predicted_n = pd.DataFrame({"strategy": ["ft", "lp", "x"], "backbone": ["a", "a", "a"],
                                "accuracy": [0.80, 0.78, 0.79], "low": [0.7, 0.7, 0.7], "high": [0.9, 0.9, 0.9]})
    predicted_m = predicted_n.assign(accuracy=[0.70, 0.72, 0.71])
    pilot = pd.DataFrame({"strategy": ["ft", "lp"], "backbone": ["a", "a"], "accuracy": [0.65, 0.75]})
    out = update(predicted_n, predicted_m, pilot)
    assert list(out["strategy"]) == ["lp", "ft", "x"]  # x was not piloted: after every measured candidate
    assert out.set_index("strategy").loc["lp", "accuracy"] == pytest.approx(0.78 + 0.03)
    assert out.set_index("strategy").loc["ft", "accuracy"] == pytest.approx(0.80 - 0.05)
    assert out.set_index("strategy").loc["ft", "low"] == pytest.approx(0.7 - 0.05)
    assert out.set_index("strategy").loc["x", "accuracy"] == pytest.approx(0.79)
    assert list(out["piloted"]) == [True, True, False]


@pytest.fixture(scope="module")
def pilot_rows():
    runs, sims, probes = constructed()
    return evaluate_pilot(runs, sims, probes, GainModel(variant="option-linear"), k=4)


def test_the_pilot_measures_what_the_study_cannot_predict(pilot_rows):
    """Fine-tuning's gain is a per-dataset quirk of +-7 points: without a pilot the advisor can only guess it
    (about half its picks lose ~7 points), the pilot at a quarter of n measures it."""
    summary = pilot_summary(pilot_rows).set_index("method")
    assert set(pilot_rows["pilot_size"]) == {50, 250}  # n = 250 piloted at 50, n = 1000 at 250; n = 50: none
    assert summary.loc["advisor (probes + gains)", "mean_regret"] > 2.0
    assert summary.loc["advisor + pilot", "mean_regret"] < 1.5
    assert summary.loc["advisor + pilot", "mean_regret"] < summary.loc["advisor (probes + gains)", "mean_regret"] / 2
    assert summary.loc["advisor + pilot", "cells"] == 12
    assert any(m.startswith("best constant (hindsight)") for m in summary.index)
    assert (pilot_rows["pilot_seconds"] == 4 * 3.0).all()  # four candidates, 3 s each in the study


def test_pilot_is_scored_on_the_other_half_of_the_test_set(pilot_rows):
    halves = pilot_rows.groupby(["dataset", "n_images", "method"])["half"].apply(lambda h: sorted(set(h)))
    assert all(h == ["a", "b"] for h in halves)


def test_a_pilot_on_a_folder_never_reads_its_held_out_split(tmp_path, monkeypatch):
    from test_advisor_v2 import make_folder

    import advisor.probes as probes_module
    import study.train.strategies as strategies

    root = tmp_path / "photos"
    make_folder(root / "train", {"a": 110, "b": 110}, size=16)
    make_folder(root / "test", {"a": 5, "b": 5}, size=16)
    seen: list = []

    def fake_probe(engine, data, backbone, rows, labels, groups, seed=0):
        seen.append(("probe", [data.pool.ids[r] for r in rows]))
        return {"linear_probe_accuracy": 0.6, "linear_probe_std": 0.0, "knn_accuracy": 0.6, "logme": 0.0}

    class FakeStrategy:
        uses_backbone = False

        def run(self, data, spec, cfg, engine):
            seen.append(("run", data))
            return SimpleNamespace(test_proba=np.tile([0.6, 0.4], (len(data.test_idx), 1)))

    class FakeGain:
        backbones_ = ["mobilenet_075"]

        def predict(self, traits, probes, shrink_n=None):
            assert shrink_n == 220  # the pilot's prediction at m weighs the probes as at the folder's n
            return ranking.assign(accuracy=0.7)

    ranking = pd.DataFrame({"strategy": ["full_fine_tune"], "backbone": ["mobilenet_075"], "accuracy": [0.8],
                            "low": [0.7], "high": [0.9], "extrapolated": [False]})  # fmt: skip
    monkeypatch.setattr(probes_module, "probe_images", fake_probe)
    monkeypatch.setattr(strategies, "get_strategy", lambda name: FakeStrategy())
    out = run_pilot(root, ranking, {"n_images": 220}, FakeGain(), minutes=1, image_size=32, progress=False)
    (_, probed), (_, data) = seen
    assert out["size"] == 50 and len(probed) == 50 and all(i.startswith("train/") for i in probed)
    used = set(data.train_idx) | set(data.val_idx)
    assert len(used) == 50 and not used & set(data.test_idx)
    assert data.test is data.pool and all(data.pool.ids[i].startswith("train/") for i in data.test_idx)
    assert len(data.test_idx) == 170 and out["scored"] == 170
    assert data.fingerprint.endswith("+pilot")  # its cached rows can never pass for the real test split's
    assert out["ranking"]["pilot"].iloc[0] == pytest.approx(float(np.mean(data.pool.labels[data.test_idx] == 0)))


def test_pilot_bad_inputs_are_one_line_errors(tmp_path):
    from conftest import run_advisor
    from test_advisor_v2 import make_folder

    code, _, err = run_advisor("recommend", "--n-images", "500", "--domain", "natural", "--pilot", "2")
    assert code == 2 and "--pilot MINUTES needs --data-dir" in err and len(err.strip().splitlines()) == 1
    root = make_folder(tmp_path / "few", {"a": 20, "b": 20})
    code, _, err = run_advisor("recommend", "--data-dir", str(root), "--pilot", "0")
    assert code == 2 and "positive number of minutes" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(Exception, match="at least 200 training images"):
        run_pilot(root, pd.DataFrame(), {"n_images": 32}, None, minutes=1, image_size=32, progress=False)
    mid = make_folder(tmp_path / "mid", {"a": 120, "b": 120}, size=16)  # 240 images, 192 once 20 % is held out
    with pytest.raises(Exception, match="training pool .* has 192"):
        run_pilot(mid, pd.DataFrame(), {"n_images": 240}, None, minutes=1, image_size=32, progress=False)
