"""Pilot runs: train the top candidates on a subset of the user's own images before committing to one.

Why: the probes *measure* the frozen options, but how much fine-tuning adds on this dataset, and on which backbone,
is what they predict worst (on the broad reference the probe ranking of backbones hardly predicts fine-tuning's).
A pilot measures it: the advisor's top ``k`` candidates are trained with the study's own protocol on ``m`` of the
user's training images (``pilot_size``: about a quarter of them, one of the study's sizes so the gain model has
been fitted there) and scored on other training images of the user's — never the test split. Each candidate's
expected accuracy at the user's n is then shifted by how far the model's prediction at m missed::

    expected(n) = predicted(n) + (pilot(m) - predicted(m))

the learning curve's shape from the study, its level from the user's data. The pick is the best candidate after
the shift (options that were not piloted keep their prediction but are not picked over a measured candidate).

``evaluate_pilot`` scores this leave-one-dataset-out on the study itself. A pilot at m on the held-out dataset *is*
the study's cell at m (the same protocol; its training images are a subset of the n-cell's, the samples being
nested in n), so no new training is needed — but that cell's accuracy is measured on the same test images that score
the n-cell, which would leak. So every test set is cut in two fixed halves: the pilot is read on one half, the picks
are scored on the other, both ways, averaged (every method is scored on the same halves).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from advisor.data import AdvisorError, prepare

PILOT_SIZES = (50, 250, 1000)
"""The study's training sizes a pilot can run at (the gain model has been fitted at each)."""
RATIO = 4
"""A pilot uses at most 1/RATIO of the user's training images: the rest score it."""
DEFAULT_CANDIDATES = 4
KEYS = ["dataset", "n_images", "image_size"]
WITH_PILOT = "advisor + pilot"


def pilot_size(n_images: int, sizes: tuple[int, ...] | list[int] = PILOT_SIZES) -> int | None:
    """The largest of ``sizes`` (the study's) with ``RATIO`` x it <= n (None: too few images for a pilot smaller
    than the run itself)."""
    fits = [int(m) for m in sizes if RATIO * int(m) <= n_images]
    return max(fits) if fits else None


def candidates(ranking: pd.DataFrame, k: int = DEFAULT_CANDIDATES) -> pd.DataFrame:
    """The top ``k`` options of a gain-model ranking that are measured at the user's n (not extrapolated)."""
    ranked = ranking[~ranking["extrapolated"].astype(bool)] if "extrapolated" in ranking else ranking
    return ranked.head(k)


def update(predicted_n: pd.DataFrame, predicted_m: pd.DataFrame, pilot: pd.DataFrame) -> pd.DataFrame:
    """``predicted_n`` with the piloted options shifted by their pilot's miss at m, piloted options first.

    ``pilot``: one row per piloted (strategy, backbone) with its measured ``accuracy`` at m. Adds ``pilot``
    (measured at m), ``predicted_m`` and ``shift``; ``accuracy``, ``low`` and ``high`` move by the shift.
    """
    key = ["strategy", "backbone"]
    at_m = predicted_m.set_index(key)["accuracy"].rename("predicted_m")
    measured = pilot.set_index(key)["accuracy"].rename("pilot")
    out = predicted_n.join(at_m, on=key).join(measured, on=key)
    out["shift"] = (out["pilot"] - out["predicted_m"]).fillna(0.0)  # 0 where not piloted
    for col in ("accuracy", "low", "high"):
        if col in out:
            out[col] = (out[col] + out["shift"]).clip(0.0, 1.0)
    out["piloted"] = out["pilot"].notna() & out["predicted_m"].notna()
    return out.sort_values(["piloted", "accuracy"], ascending=[False, False], kind="stable").reset_index(drop=True)


# ----------------------------------------------------------------------------------------------- on a folder

def pilot_gain(runs: pd.DataFrame, similarity: pd.DataFrame | None, results: Any) -> Any:
    """The fitted gain model a pilot re-ranks with (``advisor.probes.fit_gain``); a one-line error when the results
    carry no cell probes (recommend --pilot and train --pilot alike)."""
    from advisor.probes import fit_gain, load_probes

    gain = fit_gain(runs, similarity, load_probes(results))
    if gain is None:
        raise AdvisorError("--pilot needs the study's cell probes beside the results (advisor probes --results "
                           "SOURCE writes them)")  # fmt: skip
    return gain


MAX_SCORED = 1000
"""At most this many of the user's other training images score the pilot (a fixed seeded subset)."""


def run_pilot(folder: Any, ranking: pd.DataFrame, traits: dict[str, Any], gain: Any, *, minutes: float,
              image_size: int, k: int = DEFAULT_CANDIDATES, seed: int = 0, epochs: int = 10,
              progress: bool = True, warn: Any = None) -> dict[str, Any]:  # fmt: skip
    """Train the top ``k`` candidates of ``ranking`` on ``pilot_size(n)`` of the folder's training images within
    ``minutes``, score each on up to ``MAX_SCORED`` of its *other* training images, and re-rank (``update``).

    The folder's held-out split (``test/``, or the fixed 20 % ``advisor train`` keeps back) is never read. Returns
    ``{"size", "scored", "seconds", "pilot" (one row per run candidate), "ranking" (updated), "skipped"}``.
    """
    import sys
    import time

    from tqdm import tqdm

    from advisor.data import OTHER
    from advisor.probes import probe_images
    from advisor.traits import loaded_folder
    from study import config
    from study.cache.features import FeatureEngine
    from study.data.cell_data import CellData
    from study.data.sampling import train_val_split
    from study.train.strategies import get_strategy
    from study.train.training import TrainConfig
    from study.zoo.backbones import get_backbone

    if not minutes > 0:
        raise AdvisorError(f"--pilot must be a positive number of minutes, got {minutes!r}")
    n = int(traits["n_images"])
    chosen = candidates(ranking, k)
    t0 = time.perf_counter()
    with loaded_folder(folder, OTHER, image_size) as (_, _, ds):
        labels = ds.pool.labels
        m = pilot_size(min(n, len(labels)))  # the training pool: the folder less its held-out split
        if m is None:
            raise AdvisorError(f"--pilot needs at least {RATIO * PILOT_SIZES[0]} training images (a pilot trains on "
                               "a quarter of them and scores on the rest); the folder's training pool (the held-out "
                               f"split aside) has {len(labels)}: drop --pilot")  # fmt: skip
        train_idx, val_idx = train_val_split(labels, m, seed, dataset=ds.name, groups=ds.pool.groups)
        rest = np.setdiff1d(np.arange(len(labels)), np.concatenate([train_idx, val_idx]))
        if ds.pool.groups is not None:  # a group (patient, object) in the pilot's training images never scores it
            rest = rest[~np.isin(ds.pool.groups[rest], ds.pool.groups[np.concatenate([train_idx, val_idx])])]
        scored = np.sort(np.random.default_rng([seed, 31]).permutation(rest)[:MAX_SCORED]).astype(np.int64)
        if scored.size == 0:
            raise AdvisorError("--pilot: no training image is left to score the pilot on; drop --pilot")
        engine = FeatureEngine(config.cache_dir(), config.weights_dirs())
        # the probes at m, on the pilot's own images (as the gain model was fitted: a cell's N images)
        rows = np.sort(np.concatenate([train_idx, val_idx]))
        as_probed = CellData(ds.name, ds.domain, list(ds.class_names), ds.source_checksum, image_size, ds.pool,
                             ds.test, rows, rows[:0], rows[:0])  # fmt: skip
        backbones = sorted(set(ranking["backbone"]) & set(gain.backbones_))  # those probed at n
        probes_m = []
        for backbone in backbones:
            groups = None if ds.pool.groups is None else ds.pool.groups[rows]
            probes_m.append({"backbone": backbone, **probe_images(engine, as_probed, backbone, rows, labels[rows],
                                                                  groups, seed)})  # fmt: skip
        predicted_m = gain.predict({**traits, "n_images": m}, pd.DataFrame(probes_m), shrink_n=n)
        # the pilot's "test" split is the scored part of the pool: its own fingerprint, so no cached row of the
        # folder's real test split can be confused with it
        view = CellData(ds.name, ds.domain, list(ds.class_names), f"{ds.source_checksum}+pilot", image_size,
                        ds.pool, ds.pool, train_idx, val_idx, scored)  # fmt: skip
        measured, skipped = [], []
        bar = tqdm(list(chosen[["strategy", "backbone"]].itertuples(index=False)), desc=f"pilot at {m} images",
                   unit="run", disable=not progress, file=sys.stderr)  # fmt: skip
        for strategy_name, backbone in bar:
            if time.perf_counter() - t0 > 60 * minutes:
                skipped.append((strategy_name, backbone))
                continue
            bar.set_postfix_str(f"{strategy_name}/{backbone}")
            strategy = get_strategy(strategy_name)
            spec = get_backbone(backbone) if strategy.uses_backbone else None
            start = time.perf_counter()
            result = strategy.run(view, spec, TrainConfig(epochs=epochs, seed=seed), engine)
            accuracy = float((np.argmax(result.test_proba, axis=1) == labels[scored]).mean())
            measured.append({"strategy": strategy_name, "backbone": backbone, "accuracy": accuracy,
                             "seconds": time.perf_counter() - start})  # fmt: skip
    if skipped and warn:
        warn(f"the pilot's {minutes:g} min ran out: {len(skipped)} candidate(s) not piloted "
             f"({', '.join(f'{s}/{b}' for s, b in skipped)}); they keep their prediction")  # fmt: skip
    pilot = pd.DataFrame(measured, columns=["strategy", "backbone", "accuracy", "seconds"])
    return {"size": m, "scored": int(scored.size), "seconds": time.perf_counter() - t0, "pilot": pilot,
            "ranking": update(chosen, predicted_m, pilot), "skipped": skipped}  # fmt: skip


# ------------------------------------------------------------------------------------------------- evaluation


def _halves(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Two fixed halves of a test set of ``size`` images (a seeded permutation: the same for every method)."""
    order = np.random.default_rng(0).permutation(size)
    first = np.zeros(size, dtype=bool)
    first[order[: size // 2]] = True
    return first, ~first


def half_accuracies(frame: pd.DataFrame) -> pd.DataFrame:
    """Seed-mean accuracy of every (cell, option) on each half of its test set (from the runs' ``correct``)."""
    rows = []
    for _, run in frame.iterrows():
        correct = run.get("correct")
        if correct is None or (np.ndim(correct) == 0 and pd.isna(correct)):
            continue
        vec = np.asarray(correct, dtype=float)
        if vec.size < 4:
            continue
        a, b = _halves(vec.size)
        rows.append({**{k: run[k] for k in KEYS}, "strategy": run["strategy"], "backbone": run["backbone"],
                     "n_test": vec.size, "acc_a": float(vec[a].mean()), "acc_b": float(vec[b].mean())})  # fmt: skip
    if not rows:
        raise AdvisorError("the runs carry no per-image test outcomes (metrics 'correct'); the pilot cannot be scored")
    table = pd.DataFrame(rows)
    return table.groupby([*KEYS, "strategy", "backbone"], as_index=False)[["n_test", "acc_a", "acc_b"]].mean()


def evaluate_pilot(runs: pd.DataFrame, similarity: pd.DataFrame | None, probes: pd.DataFrame, gain: Any,
                   k: int = DEFAULT_CANDIDATES) -> pd.DataFrame:  # fmt: skip
    """Leave-one-dataset-out regret of the probe advisor with and without a pilot, on half-split test sets.

    One row per (held-out cell, scoring half, method): cells whose dataset has a study cell at ``pilot_size(n)``
    (same image size) with probes. Methods: the probe advisor; the advisor after the pilot; the pilot alone
    (the best piloted accuracy at m, no shift); best probe; exhaustive selection (every option trained at the full
    n and the best picked on the other half: the floor a measurement-only choice reaches); every constant
    (``kind`` "constant") and the best of them in hindsight (``advisor.evaluate.with_hindsight``). ``pilot_seconds``:
    what the pilot's runs cost in the study (train + extract seconds at m, summed over the candidates).
    """
    from sklearn.base import clone

    from advisor.baselines import best_probe_pick, measured_fallback
    from advisor.evaluate import (
        ADVISOR_PROBES,
        BEST_PROBE,
        _cell_probes,
        _cell_traits,
        _folds,
        _probe_groups,
        held_out_frame,
        with_hindsight,
    )
    from advisor.model import Advisor

    frame = prepare(runs, similarity)
    halves = half_accuracies(frame)
    seconds = frame.assign(sec=frame["cost_minutes"] * 60).groupby([*KEYS, "strategy", "backbone"])["sec"].mean()
    groups = sorted(frame["group"].unique())
    options_all = sorted({(s, b) for s, b in zip(frame["strategy"], frame["backbone"], strict=True)})
    probe_groups = _probe_groups(probes)
    out: list[dict[str, Any]] = []
    for group, train, train_similarity, held_runs in _folds(runs, similarity, groups):
        held_probes = probes[probe_groups == group]
        held_keys = halves[halves["dataset"].isin(set(prepare(held_runs, similarity)["dataset"]))]
        cells = held_keys[KEYS].drop_duplicates()
        todo = []
        for dataset, n, size in cells.itertuples(index=False):
            sizes = cells[(cells["dataset"] == dataset) & (cells["image_size"] == size)]["n_images"]
            m = pilot_size(int(n), sorted(set(sizes)))  # a pilot at m is the dataset's own study cell at m
            if m is None:
                continue
            pn, pm = _cell_probes(held_probes, (dataset, n, size)), _cell_probes(held_probes, (dataset, m, size))
            if pn is not None and pm is not None:
                todo.append((dataset, int(n), int(size), m, pn, pm))
        if not todo:
            continue
        fitted = clone(gain).fit(train, train_similarity, probes[probe_groups != group])
        traits_source = Advisor(bandwidth=math.inf, n_estimators=1).fit(train, train_similarity)
        held = held_out_frame(held_runs, similarity, traits_source)
        for dataset, n, size, m, pn, pm in todo:
            cell = held[(held["dataset"] == dataset) & (held["n_images"] == n) & (held["image_size"] == size)]
            gap = cell["gap"].iloc[0] if cell["gap"].notna().any() else None
            record = {"n_images": n, "image_size": size, "gap": gap}
            traits = _cell_traits(traits_source, record, cell)
            pred_n = fitted.predict(traits, pn)
            pred_m = fitted.predict({**traits, "n_images": m}, pm, shrink_n=n)
            at_n = halves[(halves["dataset"] == dataset) & (halves["n_images"] == n) & (halves["image_size"] == size)]
            at_m = halves[(halves["dataset"] == dataset) & (halves["n_images"] == m) & (halves["image_size"] == size)]
            at_n, at_m = at_n.set_index(["strategy", "backbone"]), at_m.set_index(["strategy", "backbone"])
            both = [o for o in zip(pred_n["strategy"], pred_n["backbone"], strict=True)
                    if o in at_n.index and o in at_m.index]  # fmt: skip
            ranking = pred_n.set_index(["strategy", "backbone"]).loc[both].reset_index()
            chosen = candidates(ranking, k)
            options = [tuple(o) for o in chosen[["strategy", "backbone"]].itertuples(index=False)]
            advisor_pick = options[0] if options else None
            probe_pick = best_probe_pick(pn, list(at_n.index))
            cost = float(sum(seconds.get((dataset, m, size, s, b), math.nan) for s, b in options))
            for pilot_half, score_half in (("acc_a", "acc_b"), ("acc_b", "acc_a")):
                pilot = pd.DataFrame([{"strategy": s, "backbone": b, "accuracy": float(at_m.loc[(s, b), pilot_half])}
                                      for s, b in options])  # fmt: skip
                updated = update(chosen, pred_m, pilot)
                piloted = (str(updated.iloc[0]["strategy"]), str(updated.iloc[0]["backbone"]))
                alone = tuple(pilot.loc[pilot["accuracy"].idxmax(), ["strategy", "backbone"]])
                exhaustive = at_n[pilot_half].idxmax()
                scored = at_n[score_half]
                best = float(scored.max())
                picks = {ADVISOR_PROBES: advisor_pick, WITH_PILOT: piloted,
                         "pilot alone (best at m)": alone, BEST_PROBE: probe_pick,
                         "exhaustive (all options at n, other half)": exhaustive}  # fmt: skip
                constants = {f"constant {o[0]}/{o[1]}": measured_fallback(o, list(at_n.index)) for o in options_all}
                for method, pick in {**picks, **constants}.items():
                    acc = float(scored[pick]) if pick in scored.index else math.nan
                    out.append({"group": group, "dataset": dataset, "n_images": n, "image_size": size,
                                "pilot_size": m, "half": score_half[-1], "method": method,
                                "kind": "constant" if method in constants else "method",
                                "strategy": pick[0] if pick else None, "backbone": pick[1] if pick else None,
                                "accuracy": acc, "best_accuracy": best, "regret": best - acc,
                                "agrees": bool(pick == scored.idxmax()),
                                "candidates": len(options), "pilot_seconds": cost})  # fmt: skip
    if not out:
        raise AdvisorError("no held-out cell has a study cell at its pilot size with probes; nothing to score")
    return with_hindsight(pd.DataFrame(out))


def pilot_summary(rows: pd.DataFrame) -> pd.DataFrame:
    """Per method: cells, mean / median / max regret in points (both halves averaged per cell), top-1 agreement
    (the pick is the scoring half's best option), pilot cost. Of the constants only the best in hindsight
    (``advisor.evaluate.with_hindsight``, chosen in ``evaluate_pilot``) is kept."""
    kept = rows[rows["kind"] != "constant"]
    per_cell = kept.assign(agrees=kept["agrees"].astype(float)).groupby(["method", *KEYS], as_index=False).agg(
        regret=("regret", "mean"), agrees=("agrees", "mean"), seconds=("pilot_seconds", "first"))  # fmt: skip
    summary = per_cell.groupby("method").agg(cells=("regret", "count"), mean_regret=("regret", "mean"),
                                         median_regret=("regret", "median"), max_regret=("regret", "max"),
                                         top1_agreement=("agrees", "mean"),
                                         pilot_seconds_median=("seconds", "median"))  # fmt: skip
    for col in ("mean_regret", "median_regret", "max_regret"):
        summary[col] = 100 * summary[col]
    return summary.sort_values("mean_regret").reset_index()
