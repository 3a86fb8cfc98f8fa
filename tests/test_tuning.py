"""Fair comparison: equal trial budgets, selection blind to test labels, degenerate models caught."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from study.analysis.stats import mark_degenerate, summarise, transfer_gain
from study.engine.cell import CellRunner
from study.engine.grid import Cell
from study.train import strategies
from study.train.training import FitResult, TrainConfig
from study.train.tuning import tune
from study.zoo.backbones import get_backbone

SPEC = get_backbone("mobilenet_v2")


def _cell(strategy: str, trials: int, n: int = 60, retries: int = 2, dataset: str = "retinamnist") -> Cell:
    return Cell(dataset=dataset, n_images=n, strategy=strategy, backbone="mobilenet_v2", image_size=32, seed=0,
                epochs=3, trials=trials, augment=False, max_test=100, grid="test", retries=retries)


@pytest.fixture(scope="module")
def runner(tmp_path_factory, datapack):
    tmp = tmp_path_factory.mktemp("tuning")
    from study.config import WeightsDirs, data_dirs, keras_home

    return CellRunner(tmp / "cache", data_dirs(), WeightsDirs(keras_home(), tmp / "cache"),
                      tuning_storage=f"sqlite:///{tmp / 'optuna.db'}", measure_latency=False)  # fmt: skip


def test_every_strategy_gets_the_same_trial_budget(runner):
    rows = {s: runner.run(_cell(s, trials=4)) for s in ("feature_extraction", "linear_probe", "fine_tune_top")}
    for s, row in rows.items():
        assert row["metrics"]["trials_run"] == 4, s
        assert row["metrics"]["trials_run"] - row["metrics"]["trials_pruned"] >= 1, s
    # tuned hyper-parameters are recorded with the row
    assert rows["fine_tune_top"]["params"]["top_k"] >= 1


def test_tuning_never_reads_test_labels(runner):
    """Poisoned test labels leave every trial's score and the chosen configuration unchanged."""
    cell = _cell("feature_extraction", trials=5, n=80)
    data = runner.cell_data(cell)
    base = TrainConfig(epochs=3, seed=0)
    strat = strategies.get_strategy("feature_extraction")
    clean = tune("clean", strat, data, SPEC, runner.engine, base, 5, None)
    ds = runner.dataset(cell.dataset, cell.image_size)
    poisoned_test = replace(ds.test, labels=np.random.default_rng(1).permutation(ds.test.labels))
    poisoned = tune("poisoned", strat, replace(data, test=poisoned_test), SPEC, runner.engine, base, 5, None)
    assert clean.params == poisoned.params
    assert clean.best_value == pytest.approx(poisoned.best_value)
    assert clean.ranked_params == poisoned.ranked_params


def test_tuning_resumes_from_the_results_database(runner, tmp_path):
    cell = _cell("linear_probe", trials=3)
    data = runner.cell_data(cell)
    strat = strategies.get_strategy("linear_probe")
    url = f"sqlite:///{tmp_path / 'o.db'}"
    first = tune("resume", strat, data, SPEC, runner.engine, TrainConfig(seed=0), 3, url)
    again = tune("resume", strat, data, SPEC, runner.engine, TrainConfig(seed=0), 3, url)  # nothing left to run
    assert first.trials_run == again.trials_run == 3
    assert first.params == again.params


def test_constant_model_is_flagged_retried_and_kept_labelled(runner, monkeypatch):
    def constant(data, spec, cfg, engine):
        p = np.zeros((len(data.test_idx), data.n_classes))
        p[:, 0] = 1.0
        v = np.zeros((len(data.val_idx), data.n_classes))
        v[:, 0] = 1.0
        return FitResult(val_proba=v, test_proba=p, timings={"train_seconds": 0.0, "eval_seconds": 0.0},
                         trainable_params=1)  # fmt: skip

    record = strategies.Strategy(name="constant", run=constant, recipe="predicts class 0", pretrained=False,
                                 uses_backbone=False)
    with strategies.STRATEGIES.temporary(record):
        row = runner.run(replace(_cell("constant", trials=1), backbone=None))
    assert row["degenerate"] is True
    assert row["metrics"]["degenerate_retries"] == 2
    # kept, labelled, and excluded from comparisons
    frame = _frame([("scratch", 0.9, False), ("scratch", 0.3, True), ("feature_extraction", 0.8, False)])
    assert mark_degenerate(frame)["degenerate"].tolist() == [False, True, False]
    summary = summarise(frame).set_index("strategy")
    assert summary.loc["scratch", "n_degenerate"] == 1 and summary.loc["scratch", "accuracy_mean"] == 0.9


def _frame(rows):
    import pandas as pd

    recs = []
    for i, (strategy, acc, degenerate) in enumerate(rows):
        n = 200
        correct = [1] * int(acc * n) + [0] * (n - int(acc * n))
        recs.append({"dataset": "d", "n_images": 100, "strategy": strategy, "backbone": "b", "image_size": 32,
                     "seed": i, "accuracy": acc, "balanced_accuracy": acc, "majority_share": 0.5,
                     "degenerate": degenerate, "correct": correct, "n_classes": 2})  # fmt: skip
    return pd.DataFrame(recs)


def test_negative_transfer_flag_on_constructed_results():
    frame = _frame([("scratch_small", 0.95, False), ("scratch_small", 0.95, False),
                    ("feature_extraction", 0.80, False), ("feature_extraction", 0.81, False),
                    ("linear_probe", 0.99, False), ("linear_probe", 0.99, False)])  # fmt: skip
    gains = transfer_gain(frame).set_index("strategy")
    assert bool(gains.loc["feature_extraction", "negative_transfer"])
    assert not bool(gains.loc["feature_extraction", "significant_gain"])
    assert bool(gains.loc["linear_probe", "significant_gain"])
    assert not bool(gains.loc["linear_probe", "negative_transfer"])


def test_optuna_storage_retries_the_table_creation_race(monkeypatch, tmp_path):
    """Two workers on a fresh SQLite store both create Optuna's tables; the loser sees "already exists" and retries."""
    import optuna
    import sqlalchemy.exc

    from study.train import tuning

    real, calls = optuna.storages.RDBStorage, []

    def racing(url, *args, **kwargs):
        calls.append(url)
        if len(calls) == 1:
            raise sqlalchemy.exc.OperationalError("CREATE TABLE study_directions", {}, Exception("table exists"))
        return real(url, *args, **kwargs)

    monkeypatch.setattr(optuna.storages, "RDBStorage", racing)
    url = f"sqlite:///{tmp_path / 'race.db'}"
    monkeypatch.delitem(tuning._STORAGES, url, raising=False)
    storage = tuning.optuna_storage(url)
    assert isinstance(storage, real) and len(calls) == 2
