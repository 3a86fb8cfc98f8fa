"""Equal tuning budget per strategy: an Optuna study per cell, selected on the validation split only.

Every strategy of a cell gets the same number of trials (the grid's ``trials``). Trial 0 is always the
strategy's default recipe, so a budget of 1 means "the documented recipe, untuned" for everyone alike; further
trials are proposed by TPE (seeded by the cell seed) over a define-by-run search space per strategy. The score
is balanced accuracy on the validation part of the user's N images: test labels are never read here.
Trials report validation accuracy after every epoch and a median pruner stops the hopeless ones. Studies live
in the results database (``storage``), so a killed sweep resumes its searches where they stopped.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from sklearn.metrics import balanced_accuracy_score

from study.cache.features import FeatureEngine
from study.data.cell_data import CellData
from study.errors import StudyError
from study.train.strategies import Strategy
from study.train.training import EPOCH_HOOK, FitResult, TrainConfig
from study.zoo.backbones import BackboneSpec


@dataclass(frozen=True)
class Param:
    """One tunable ``TrainConfig`` field: its search range (the same for every strategy that reads it)."""

    low: float
    high: float
    log: bool = False
    integer: bool = False


PARAMS: dict[str, Param] = {
    "lr_head": Param(1e-4, 1e-2, log=True),
    "dropout": Param(0.0, 0.5),
    "weight_decay": Param(1e-6, 1e-2, log=True),
    "lr_finetune": Param(1e-5, 1e-3, log=True),
    "top_k": Param(1, 0, integer=True),  # upper bound per backbone: min(blocks, 2 x its default)
    "linear_c": Param(1e-3, 1e2, log=True),
}
"""Search ranges by parameter; a strategy's record lists the parameters it reads (``Strategy.params``)."""


def search_space(trial: Any, strategy: Strategy, spec: BackboneSpec | None) -> dict[str, Any]:
    """Optuna's define-by-run space of a strategy: its parameters, suggested in the record's order."""
    out: dict[str, Any] = {}
    for name in strategy.params:
        if name not in PARAMS:
            raise StudyError(
                f"strategy {strategy.name!r} lists parameter {name!r}, which has no search range; known: "
                f"{', '.join(PARAMS)} (add one to study.train.tuning.PARAMS)"
            )
        p = PARAMS[name]
        if name == "top_k":
            if spec is None:
                raise StudyError(f"strategy {strategy.name!r} tunes top_k but has no backbone")
            out[name] = trial.suggest_int(name, 1, min(spec.n_blocks, 2 * spec.default_top_k))
        elif p.integer:
            out[name] = trial.suggest_int(name, int(p.low), int(p.high), log=p.log)
        else:
            out[name] = trial.suggest_float(name, p.low, p.high, log=p.log)
    return out


def validation_score(data: CellData, result: FitResult) -> float:
    """Balanced accuracy on the validation split: robust to imbalance, chance = 1/K for a collapsed model.

    ``CellData.y_select``: a domain-adaptation cell is scored on its source's validation split (no target labels).
    """
    return float(balanced_accuracy_score(data.y_select, np.asarray(result.val_proba).argmax(axis=1)))


@dataclass
class TuningOutcome:
    params: dict[str, Any]
    result: FitResult | None  # the best trial's trained model when it was trained in this process
    trials_run: int = 0
    trials_pruned: int = 0
    ranked_params: list[dict[str, Any]] = field(default_factory=list)  # best first, for degenerate retries
    best_value: float | None = None


def defaults(strategy: Strategy, base: TrainConfig, spec: BackboneSpec | None) -> dict[str, Any]:
    """The default recipe expressed in the strategy's search-space parameters (trial 0)."""
    values = base.to_dict()
    if values.get("top_k") is None and spec is not None:
        values["top_k"] = spec.default_top_k
    return {k: values[k] for k in strategy.params}


@contextlib.contextmanager
def _reporting(trial: Any) -> Iterator[None]:
    import optuna

    step = [0]

    def hook(val_accuracy: float) -> None:
        trial.report(val_accuracy, step[0])
        step[0] += 1
        if trial.should_prune():
            raise optuna.TrialPruned()

    token = EPOCH_HOOK.set(hook)
    try:
        yield
    finally:
        EPOCH_HOOK.reset(token)


_STORAGES: dict[str, Any] = {}


def optuna_storage(url: str | None) -> Any:
    """Optuna's RDB storage on the results database, created once per process.

    Two sweeps (or two workers) starting together on one database race to create Optuna's tables: PostgreSQL
    answers the loser with a unique violation on ``pg_type``, SQLite with "table ... already exists"; the
    loser retries and finds them made.
    """
    if url is None:
        return None
    if url not in _STORAGES:
        import time

        import optuna
        import sqlalchemy.exc

        for attempt in range(5):
            try:
                _STORAGES[url] = optuna.storages.RDBStorage(url)
                break
            except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError, sqlalchemy.exc.OperationalError):
                if attempt == 4:
                    raise
                time.sleep(0.2 * (attempt + 1))
    return _STORAGES[url]


def tune(
    study_name: str,
    strategy: Strategy,
    data: CellData,
    spec: BackboneSpec | None,
    engine: FeatureEngine,
    base: TrainConfig,
    n_trials: int,
    storage: str | None,
) -> TuningOutcome:
    """Search ``n_trials`` configurations (trial 0 = defaults) and return the best by validation score."""
    if n_trials <= 1 or not strategy.params:  # nothing to search: every trial would train the same recipe
        result = strategy.run(data, spec, base, engine)  # type: ignore[arg-type]
        return TuningOutcome({}, result, 1, 0, [{}], validation_score(data, result))

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=study_name,
        storage=optuna_storage(storage),
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=base.seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=2),
        load_if_exists=True,
    )
    finished = [
        t for t in study.trials if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    ]
    if not study.trials:
        study.enqueue_trial(defaults(strategy, base, spec))
    best: dict[str, Any] = {}

    def objective(trial: Any) -> float:
        params = search_space(trial, strategy, spec)
        cfg = replace(base, **params)
        with _reporting(trial):
            result = strategy.run(data, spec, cfg, engine)  # type: ignore[arg-type]
        score = validation_score(data, result)
        if not best or score > best["score"]:
            best.update(score=score, number=trial.number, result=result)
        return score

    remaining = n_trials - len(finished)
    if remaining > 0:
        study.optimize(objective, n_trials=remaining, gc_after_trial=True)
    complete = sorted(
        (t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE), key=lambda t: -float(t.value)
    )
    if not complete:  # every trial pruned: fall back to the default recipe
        result = strategy.run(data, spec, base, engine)  # type: ignore[arg-type]
        return TuningOutcome({}, result, len(study.trials), len(study.trials), [{}], validation_score(data, result))
    top = complete[0]
    reuse = best.get("result") if best.get("number") == top.number else None
    pruned = sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials)
    return TuningOutcome(
        dict(top.params), reuse, len(study.trials), pruned, [dict(t.params) for t in complete], float(top.value)
    )
