"""Leave-one-dataset-out: would following the advisor have cost accuracy, compared with the textbook rule?

For every base dataset (a shift-ladder level such as ``cats_and_dogs_filtered@grey`` belongs to its base, so the
advisor never sees any version of the held-out images), the advisor is fitted on the other datasets only and
then asked about each held-out cell (dataset, size, image size) with that cell's traits. Its pick is the best-ranked
option *that was measured in the cell* (otherwise its accuracy is unknown), and it is scored against the best
measured option:

- ``advisor_regret`` = best measured accuracy - measured accuracy of the advisor's (strategy, backbone);
- ``advisor_agrees`` = the advisor's strategy is the best measured strategy;
- ``advisor_strategy_regret`` = the same with the advisor's strategy on its best measured backbone (like for like
  with the textbook);
- the textbook 2×2 rule (``advisor.textbook``) is scored the same way on the same cells. It names no backbone, so
  it gets its strategy's best measured backbone: generous to the textbook, whose regret never includes a backbone
  choice, while the advisor's ``advisor_regret`` does.

Noise floor: the "best measured" option is the maximum of noisy seed means, so even an oracle that picks with the
held-out cell's other seeds loses accuracy against it; with 2 seeds and 500 test images that is a few points.

Accuracies are seed means of non-degenerate runs. The domain-gap unit (median natural-photo Fréchet distance) is
computed from every dataset's similarity scores, held-out ones included: a user measures that trait on their
own data, so it is not a leak of results.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from advisor.data import AdvisorError, base_groups, prepare
from advisor.model import Advisor
from advisor.textbook import textbook_rule

COLUMNS = ["group", "dataset", "domain", "n_images", "image_size", "gap", "n_options", "best_strategy",
           "best_backbone", "best_accuracy", "advisor_strategy", "advisor_backbone", "advisor_accuracy",
           "advisor_regret", "advisor_strategy_regret", "advisor_agrees", "textbook_strategy", "textbook_backbone",
           "textbook_accuracy", "textbook_regret", "textbook_agrees", "is_summary"]  # fmt: skip


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
    for group in groups:
        train = runs[base_groups(runs) != group]
        held = frame[frame["group"] == group]
        fitted = clone(template).fit(train, similarity)
        for key, cell in held.groupby(["dataset", "n_images", "image_size"], sort=True):
            records.append(_score_cell(fitted, group, key, cell))
    table = pd.DataFrame.from_records(records, columns=COLUMNS)
    return pd.concat([table, _summary(table)], ignore_index=True)


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
    return rec


def _best_backbone(strategy: str | None, measured: pd.Series) -> tuple[str | None, float]:
    """The strategy's best measured backbone in the cell and its accuracy (``measured`` is sorted, best first)."""
    for (s, b), acc in measured.items():
        if s == strategy:
            return b, float(acc)
    return None, float("nan")


def _known_label(advisor: Advisor, domain: str) -> bool:
    from study.datasets import known_domains

    return domain in known_domains() or domain in advisor.domains_


def _scored(who: str, pick: tuple[Any, Any], measured: pd.Series, best: float, best_strategy: str) -> dict[str, Any]:
    strategy, backbone = pick
    acc = float(measured.get((strategy, backbone), float("nan"))) if strategy is not None else float("nan")
    return {f"{who}_strategy": strategy, f"{who}_backbone": backbone, f"{who}_accuracy": acc,
            f"{who}_regret": best - acc, f"{who}_agrees": strategy == best_strategy}  # fmt: skip


def _summary(table: pd.DataFrame) -> pd.DataFrame:
    row: dict[str, Any] = dict.fromkeys(COLUMNS)
    row.update(group="(all)", dataset="(mean)", n_options=float(table["n_options"].mean()), is_summary=True)
    for col in (
        "best_accuracy",
        "advisor_accuracy",
        "advisor_regret",
        "advisor_strategy_regret",
        "textbook_accuracy",
        "textbook_regret",
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
            "target_met": bool(adv < tb and adv <= 1.0),
            "target_met_strategies": bool(strat < tb and strat <= 1.0)}  # fmt: skip


def _int_or_none(value: Any) -> int | None:
    return int(value) if pd.notna(value) else None


def _float_or_none(value: Any) -> float | None:
    return float(value) if pd.notna(value) else None
