"""Leave-one-dataset-out: would following the advisor have cost accuracy, compared with the textbook rule?

For every base dataset (a shift-ladder level such as ``cats_and_dogs_filtered@grey`` belongs to its base, so the
advisor never sees any version of the held-out images), the advisor is fitted on the other datasets only (their
runs *and* their similarity rows) and then asked about each held-out cell (dataset, size, image size) with that
cell's traits. Everything the advisor derives from data is refitted without the held-out dataset:

- the domain-gap unit (the median Fréchet distance of the natural-photo datasets) comes from the training datasets'
  similarity rows; the held-out dataset's gap is its own Fréchet distance in that unit, as a user's would be
  (``advisor recommend --data-dir`` measures it with the fitted advisor's ``gap_scales_``);
- trait defaults, the option effects, the forests and the kernel's bandwidth and shrinkage: ``Advisor.fit`` chooses
  the last two by its own inner leave-one-dataset-out over the training datasets, so the figure here is **nested**
  (``advisor_config`` says what each fold chose).

The advisor's pick is its best-ranked option *that was measured in the cell* (otherwise its accuracy is unknown),
scored against the best measured option (seed means of non-degenerate runs):

- ``advisor_regret`` = best measured accuracy - measured accuracy of the advisor's (strategy, backbone): **over all
  backbones**, i.e. the advisor also chooses the backbone;
- ``advisor_agrees`` = the advisor's strategy is the best measured strategy (top-1 agreement);
- ``advisor_strategy_regret`` = the same with the advisor's strategy on its best measured backbone (like for like
  with the textbook);
- the textbook 2×2 rule (``advisor.textbook``) is scored on the same cells with the same traits (the same held-out
  gap). It names no backbone, so it gets its strategy's best measured backbone: ``textbook_regret`` is **per
  strategy, best backbone**, generous to the textbook;
- ``*_fixed_backbone_regret``: **per backbone**, for a user whose backbone is fixed: in each of the cell's
  backbones, the best measured option on that backbone (or backbone-free) minus the pick's, averaged over backbones
  (the advisor ranks within the backbone, the textbook's strategy runs on it).

Noise floor: the "best measured" option is the maximum of noisy seed means, so even an oracle that knew every
option's true accuracy loses accuracy against it; with 2 seeds and 500 test images that is about half a point.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

from advisor.data import AdvisorError, base_groups, prepare
from advisor.model import NO_BACKBONE, Advisor
from advisor.relative import gaps_with_scales, similarity_groups
from advisor.rules import ProbeRules
from advisor.textbook import textbook_rule

COLUMNS = ["group", "dataset", "domain", "n_images", "image_size", "gap", "n_options", "best_strategy",
           "best_backbone", "best_accuracy", "advisor_strategy", "advisor_backbone", "advisor_accuracy",
           "advisor_regret", "advisor_strategy_regret", "advisor_agrees", "textbook_strategy", "textbook_backbone",
           "textbook_accuracy", "textbook_regret", "textbook_agrees", "advisor_fixed_backbone_regret",
           "textbook_fixed_backbone_regret", "advisor_config", "is_summary"]  # fmt: skip

REGRET_BASIS = {
    "advisor_regret": "over all backbones: the advisor's (strategy, backbone) against the cell's best option",
    "advisor_strategy_regret": "per strategy: the advisor's strategy on its best measured backbone",
    "textbook_regret": "per strategy: the textbook's strategy on its best measured backbone",
    "advisor_fixed_backbone_regret": "per backbone: the advisor's pick on each backbone against that backbone's "
                                     "best, averaged over the cell's backbones",
    "textbook_fixed_backbone_regret": "per backbone: the textbook's strategy on each backbone against that "
                                      "backbone's best, averaged over the cell's backbones",
}  # fmt: skip
"""What each regret column compares (regret = best measured seed-mean accuracy of the cell minus the pick's)."""


def leave_one_dataset_out(
    runs: pd.DataFrame, similarity: pd.DataFrame | None = None, advisor: Advisor | None = None
) -> pd.DataFrame:
    """One row per held-out (dataset, n_images, image_size), then a summary row of means (``is_summary``)."""
    return evaluate_methods(runs, similarity, advisor)[0]


def evaluate_methods(
    runs: pd.DataFrame,
    similarity: pd.DataFrame | None = None,
    advisor: Advisor | None = None,
    probes: pd.DataFrame | None = None,
    gain: Any = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The per-cell table of ``leave_one_dataset_out`` and the long table of every method's pick per cell.

    ``picks`` has one row per (held-out cell, method) with ``strategy``, ``backbone``, ``accuracy``, ``regret``,
    ``agrees`` (the pick is the cell's best option), ``strategy_agrees``, the interval ``low``/``high`` where the
    method states one, ``covered`` (the pick's measured accuracy inside it) and ``options_covered`` (share of the
    cell's measured options inside their intervals). Methods: ``METHODS`` (``advisor.baselines``); with
    ``probes`` (``advisor.cell_probes``: one row per dataset, n, seed, backbone) the probe baselines, and with
    ``gain`` (an unfitted ``advisor.gain.GainModel``) the probe-based advisor, refitted per fold without the
    held-out dataset's runs, similarity rows and probes.
    """
    template = advisor if advisor is not None else Advisor()
    frame = prepare(runs, similarity)
    groups = sorted(frame["group"].unique())
    if len(groups) < 2:
        raise AdvisorError(
            f"leave-one-dataset-out needs results on at least 2 datasets; the table has usable (non-degenerate) "
            f"runs on {', '.join(groups)} only"
        )
    options = sorted({(s, b) for s, b in zip(frame["strategy"], frame["backbone"], strict=True)})
    probe_groups = None if probes is None or probes.empty else _probe_groups(probes)
    jobs = []
    for group, train, train_similarity, held_runs in _folds(runs, similarity, groups):
        train_probes = held_probes = None
        if probe_groups is not None:
            train_probes, held_probes = probes[probe_groups != group], probes[probe_groups == group]
        jobs.append((template, gain, group, train, train_similarity, held_runs, similarity, train_probes,
                     held_probes, options))  # fmt: skip
    records: list[dict[str, Any]] = []
    picks: list[dict[str, Any]] = []
    gain_configs: list[str] = []  # what the nested selection chose in each fold
    for fold_records, fold_picks, gain_config in _run_folds(jobs, len(runs)):
        records += fold_records
        picks += fold_picks
        gain_configs += gain_config
    table = pd.DataFrame.from_records(records, columns=COLUMNS)
    table = pd.concat([table, _summary(table)], ignore_index=True)
    table.attrs["regret_basis"] = dict(REGRET_BASIS)
    long = with_hindsight(pd.DataFrame.from_records(picks, columns=PICK_COLUMNS))
    long.attrs["gain_configs"] = dict(pd.Series(gain_configs, dtype=object).value_counts()) if gain_configs else {}
    return table, long


PARALLEL_MIN_RUNS = 1000
"""Folds run in parallel processes (one per core) only from this many runs on: each process must start and import
pandas and scikit-learn, which the folds of a small table (the tests' constructed results) do not repay; on the
broad reference (2301 runs, 26 folds, each refitting the gain model with its nested selection) they do: a cold
``advisor rules`` took 336 s serially and 175 s on 2 cores, the same output (2026-12-02)."""


def _run_folds(jobs: list[tuple[Any, ...]], n_runs: int) -> list[tuple[list[dict[str, Any]], list[dict[str, Any]],
                                                                        list[str]]]:  # fmt: skip
    """``_fold`` of every job, in order; in parallel processes when the table is large (``PARALLEL_MIN_RUNS``).
    Each fold's result depends on its own inputs only, so the output is the same either way."""
    from study.config import cpu_count  # the CPUs this process may use (affinity), as the sweep counts them

    n_jobs = min(len(jobs), cpu_count()) if n_runs >= PARALLEL_MIN_RUNS else 1
    if n_jobs <= 1:
        return [_fold(*job) for job in jobs]
    from joblib import Parallel, delayed

    return Parallel(n_jobs=n_jobs)(delayed(_fold)(*job) for job in jobs)


def _fold(template: Advisor, gain: Any, group: str, train: pd.DataFrame, train_similarity: pd.DataFrame | None,
          held_runs: pd.DataFrame, similarity: pd.DataFrame | None, train_probes: pd.DataFrame | None,
          held_probes: pd.DataFrame | None, options: list[tuple[str, str]]
          ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[str]]:  # fmt: skip
    """One held-out dataset: (its cells' records, every method's picks on them, the gain model's chosen form)."""
    from sklearn.base import clone

    fitted = clone(template).fit(train, train_similarity)
    held = held_out_frame(held_runs, similarity, fitted)
    fitted_gain = rules = None
    gain_config = []
    if gain is not None and train_probes is not None:
        fitted_gain = clone(gain).fit(train, train_similarity, train_probes)
        rules = ProbeRules().fit(fitted_gain)
        gain_config.append(f"{fitted_gain.variant_}/alpha {fitted_gain.alpha_:g}")
    records: list[dict[str, Any]] = []
    picks: list[dict[str, Any]] = []
    for key, cell in held.groupby(["dataset", "n_images", "image_size"], sort=True):
        record = _score_cell(fitted, group, key, cell)
        cell_probes = None if held_probes is None else _cell_probes(held_probes, key)
        picks += _method_picks(fitted, fitted_gain, record, cell, options, cell_probes, rules)
        records.append(record)
    return records, picks, gain_config


PICK_COLUMNS = ["group", "dataset", "n_images", "image_size", "method", "kind", "strategy", "backbone", "accuracy",
                "best_accuracy", "regret", "agrees", "strategy_agrees", "low", "high", "covered",
                "options_covered", "extrapolated"]  # fmt: skip
ADVISOR, ADVISOR_PROBES, TEXTBOOK, BEST_PROBE, LOGME_FT = (
    "advisor (traits)", "advisor (probes + gains)", "textbook 2x2", "best probe", "LogME pick + full fine-tune")
RULES = "rules (distilled from the probe advisor)"
HINDSIGHT = "best constant (hindsight)"
"""Not a method: the constant with the lowest mean regret on the evaluated cells themselves."""


def _probe_groups(probes: pd.DataFrame) -> pd.Series:
    return base_groups(probes.assign(dataset=probes["dataset"].astype(str)))


def _cell_probes(probes: pd.DataFrame, key: tuple[Any, ...]) -> pd.DataFrame | None:
    """One row per backbone: the probe scores of the cell's N training images, averaged over its seeds."""
    dataset, n_images, image_size = key
    rows = probes[(probes["dataset"] == dataset) & (probes["n_images"] == n_images)
                  & (probes["image_size"] == image_size)]  # fmt: skip
    if rows.empty:
        return None
    cols = [c for c in ("linear_probe_accuracy", "linear_probe_std", "knn_accuracy", "logme") if c in rows]
    return rows.groupby("backbone", as_index=False)[cols].mean()


def _method_picks(advisor: Advisor, gain: Any, record: dict[str, Any], cell: pd.DataFrame,
                  options: list[tuple[str, str]], probes: pd.DataFrame | None,
                  rules: ProbeRules | None = None) -> list[dict[str, Any]]:  # fmt: skip
    """Every method's pick in one held-out cell, scored against the cell's best measured option."""
    from advisor.baselines import best_probe_pick, logme_pick, measured_fallback

    measured = cell.groupby(["strategy", "backbone"])["accuracy"].mean()
    pool = list(measured.index)
    best = float(measured.max())
    best_option = measured.idxmax()
    base = {"group": record["group"], "dataset": record["dataset"], "n_images": record["n_images"],
            "image_size": record["image_size"], "best_accuracy": best}  # fmt: skip

    def row(method: str, kind: str, pick: tuple[str, str] | None, low: float = math.nan, high: float = math.nan,
            options_covered: float = math.nan, extrapolated: Any = None) -> dict[str, Any]:  # fmt: skip
        if pick is None:
            return {**base, "method": method, "kind": kind, "strategy": None, "backbone": None,
                    "accuracy": math.nan, "regret": math.nan, "agrees": None, "strategy_agrees": None, "low": low,
                    "high": high, "covered": None, "options_covered": options_covered,
                    "extrapolated": extrapolated}  # fmt: skip
        acc = float(measured[pick])
        covered = bool(low <= acc <= high) if not (math.isnan(low) or math.isnan(high)) else None
        return {**base, "method": method, "kind": kind, "strategy": pick[0], "backbone": pick[1], "accuracy": acc,
                "regret": best - acc, "agrees": pick == best_option, "strategy_agrees": pick[0] == best_option[0],
                "low": low, "high": high, "covered": covered, "options_covered": options_covered,
                "extrapolated": extrapolated}  # fmt: skip

    out = []
    table = record.pop("_predicted").set_index(["strategy", "backbone"])
    ranked = [o for o in table.index if o in measured.index]
    pick = ranked[0] if ranked else None
    inside = [float(table.loc[o, "low"]) <= float(measured[o]) <= float(table.loc[o, "high"]) for o in ranked]
    lo, hi = (float(table.loc[pick, "low"]), float(table.loc[pick, "high"])) if pick else (math.nan, math.nan)
    out.append(row(ADVISOR, "advisor", pick, lo, hi, float(np.mean(inside)) if inside else math.nan))
    tb = (record["textbook_strategy"], record["textbook_backbone"])
    out.append(row(TEXTBOOK, "rule", tb if tb in measured.index else None))
    for option in options:
        out.append(row(f"constant {option[0]}/{option[1]}", "constant", measured_fallback(option, pool)))
    if probes is not None:
        out.append(row(BEST_PROBE, "probe", best_probe_pick(probes, pool)))
        out.append(row(LOGME_FT, "probe", logme_pick(probes, pool)))
        if gain is not None:
            predicted = gain.predict(_cell_traits(advisor, record, cell), probes).set_index(["strategy", "backbone"])
            ranked = [o for o in predicted.index if o in measured.index]
            pick = ranked[0] if ranked else None
            inside = [float(predicted.loc[o, "low"]) <= float(measured[o]) <= float(predicted.loc[o, "high"])
                      for o in ranked]  # fmt: skip
            lo, hi = ((float(predicted.loc[pick, "low"]), float(predicted.loc[pick, "high"])) if pick
                      else (math.nan, math.nan))  # fmt: skip
            extrapolated = bool(predicted.loc[pick, "extrapolated"]) if pick else None
            out.append(row(ADVISOR_PROBES, "advisor", pick, lo, hi, float(np.mean(inside)) if inside else math.nan,
                           extrapolated))  # fmt: skip
        if rules is not None:
            traits = _cell_traits(advisor, record, cell)
            strategy = rules.strategy(traits["n_images"], float(probes["linear_probe_accuracy"].max()),
                                      traits["n_classes"], traits["gap"], gain.defaults_)  # fmt: skip
            out.append(row(RULES, "advisor", rules.pick(strategy, probes, pool)))
    return out


def _cell_traits(advisor: Advisor, record: dict[str, Any], cell: pd.DataFrame) -> dict[str, Any]:
    first = cell.iloc[0]
    domain = str(first["domain"])
    if domain not in advisor.domains_ and not _known_label(advisor, domain):
        domain = "other"
    return {"n_images": int(record["n_images"]), "domain": domain, "image_size": int(record["image_size"]),
            "gap": record["gap"], "n_classes": _int_or_none(first["n_classes"]),
            "imbalance": _float_or_none(first["imbalance"])}  # fmt: skip


def with_hindsight(picks: pd.DataFrame) -> pd.DataFrame:
    """``picks`` plus the best constant in hindsight: the constant whose mean regret over these cells is lowest.

    Only constants with a pick in every evaluated cell compete (one that falls back to nothing is not a constant).
    """
    constants = picks[picks["kind"] == "constant"]
    if constants.empty:
        return picks
    complete = constants.groupby("method")["regret"].apply(lambda r: r.notna().all())
    means = constants.groupby("method")["regret"].mean()[complete[complete].index]
    if means.empty:
        return picks
    winner = str(means.sort_values(kind="stable").index[0])
    best = constants[constants["method"] == winner].assign(method=f"{HINDSIGHT}: {winner.removeprefix('constant ')}",
                                                           kind="hindsight")  # fmt: skip
    return pd.concat([picks, best], ignore_index=True)


def noise_floor(runs: pd.DataFrame, similarity: pd.DataFrame | None = None) -> dict[str, float]:
    """How much regret the measurement noise alone causes: in every cell with two seeds, the option that won on one
    seed, scored on the other seed against that seed's best (both ways, averaged).

    An oracle that knew one seed's outcome exactly still pays this, in accuracy points: it is what "best measured"
    owes to noise among many close options (the winner's curse), the floor no advisor can go under on single-seed
    scoring (on two-seed means the noise is about 1/sqrt(2) of it).
    """
    frame = prepare(runs, similarity)
    regrets = []
    for _, cell in frame.groupby(["dataset", "n_images", "image_size"]):
        wide = cell.pivot_table(index=["strategy", "backbone"], columns="seed", values="accuracy").dropna()
        if wide.shape[1] < 2 or len(wide) < 2:
            continue
        a, b = wide.iloc[:, 0], wide.iloc[:, 1]
        regrets.append((float(b.max() - b[a.idxmax()]) + float(a.max() - a[b.idxmax()])) / 2)
    return {"cells": len(regrets), "regret_points": 100 * float(np.mean(regrets)) if regrets else math.nan}


def method_summary(picks: pd.DataFrame) -> pd.DataFrame:
    """Per method: cells scored, regret in accuracy points (mean, median, max), top-1 agreement (option and
    strategy) and interval coverage (of the pick, and of every measured option in the cell), best first."""
    rows = []
    for method, g in picks.groupby("method", sort=False):
        scored = g.dropna(subset=["regret"])
        covered = scored["covered"].dropna()
        rows.append({"method": method, "kind": g["kind"].iloc[0], "cells": int(len(scored)),
                     "cells_without_pick": int(len(g) - len(scored)),
                     "mean_regret": 100 * float(scored["regret"].mean()) if len(scored) else math.nan,
                     "median_regret": 100 * float(scored["regret"].median()) if len(scored) else math.nan,
                     "max_regret": 100 * float(scored["regret"].max()) if len(scored) else math.nan,
                     "top1_agreement": float(scored["agrees"].astype(float).mean()) if len(scored) else math.nan,
                     "strategy_agreement": (float(scored["strategy_agrees"].astype(float).mean()) if len(scored)
                                            else math.nan),
                     "pick_coverage": float(covered.astype(float).mean()) if len(covered) else math.nan,
                     "option_coverage": float(g["options_covered"].mean()) if g["options_covered"].notna().any()
                     else math.nan})  # fmt: skip
    order = {"advisor": 0, "rule": 1, "probe": 2, "hindsight": 3, "constant": 4}
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    out["_k"] = out["kind"].map(order)
    return out.sort_values(["_k", "mean_regret", "method"]).drop(columns="_k").reset_index(drop=True)


def paired_difference(picks: pd.DataFrame, method: str, baseline: str, n_boot: int = 2000,
                      seed: int = 0) -> dict[str, Any] | None:  # fmt: skip
    """Mean regret of ``method`` minus ``baseline`` on the cells both scored, in points, with a 95 % interval from a
    bootstrap that resamples held-out *datasets* (the unit leave-one-dataset-out generalises over; a dataset's cells
    are not independent). None when they share no cell. ``baseline`` may be a prefix (the hindsight constant's name
    carries its option)."""
    keys = ["group", "dataset", "n_images", "image_size"]
    names = [m for m in picks["method"].unique() if m == baseline or str(m).startswith(baseline)]
    if method not in set(picks["method"]) or not names:
        return None
    a = picks[picks["method"] == method].dropna(subset=["regret"]).groupby(keys)["regret"].mean()
    b = picks[picks["method"] == names[0]].dropna(subset=["regret"]).groupby(keys)["regret"].mean()
    diff = (a - b).dropna()
    if diff.empty:
        return None
    by_group = diff.groupby(level="group")
    sums, counts = by_group.sum().to_numpy(), by_group.size().to_numpy()
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(sums), size=(n_boot, len(sums)))
    boot = sums[draws].sum(axis=1) / counts[draws].sum(axis=1)
    low, high = np.quantile(boot, [0.025, 0.975])
    return {"method": method, "baseline": names[0], "cells": int(len(diff)), "datasets": int(len(sums)),
            "difference": 100 * float(diff.mean()), "low": 100 * float(low), "high": 100 * float(high)}  # fmt: skip


def _folds(runs: pd.DataFrame, similarity: pd.DataFrame | None, groups: list[str]
           ) -> Iterator[tuple[str, pd.DataFrame, pd.DataFrame | None, pd.DataFrame]]:  # fmt: skip
    """Per held-out base dataset: (group, training runs, training similarity rows, held-out runs).

    Nothing of the held-out dataset (or of its shift-ladder levels) is in the training runs or similarity rows.
    """
    run_groups = base_groups(runs)
    for group in groups:
        train_similarity = similarity
        if similarity is not None and not similarity.empty and "dataset" in similarity.columns:
            train_similarity = similarity[similarity_groups(similarity) != group]
        yield group, runs[run_groups != group], train_similarity, runs[run_groups == group]


def held_out_frame(held_runs: pd.DataFrame, similarity: pd.DataFrame | None, advisor: Advisor) -> pd.DataFrame:
    """The held-out runs prepared for scoring, their domain gap in the units of the advisor's training datasets.

    Exactly what a user gets: the dataset's own Fréchet distances divided by the fitted advisor's ``gap_scales_``.
    """
    held = prepare(held_runs, similarity).drop(columns=["gap"])
    gaps = gaps_with_scales(similarity, advisor.gap_scales_)
    if gaps.empty:
        return held.assign(gap=float("nan"))
    return held.merge(gaps, on=["dataset", "image_size"], how="left")


def _score_cell(advisor: Advisor, group: str, key: tuple[Any, ...], cell: pd.DataFrame) -> dict[str, Any]:
    dataset, n_images, image_size = key
    measured = cell.groupby(["strategy", "backbone"])["accuracy"].mean().sort_values(ascending=False)
    (best_s, best_b), best = measured.index[0], float(measured.iloc[0])
    first = cell.iloc[0]
    gap = float(first["gap"]) if pd.notna(first["gap"]) else None
    traits = {"n_images": int(n_images), "domain": str(first["domain"]), "image_size": int(image_size), "gap": gap,
              "n_classes": _int_or_none(first["n_classes"]),
              "imbalance": _float_or_none(first["imbalance"])}  # fmt: skip
    if traits["domain"] not in advisor.domains_:
        traits["domain"] = traits["domain"] if _known_label(advisor, traits["domain"]) else "other"
    table = advisor.predict_table(traits)
    options = set(measured.index)
    ranked = [(s, b) for s, b in zip(table["strategy"], table["backbone"], strict=True) if (s, b) in options]
    rec: dict[str, Any] = {"group": group, "dataset": dataset, "domain": first["domain"], "n_images": int(n_images),
                           "image_size": int(image_size), "gap": gap, "n_options": len(measured),
                           "best_strategy": best_s, "best_backbone": best_b, "best_accuracy": best,
                           "is_summary": False}  # fmt: skip
    pick = ranked[0] if ranked else (None, None)
    rec.update(_scored("advisor", pick, measured, best, best_s))
    rec["advisor_strategy_regret"] = best - float(_best_backbone(pick[0], measured)[1])
    tb = textbook_rule(int(n_images), str(first["domain"]), gap, available={s for s, _ in measured.index})
    rec.update(_scored("textbook", (tb, _best_backbone(tb, measured)[0]), measured, best, best_s))
    rec.update(_fixed_backbone(ranked, measured, int(n_images), str(first["domain"]), gap))
    rec["advisor_config"] = advisor_config(advisor)
    rec["_predicted"] = table  # reused by _method_picks (not a column of the table)
    return rec


def advisor_config(advisor: Advisor) -> str:
    """What a fitted advisor ranks with, in words: the global ranking or a kernel (and how it was chosen)."""
    rule = advisor.selection_["rule"]
    if math.isinf(advisor.bandwidth_):
        return f"global ranking ({rule})"
    return f"kernel bandwidth {advisor.bandwidth_:g} ({rule}), shrinkage {advisor.shrinkage_:.2g}"


def _fixed_backbone(ranked: list[tuple[str, str]], measured: pd.Series, n_images: int, domain: str,
                    gap: float | None) -> dict[str, float]:  # fmt: skip
    """Mean over the cell's backbones of the regret within that backbone (its options plus backbone-free ones)."""
    backbones = sorted({b for _, b in measured.index if b != NO_BACKBONE}) or [NO_BACKBONE]
    adv, tb = [], []
    for backbone in backbones:
        allowed = measured[[b in (backbone, NO_BACKBONE) for _, b in measured.index]]
        best = float(allowed.max())
        pick = next((o for o in ranked if o in allowed.index), None)
        adv.append(best - float(allowed[pick]) if pick is not None else float("nan"))
        strategy = textbook_rule(n_images, domain, gap, available={s for s, _ in allowed.index})
        own = [acc for (s, _), acc in allowed.items() if s == strategy]
        tb.append(best - float(max(own)) if own else float("nan"))
    return {"advisor_fixed_backbone_regret": float(pd.Series(adv).mean()),
            "textbook_fixed_backbone_regret": float(pd.Series(tb).mean())}  # fmt: skip


def _best_backbone(strategy: str | None, measured: pd.Series) -> tuple[str | None, float]:
    """The strategy's best measured backbone in the cell and its accuracy (``measured`` is sorted, best first)."""
    for (s, b), acc in measured.items():
        if s == strategy:
            return b, float(acc)
    return None, float("nan")


def _known_label(advisor: Advisor, domain: str) -> bool:
    from study.data.datasets import known_domains

    return domain in known_domains() or domain in advisor.domains_


def _scored(who: str, pick: tuple[Any, Any], measured: pd.Series, best: float, best_strategy: str) -> dict[str, Any]:
    strategy, backbone = pick
    acc = float(measured.get((strategy, backbone), float("nan"))) if strategy is not None else float("nan")
    return {f"{who}_strategy": strategy, f"{who}_backbone": backbone, f"{who}_accuracy": acc,
            f"{who}_regret": best - acc, f"{who}_agrees": strategy == best_strategy}  # fmt: skip


def _summary(table: pd.DataFrame) -> pd.DataFrame:
    row: dict[str, Any] = dict.fromkeys(COLUMNS)
    row.update(group="(all)", dataset="(mean)", n_options=float(table["n_options"].mean()), is_summary=True)
    configs = table.drop_duplicates("group")["advisor_config"].str.split(", shrinkage").str[0].value_counts()
    row["advisor_config"] = "; ".join(f"{config} in {n} of {configs.sum()} folds" for config, n in configs.items())
    for col in (
        "best_accuracy",
        "advisor_accuracy",
        "advisor_regret",
        "advisor_strategy_regret",
        "textbook_accuracy",
        "textbook_regret",
        "advisor_fixed_backbone_regret",
        "textbook_fixed_backbone_regret",
    ):
        row[col] = float(table[col].mean())
    for col in ("advisor_agrees", "textbook_agrees"):
        row[col] = float(table[col].astype(float).mean())
    return pd.DataFrame([row], columns=COLUMNS)


def summary(table: pd.DataFrame) -> dict[str, Any]:
    """The headline numbers of a ``leave_one_dataset_out`` table (regret in accuracy points).

    ``target_met``: the advisor's mean regret (its backbone choice included) is below the textbook's and at most
    1 point; ``target_met_strategies``: the same like for like, each strategy on its best measured backbone.
    """
    cells = table[~table["is_summary"].astype(bool)]
    adv, tb = float(cells["advisor_regret"].mean()) * 100, float(cells["textbook_regret"].mean()) * 100
    strat = float(cells["advisor_strategy_regret"].mean()) * 100
    return {"cells": int(len(cells)), "datasets": int(cells["group"].nunique()),
            "advisor_regret_points": adv, "advisor_agreement": float(cells["advisor_agrees"].mean()),
            "advisor_strategy_regret_points": strat,
            "textbook_regret_points": tb, "textbook_agreement": float(cells["textbook_agrees"].mean()),
            "advisor_max_regret_points": float(cells["advisor_regret"].max()) * 100,
            "advisor_fixed_backbone_regret_points": float(cells["advisor_fixed_backbone_regret"].mean()) * 100,
            "textbook_fixed_backbone_regret_points": float(cells["textbook_fixed_backbone_regret"].mean()) * 100,
            "regret_by_dataset_points": (cells.groupby("group")["advisor_regret"].sum() * 100).round(2).to_dict(),
            "nested": True, "advisor_configs": sorted(set(cells["advisor_config"].dropna())),
            "regret_basis": dict(REGRET_BASIS),
            "target_met": bool(adv < tb and adv <= 1.0),
            "target_met_strategies": bool(strat < tb and strat <= 1.0)}  # fmt: skip


def _int_or_none(value: Any) -> int | None:
    return int(value) if pd.notna(value) else None


def _float_or_none(value: Any) -> float | None:
    return float(value) if pd.notna(value) else None


def same_cells(picks: pd.DataFrame) -> pd.DataFrame:
    """``picks`` on the cells every probe-based method could score (the cells whose probes exist), hindsight
    constant re-chosen on them: the like-for-like comparison when only some cells carry probes."""
    probed = picks[picks["kind"].isin(["probe"]) | (picks["method"] == ADVISOR_PROBES)].dropna(subset=["regret"])
    if probed.empty:
        return picks
    keys = ["dataset", "n_images", "image_size"]
    cells = probed[keys].drop_duplicates()
    kept = picks[picks["kind"] != "hindsight"].merge(cells, on=keys, how="inner")
    return with_hindsight(kept)
