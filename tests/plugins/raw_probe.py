"""Test plugin: a strategy registered from outside the package, the way a user's ``--plugin`` module does it.

``raw_probe`` is logistic regression on the cached pooled features as they are: the built-in ``linear_probe``'s
recipe without its deployment export, the smallest complete strategy. One record, nothing else to edit anywhere.
"""

from __future__ import annotations

import time

import numpy as np

from study.train import strategies


def run_raw_probe(data, spec, cfg, engine):  # type: ignore[no-untyped-def]
    from sklearn.linear_model import LogisticRegression

    ftr = engine.pooled(data, spec, "pool", data.train_idx)[0]
    fval = engine.pooled(data, spec, "pool", data.val_idx)[0]
    ftest = engine.pooled(data, spec, "test", data.test_idx)[0]
    t0 = time.perf_counter()
    clf = LogisticRegression(C=cfg.linear_c, max_iter=500, random_state=cfg.seed).fit(ftr, data.y_train)
    seconds = time.perf_counter() - t0

    def proba(f: np.ndarray) -> np.ndarray:
        out = np.zeros((len(f), data.n_classes))
        out[:, clf.classes_] = clf.predict_proba(f)
        return out

    return strategies.FitResult(val_proba=proba(fval), test_proba=proba(ftest), curves=[],
                                timings={"train_seconds": seconds, "eval_seconds": 0.0},
                                trainable_params=int(clf.coef_.size + clf.intercept_.size))  # fmt: skip


RAW_PROBE = strategies.register_strategy(
    strategies.Strategy(
        name="raw_probe",
        run=run_raw_probe,
        recipe="Logistic regression on the frozen backbone's pooled features, not standardised (C tuned).",
        pretrained=True,
        params=("linear_c",),
        freeze_level=3,
        freeze_text="freeze the whole backbone; fit a logistic regression on its raw pooled features",
        label="raw-feature probe",
        abbreviation="RAW",
        colour="#e69f00",
        order=6,
    )
)
