"""The resolution slice's analysis: the same options at two input sizes, paired differences and pick agreement."""

from __future__ import annotations

import numpy as np
import pandas as pd

from study.analysis import resolution


def _frame(swap_at_128: bool) -> pd.DataFrame:
    """Two options on one dataset, 2 seeds, 400 test images; at 128 px the fine-tuned option gains 25 points (and,
    with ``swap_at_128``, overtakes the probe, which wins at 64 px)."""
    rng = np.random.default_rng(0)
    rows = []
    truth = {(64, "linear_probe"): 0.85, (64, "fine_tune_top"): 0.70,
             (128, "linear_probe"): 0.85, (128, "fine_tune_top"): 0.95 if swap_at_128 else 0.72}  # fmt: skip
    for (size, strategy), p in truth.items():
        for seed in (0, 1):
            correct = (rng.random(400) < p).astype(int)
            rows.append({"dataset": "d", "n_images": 250, "strategy": strategy, "backbone": "mobilenet_v2",
                         "image_size": size, "seed": seed, "accuracy": correct.mean(), "majority_share": 0.5,
                         "correct": correct.tolist()})  # fmt: skip
    # a 64-px-only option never enters the comparison
    rows.append({"dataset": "d", "n_images": 250, "strategy": "full_fine_tune", "backbone": "mobilenet_v2",
                 "image_size": 64, "seed": 0, "accuracy": 0.99, "majority_share": 0.5, "correct": [1] * 400})
    return pd.DataFrame(rows)


def test_differences_and_agreement_of_the_best_pick():
    table = resolution.resolution_table(_frame(swap_at_128=True), n_boot=300)
    assert len(table) == 2 and set(table["strategy"]) == {"linear_probe", "fine_tune_top"}
    ft = table.set_index("strategy").loc["fine_tune_top"]
    assert ft["difference"] > 0.15 and ft["significant"] and ft["ci_low"] > 0
    lp = table.set_index("strategy").loc["linear_probe"]
    assert not lp["significant"]
    agree = resolution.agreement(table).iloc[0]
    assert agree["best_64"] == "linear_probe/mobilenet_v2" and agree["best_128"] == "fine_tune_top/mobilenet_v2"
    assert not agree["same_option"] and agree["regret_of_small_pick"] > 0.05
    s = resolution.summary(table)
    assert s["same_best_strategy"] == 0.0 and s["significant_up"] >= 1


def test_agreeing_sizes_and_one_size_only():
    table = resolution.resolution_table(_frame(swap_at_128=False), n_boot=300)
    assert resolution.summary(table)["same_best_option"] == 1.0
    one_size = _frame(False)
    assert resolution.resolution_table(one_size[one_size["image_size"] == 64]).empty
