"""The baselines every advisor is scored against, on the same held-out cells (``advisor.evaluate``).

A *pick* is a (strategy, backbone) that was measured in the cell (otherwise its accuracy is unknown). A baseline
names an option; when that option was not measured in a cell (the CPU grids cap full fine-tuning at 1000 images,
the shift ladder never runs it) ``measured_fallback`` takes the measured option on the same backbone that is
closest in freezing level, pretrained strategies before from-scratch ones: the generous reading the textbook
baseline also gets (``advisor.textbook``).

- **constant** (strategy, backbone): the same option for every dataset; every one of them is scored;
- **best constant in hindsight**: the constant with the lowest mean regret *on the evaluated cells themselves*: it
  has seen the answers, so it is a bound a fixed rule could reach only by luck, not a method;
- **best probe**: the frozen option on the backbone whose cross-validated linear probe on the cell's N training
  images is best (``linear_probe``, the strategy the probe measures; ``feature_extraction`` when that is missing);
- **LogME pick + full fine-tune**: the backbone with the best LogME on the cell's N training images, fine-tuned
  entirely (the LogME paper's use: rank backbones by LogME, fine-tune the top one).
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from study.engine.store import NO_BACKBONE
from study.train.strategies import strategy_or_none, strategy_records

Option = tuple[str, str]
FROZEN_LEVEL = 3
"""``Strategy.freeze_level`` of the strategies that keep the whole backbone frozen (what a probe measures)."""


def probe_strategies() -> list[str]:
    """The frozen image strategies the best-probe baseline may run, in display order (the linear probe first: the
    probe *is* a linear probe), read from the strategy records."""
    return [s.name for s in strategy_records()
            if s.pretrained and s.freeze_level == FROZEN_LEVEL and s.modality == "image" and not s.pair]  # fmt: skip

FINE_TUNE = "full_fine_tune"


def _freeze(strategy: str) -> int:
    record = strategy_or_none(strategy)
    return record.freeze_level if record is not None else -1


def _from_scratch(strategy: str) -> bool:
    record = strategy_or_none(strategy)
    return bool(record is not None and (record.baseline or not record.pretrained))


def measured_fallback(option: Option, measured: Iterable[Option]) -> Option | None:
    """``option`` when measured, else the measured option on its backbone closest in freezing level (or None).

    Ties go to pretrained strategies, then to the more frozen one, then by name (deterministic).
    """
    pool = list(measured)
    if option in pool:
        return option
    strategy, backbone = option
    same = [o for o in pool if o[1] == backbone and o[1] != NO_BACKBONE]
    if not same:
        return None
    level = _freeze(strategy)
    return min(same, key=lambda o: (abs(_freeze(o[0]) - level), _from_scratch(o[0]), -_freeze(o[0]), o[0]))


def best_probe_pick(probes: pd.DataFrame, measured: Iterable[Option]) -> Option | None:
    """The frozen option on the backbone with the best cross-validated linear probe (``probes``: one row per
    backbone with ``linear_probe_accuracy``), restricted to backbones and strategies measured in the cell."""
    pool = list(measured)
    if probes is None or probes.empty:
        return None
    for backbone in probe_ranked_backbones(probes):
        for strategy in probe_strategies():
            if (strategy, backbone) in pool:
                return strategy, backbone
    return None


def probe_ranked_backbones(probes: pd.DataFrame) -> list[str]:
    """The probed backbones, best cross-validated linear probe first (ties by name: deterministic)."""
    ranked = probes.sort_values(["linear_probe_accuracy", "backbone"], ascending=[False, True])["backbone"]
    return [str(b) for b in ranked]


def logme_pick(probes: pd.DataFrame, measured: Iterable[Option]) -> Option | None:
    """Full fine-tuning of the backbone with the best LogME (fallback by freezing level when not measured)."""
    pool = list(measured)
    if probes is None or probes.empty:
        return None
    for backbone in probes.sort_values(["logme", "backbone"], ascending=[False, True])["backbone"]:
        pick = measured_fallback((FINE_TUNE, str(backbone)), pool)
        if pick is not None:
            return pick
    return None
