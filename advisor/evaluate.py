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

import pandas as pd

from advisor.data import AdvisorError, base_groups, prepare
from advisor.model import NO_BACKBONE, Advisor
from advisor.relative import gaps_with_scales, similarity_groups
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
    from sklearn.base import clone

    template = advisor if advisor is not None else Advisor()
    frame = prepare(runs, similarity)
    groups = sorted(frame["group"].unique())
    if len(groups) < 2:
        raise AdvisorError(
            f"leave-one-dataset-out needs results on at least 2 datasets; the table has usable (non-degenerate) "
            f"runs on {', '.join(groups)} only"
        )
    records: list[dict[str, Any]] = []
    for group, train, train_similarity, held_runs in _folds(runs, similarity, groups):
        fitted = clone(template).fit(train, train_similarity)
        held = held_out_frame(held_runs, similarity, fitted)
        for key, cell in held.groupby(["dataset", "n_images", "image_size"], sort=True):
            records.append(_score_cell(fitted, group, key, cell))
    table = pd.DataFrame.from_records(records, columns=COLUMNS)
    table = pd.concat([table, _summary(table)], ignore_index=True)
    table.attrs["regret_basis"] = dict(REGRET_BASIS)
    return table


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
