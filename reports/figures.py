"""The report's figures: one function per figure, long-form frames in, ``Figure(data_uri, alt)`` out.

Why this shape (seaborn's own practice): one figure-level call maps columns to roles; the theme is applied in a
context manager so global matplotlib state is untouched when the report runs at the end of ``study.run``; the
PNG goes to an in-memory buffer and is embedded as a data URI, so the report needs no files and no network.
A figure with nothing to draw raises ``NoData`` whose message the report shows in its place.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.colors import ListedColormap
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator, NullFormatter, NullLocator, ScalarFormatter

from reports.data import curve_frame, has_curves
from study.data.datasets import known_domains
from study.engine.store import NO_BACKBONE
from study.train.strategies import strategy_or_none, strategy_records

DPI = 100
COST_MEASURES = {
    "train_seconds": "training time (s)",
    "trainable_params": "trainable parameters",
    "model_mb": "model size (MB)",
    "latency_ms": "CPU latency (ms / image)",
}
NEGATIVE = "#c62828"


class Figure(NamedTuple):
    """A rendered figure: a ``data:image/png;base64,...`` URI and the alt text that describes it."""

    data_uri: str
    alt: str


class NoData(ValueError):
    """Nothing to draw; the message says why and is shown in the report instead of the figure."""


@contextmanager
def theme() -> Iterator[None]:
    """The report's look, restored on exit so callers' matplotlib settings are never changed."""
    with mpl.rc_context(), sns.axes_style("whitegrid"), sns.plotting_context("notebook", font_scale=0.85):
        mpl.rcParams.update({"figure.dpi": DPI, "savefig.dpi": DPI, "axes.titlesize": 10})
        yield


def encode(fig: mpl.figure.Figure) -> str:
    """PNG bytes of a figure as a data URI; the figure is closed so nothing leaks across figures."""
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight", metadata={"Software": None})
    finally:
        plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def strategy_order() -> tuple[str, ...]:
    """Strategies in the records' display order (from-scratch baselines first, then least to most fine-tuned)."""
    return tuple(r.name for r in strategy_records())


def abbreviation(strategy: str) -> str:
    record = strategy_or_none(strategy)
    return (record.abbreviation if record is not None else "") or strategy


def strategy_palette(strategies: Sequence[str]) -> dict[str, Any]:
    """One fixed colour per strategy (its record's), the same in every figure; others get further colours.

    The records' colours are colour-blind-safe (Okabe-Ito), with the from-scratch baselines in greys.
    """
    fixed = {r.name: r.colour for r in strategy_records() if r.colour}
    extra = sorted(set(strategies) - set(fixed))
    more = sns.color_palette("colorblind", 10)[-len(extra) :] if extra else []
    return {**fixed, **{name: more[i % len(more)] for i, name in enumerate(extra)}}


def _present(order: Sequence[str], values: pd.Series) -> list[str]:
    seen = set(values.astype(str))
    extra = sorted(seen - set(order))
    return [o for o in order if o in seen] + extra


def _log_sizes(axes: Any, sizes: Sequence[int]) -> None:
    """Log x axis with ticks at the measured sizes only (readable, and honest about where data is)."""
    for ax in np.ravel(axes):
        ax.set_xscale("log")
        ax.set_xticks(list(sizes))
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_locator(NullLocator())
        if len(sizes) == 1:
            ax.set_xlim(sizes[0] / 1.6, sizes[0] * 1.6)


def _finish_dataset_facets(
    g: Any, sizes: Sequence[int], order: Sequence[str], titles: Mapping[str, str] | None, ylabel: str, ncol: int,
    xlabel: str = "training images N (log scale)",
) -> str:
    """The per-dataset line charts' common finish: log N axis, dataset titles, labels, legend on top; encoded."""
    _log_sizes(g.axes, sizes)
    for ax, name in zip(g.axes.flat, order, strict=False):
        ax.set_title((titles or {}).get(name, name))
    g.set_axis_labels(xlabel, ylabel)
    sns.move_legend(g, "lower center", bbox_to_anchor=(0.5, 1.0), ncol=ncol, frameon=False, title=None)
    return encode(g.figure)


def _wrap(n: int, most: int = 4) -> int:
    return max(1, min(most, n))


def with_shared_baselines(frame: pd.DataFrame, backbone: str) -> pd.DataFrame:
    """Rows of one backbone plus the backbone-independent rows (e.g. scratch_small) of the datasets it ran on."""
    mine = frame[frame["backbone"] == backbone]
    shared = frame[frame["backbone"] == NO_BACKBONE] if backbone != NO_BACKBONE else frame.iloc[0:0]
    shared = shared[shared["dataset"].isin(set(mine["dataset"]))]
    return pd.concat([mine, shared], ignore_index=True)


# ----------------------------------------------------------------------------------------------------------
# 2. Accuracy vs training-set size
# ----------------------------------------------------------------------------------------------------------


def _band(data: pd.DataFrame, palette: Mapping[str, Any], **_: Any) -> None:
    ax = plt.gca()
    for strategy, rows in data.groupby("strategy"):
        rows = rows.dropna(subset=["accuracy_ci_low", "accuracy_ci_high"]).sort_values("n_images")
        if rows.empty:
            continue
        x = rows["n_images"].to_numpy(float)
        low, high = rows["accuracy_ci_low"].to_numpy(float), rows["accuracy_ci_high"].to_numpy(float)
        if len(x) == 1:  # one size: an interval bar instead of an invisible band
            ax.errorbar(x, rows["accuracy_mean"], yerr=[rows["accuracy_mean"] - low, high - rows["accuracy_mean"]],
                        fmt="none", ecolor=palette[strategy], capsize=3, alpha=0.8)  # fmt: skip
        else:
            ax.fill_between(x, low, high, color=palette[strategy], alpha=0.18, linewidth=0)


def accuracy_vs_size(
    summary: pd.DataFrame, dataset_order: Sequence[str], backbone: str, titles: Mapping[str, str] | None = None
) -> Figure:
    """Mean test accuracy against N (log x), a line per strategy with 95 % bands, a panel per dataset."""
    frame = with_shared_baselines(summary, backbone).dropna(subset=["accuracy_mean"])
    if frame.empty:
        raise NoData(f"no non-degenerate result for backbone {backbone}")
    order = [d for d in dataset_order if d in set(frame["dataset"])] + sorted(
        set(frame["dataset"]) - set(dataset_order)
    )
    hue_order = _present(strategy_order(), frame["strategy"])
    palette = strategy_palette(hue_order)
    sizes = sorted(int(n) for n in frame["n_images"].unique())
    multi_px = frame["image_size"].nunique() > 1
    with theme():
        g = sns.relplot(
            data=frame, x="n_images", y="accuracy_mean", hue="strategy", hue_order=hue_order, palette=palette,
            style="image_size" if multi_px else None, col="dataset", col_order=order, col_wrap=_wrap(len(order)),
            kind="line", marker="o", markersize=5, errorbar=None, height=2.5, aspect=1.2,
            facet_kws={"sharey": False, "sharex": True},
        )  # fmt: skip
        g.map_dataframe(_band, palette=palette)
        uri = _finish_dataset_facets(g, sizes, order, titles, "test accuracy", ncol=min(6, len(hue_order)))
    top = frame.loc[frame.groupby("dataset")["n_images"].transform("max") == frame["n_images"]]
    best = top.loc[top.groupby("dataset")["accuracy_mean"].idxmax()].set_index("dataset")
    leaders = "; ".join(
        f"{d}: {best.loc[d, 'strategy']} {best.loc[d, 'accuracy_mean']:.3f} at N={int(best.loc[d, 'n_images'])}"
        for d in order[:8]
        if d in best.index
    )
    alt = (
        f"Line charts for backbone {backbone}: mean test accuracy (y) against training-set size N on a log scale "
        f"(x, N = {', '.join(map(str, sizes))}), one panel per dataset ordered from closest to farthest from "
        f"natural photos ({', '.join(order)}), one coloured line per strategy ({', '.join(hue_order)}) with "
        f"shaded 95 % bootstrap intervals. Best at the largest N — {leaders}."
    )
    return Figure(uri, alt)


def text_accuracy_vs_size(summary: pd.DataFrame, datasets: Sequence[str]) -> Figure:
    """The text section's figure: mean test accuracy against N (log x) per text dataset, a line per text strategy
    with its 95 % band (text cells have no backbone, so one figure holds them all)."""
    frame = summary[summary["dataset"].isin(set(datasets))].dropna(subset=["accuracy_mean"])
    if frame.empty:
        raise NoData("no non-degenerate text result")
    order = [d for d in datasets if d in set(frame["dataset"])]
    hue_order = _present(strategy_order(), frame["strategy"])
    palette = strategy_palette(hue_order)
    sizes = sorted(int(n) for n in frame["n_images"].unique())
    with theme():
        g = sns.relplot(
            data=frame, x="n_images", y="accuracy_mean", hue="strategy", hue_order=hue_order, palette=palette,
            col="dataset", col_order=order, col_wrap=_wrap(len(order)), kind="line", marker="o", markersize=5,
            errorbar=None, height=2.5, aspect=1.2, facet_kws={"sharey": False, "sharex": True},
        )  # fmt: skip
        g.map_dataframe(_band, palette=palette)
        uri = _finish_dataset_facets(g, sizes, order, None, "test accuracy", ncol=min(3, len(hue_order)),
                                     xlabel="training texts N (log scale)")
    top = frame.loc[frame.groupby("dataset")["n_images"].transform("max") == frame["n_images"]]
    best = top.loc[top.groupby("dataset")["accuracy_mean"].idxmax()].set_index("dataset")
    leaders = "; ".join(
        f"{d}: {best.loc[d, 'strategy']} {best.loc[d, 'accuracy_mean']:.3f} at N={int(best.loc[d, 'n_images'])}"
        for d in order
        if d in best.index
    )
    alt = (
        f"Line charts of text classification: mean test accuracy (y) against the number of training texts N on a "
        f"log scale (x, N = {', '.join(map(str, sizes))}), one panel per text dataset ({', '.join(order)}), one "
        f"coloured line per text strategy ({', '.join(hue_order)}) with shaded 95 % bootstrap intervals. Best at "
        f"the largest N — {leaders}."
    )
    return Figure(uri, alt)


# ----------------------------------------------------------------------------------------------------------
# 3. Strategy map
# ----------------------------------------------------------------------------------------------------------


def strategy_map(best: pd.DataFrame, row_labels: Mapping[str, str], dataset_order: Sequence[str]) -> Figure:
    """Heatmap of the winning strategy per (dataset by similarity) x N, annotated with the margin to the runner-up."""
    if best.empty:
        raise NoData("no cell has a non-degenerate result")
    frame = best.copy()
    multi_px = frame["image_size"].nunique() > 1
    frame["row"] = [
        row_labels.get(d, d) + (f" @{int(s)}px" if multi_px else "")
        for d, s in zip(frame["dataset"], frame["image_size"], strict=True)
    ]
    rank = {d: i for i, d in enumerate(dataset_order)}
    rows = (
        frame.assign(_r=frame["dataset"].map(rank).fillna(len(rank)))
        .sort_values(["_r", "dataset", "image_size"])["row"]
        .drop_duplicates()
        .tolist()
    )
    cols = sorted(int(n) for n in frame["n_images"].unique())
    strategies = _present(strategy_order(), frame["best_strategy"])
    palette = strategy_palette(strategies)
    code = {s: i for i, s in enumerate(strategies)}
    codes = frame.pivot_table(index="row", columns="n_images", values="best_strategy", aggfunc="first")
    codes = codes.reindex(index=rows, columns=cols)
    margin = frame.pivot_table(index="row", columns="n_images", values="margin", aggfunc="first")
    margin = margin.reindex(index=rows, columns=cols)
    numeric = codes.apply(lambda col: col.map(code)).astype(float)
    notes = np.empty(codes.shape, dtype=object)
    for i in range(codes.shape[0]):
        for j in range(codes.shape[1]):
            s, m = codes.iat[i, j], margin.iat[i, j]
            notes[i, j] = (
                "" if pd.isna(s) else f"{abbreviation(s)}\n" + ("—" if pd.isna(m) else f"+{100 * m:.1f}")
            )
    with theme():
        fig, ax = plt.subplots(figsize=(1.0 * len(cols) + 3.2, 0.55 * len(rows) + 1.4))
        sns.heatmap(numeric, cmap=ListedColormap([palette[s] for s in strategies]), vmin=-0.5,
                    vmax=len(strategies) - 0.5, annot=notes, fmt="", cbar=False, linewidths=1.5, linecolor="white",
                    annot_kws={"fontsize": 8}, ax=ax)  # fmt: skip
        ax.grid(False)
        ax.set_facecolor("#eeeeee")  # cells without a non-degenerate result
        ax.set_xlabel("training images N")
        ax.set_ylabel("dataset (closest to natural photos at the top)")
        ax.set_xticklabels([str(c) for c in cols], rotation=0)
        ax.tick_params(axis="y", rotation=0)
        handles = [Patch(facecolor=palette[s], label=f"{abbreviation(s)} = {s}") for s in strategies]
        ax.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=min(3, len(handles)),
                  frameon=False, fontsize=8)  # fmt: skip
        uri = encode(fig)
    counts = frame["best_strategy"].value_counts()
    wins = ", ".join(f"{s} wins {n}" for s, n in counts.items())
    alt = (
        f"Heatmap with one row per dataset ({len(rows)}, from closest to farthest from natural photos: "
        f"{', '.join(rows)}) and one column per training-set size (N = {', '.join(map(str, cols))}); "
        "each cell is coloured by the winning strategy and labelled with its abbreviation and its margin over "
        f"the runner-up in accuracy points. Of {len(frame)} cells: {wins}."
    )
    return Figure(uri, alt)


# ----------------------------------------------------------------------------------------------------------
# 4. Gain over scratch
# ----------------------------------------------------------------------------------------------------------


def _gain_bars(data: pd.DataFrame, palette: Mapping[str, Any], **_: Any) -> None:
    ax = plt.gca()
    ax.axhline(0.0, color="black", linewidth=1, zorder=1)
    for strategy, rows in data.groupby("strategy"):
        rows = rows.dropna(subset=["gain_ci_low", "gain_ci_high"])
        if not rows.empty:
            y = rows["gain"].to_numpy(float)
            ax.errorbar(rows["x"], y, yerr=[y - rows["gain_ci_low"], rows["gain_ci_high"] - y], fmt="none",
                        ecolor=palette[strategy], capsize=2, alpha=0.7, zorder=2)  # fmt: skip
    neg = data[data["negative_transfer"]]
    if not neg.empty:
        ax.scatter(neg["x"], neg["gain"], marker="X", s=110, color=NEGATIVE, edgecolor="white", linewidth=0.8,
                   zorder=5, label="negative transfer")  # fmt: skip


def gain_over_scratch(
    gains: pd.DataFrame, dataset_order: Sequence[str], titles: Mapping[str, str] | None = None
) -> Figure:
    """Each pretrained cell's gain over the best from-scratch baseline with its 95 % interval; losses marked."""
    frame = gains.dropna(subset=["gain"]).copy()
    if frame.empty:
        raise NoData(
            "no pretrained cell has a usable from-scratch baseline (no scratch cell at the same dataset and size, "
            "or all of them degenerate), so there is no gain to show"
        )
    order = [d for d in dataset_order if d in set(frame["dataset"])] + sorted(
        set(frame["dataset"]) - set(dataset_order)
    )
    hue_order = _present(strategy_order(), frame["strategy"])
    palette = strategy_palette(hue_order)
    pairs = sorted(set(zip(frame["strategy"], frame["backbone"], strict=True)))
    shift = {p: 1.06 ** (i - (len(pairs) - 1) / 2) for i, p in enumerate(pairs)}  # dodge on the log axis
    frame["x"] = [n * shift[(s, b)] for n, s, b in zip(frame["n_images"], frame["strategy"], frame["backbone"],
                                                        strict=True)]  # fmt: skip
    sizes = sorted(int(n) for n in frame["n_images"].unique())
    with theme():
        g = sns.relplot(
            data=frame, x="x", y="gain", hue="strategy", hue_order=hue_order, palette=palette, style="backbone",
            col="dataset", col_order=order, col_wrap=_wrap(len(order)), kind="line", marker="o", markersize=5,
            errorbar=None, height=2.5, aspect=1.2, facet_kws={"sharey": False},
        )  # fmt: skip
        g.map_dataframe(_gain_bars, palette=palette)
        uri = _finish_dataset_facets(g, sizes, order, titles, "accuracy gain over scratch", ncol=4)
    neg = frame[frame["negative_transfer"]].sort_values("gain")
    listed = "; ".join(
        f"{r.strategy}/{r.backbone} on {r.dataset} at N={int(r.n_images)} ({r.gain:+.3f})"
        for r in neg.head(5).itertuples()
    )
    if len(neg) > 5:
        listed += f"; and {len(neg) - 5} more, listed in the table below"
    alt = (
        f"Point-and-line charts, one panel per dataset ({', '.join(order)}): accuracy gain of each pretrained "
        f"strategy over the best from-scratch baseline (y; 0 = no gain) against N on a log scale, with 95 % "
        f"intervals as error bars; {len(frame)} cells, of which {int(frame['significant_gain'].sum())} gain "
        f"significantly and {len(neg)} show significant negative transfer"
        + (f", marked with red crosses: {listed}." if len(neg) else ".")
    )
    return Figure(uri, alt)


def gain_vs_similarity(cells: pd.DataFrame, score: str, correlation: Mapping[str, Any] | None = None) -> Figure:
    """The measured domain gap on the x axis: best transfer gain per dataset and size against the similarity score.

    The rule of thumb's "similar domain" axis, measured: each point is the best pretrained strategy's gain over
    the best from-scratch baseline of a (dataset, N) cell (``study.analysis.tables.gap_vs_gain_cells``: one image size),
    placed at its dataset's score and marked by its domain.
    """
    if cells.empty:
        raise NoData("no cell has both a transfer gain over scratch and a measured similarity score")
    px = int(cells["image_size"].iloc[0])
    best = cells.assign(domain=cells["domain"].fillna("unknown"), N=cells["n_images"].astype(int).astype(str))
    size_order = [str(n) for n in sorted(best["n_images"].astype(int).unique())]
    domain_order = _present(known_domains(), best["domain"])  # the registry's order: one marker per label everywhere
    with theme():
        fig, ax = plt.subplots(figsize=(7.2, 4.2))
        ax.axhline(0.0, color="black", linewidth=1)
        sns.scatterplot(data=best, x=score, y="gain", hue="N", hue_order=size_order, style="domain",
                        style_order=domain_order, s=70, palette="viridis", ax=ax)  # fmt: skip
        for r in best.itertuples():
            if not (pd.isna(r.gain_ci_low) or pd.isna(r.gain_ci_high)):
                ax.plot([getattr(r, score)] * 2, [r.gain_ci_low, r.gain_ci_high], color="#888888", linewidth=0.8,
                        zorder=1)  # fmt: skip
        ax.set_xlabel(f"domain gap to natural photos ({score.replace('_', ' ')}; measured, lower = closer)")
        ax.set_ylabel("best transfer gain over scratch")
        sns.move_legend(ax, "upper left", bbox_to_anchor=(1.0, 1.0), frameon=False, fontsize=8)
        uri = encode(fig)
    rho = ""
    if correlation and correlation.get("rho") is not None:
        rho = (f" The Spearman rank correlation between the gap and the gain is {correlation['rho']:+.2f} "
               f"(p = {correlation['p']:.2g}, {correlation['n_cells']} cells).")  # fmt: skip
    far = best.sort_values(score).iloc[-1]
    alt = (
        f"Scatter plot of {len(best)} (dataset, N) cells at {px} px: x is the measured domain gap ({score}) of "
        f"each dataset to natural photos, y the best pretrained strategy's accuracy gain over the best "
        f"from-scratch baseline with its 95 % interval as a vertical line; colour is N "
        f"({', '.join(size_order)}), marker shape the domain label "
        f"({', '.join(sorted(best['domain'].astype(str).unique()))}). The farthest dataset is "
        f"{far['dataset']} ({far['domain']}, {far[score]:.0f})." + rho
    )
    return Figure(uri, alt)


# ----------------------------------------------------------------------------------------------------------
# 5. Cost vs accuracy
# ----------------------------------------------------------------------------------------------------------


def cost_frame(runs: pd.DataFrame, summary: pd.DataFrame) -> pd.DataFrame:
    """Long form: per cell and cost measure, the mean cost and the accuracy gap to the best cell of its task."""
    keys = ["dataset", "n_images", "strategy", "backbone", "image_size"]
    measures = [m for m in COST_MEASURES if m in runs.columns]
    if not measures:
        return pd.DataFrame()
    numeric = runs[keys].assign(**{m: pd.to_numeric(runs[m], errors="coerce").astype("float64") for m in measures})
    costs = numeric.groupby(keys, dropna=False)[measures].mean().reset_index()
    acc = summary.dropna(subset=["accuracy_mean"])[[*keys, "accuracy_mean"]]
    cells = acc.merge(costs, on=keys, how="left")
    cells["gap"] = cells["accuracy_mean"] - cells.groupby(["dataset", "n_images", "image_size"])[
        "accuracy_mean"
    ].transform("max")
    long = cells.melt(id_vars=[*keys, "accuracy_mean", "gap"], value_vars=measures, var_name="measure",
                      value_name="cost")  # fmt: skip
    long = long[pd.to_numeric(long["cost"], errors="coerce").astype("float64") > 0].copy()
    long["cost"] = long["cost"].astype("float64")
    long["measure"] = long["measure"].map(COST_MEASURES)
    return long


def pareto_front(points: pd.DataFrame, cost: str = "cost", value: str = "gap") -> pd.DataFrame:
    """Cells no other cell beats on both counts (cheaper and at least as accurate), in order of cost."""
    ordered = points.sort_values([cost, value], ascending=[True, False])
    best = -np.inf
    keep = []
    for idx, v in zip(ordered.index, ordered[value], strict=True):
        if v > best:
            keep.append(idx)
            best = v
    return ordered.loc[keep]


def _front_line(data: pd.DataFrame, **_: Any) -> None:
    front = pareto_front(data)
    plt.gca().step(front["cost"], front["gap"], where="post", color="black", linewidth=1.2, zorder=4, marker="o",
                   markersize=7, markerfacecolor="none", markeredgewidth=1.2)  # fmt: skip


def cost_vs_accuracy(runs: pd.DataFrame, summary: pd.DataFrame) -> Figure:
    """Accuracy gap to the best cell of the same task against four costs, with the Pareto front of cheap-and-good."""
    long = cost_frame(runs, summary)
    if long.empty:
        raise NoData("no cell has both an accuracy and a measured cost")
    hue_order = _present(strategy_order(), long["strategy"])
    palette = strategy_palette(hue_order)
    measures = [m for m in COST_MEASURES.values() if m in set(long["measure"])]
    with theme():
        g = sns.relplot(
            data=long, x="cost", y="gap", hue="strategy", hue_order=hue_order, palette=palette, col="measure",
            col_order=measures, col_wrap=_wrap(len(measures), 2), kind="scatter", alpha=0.75, s=28, height=2.8,
            aspect=1.3, facet_kws={"sharex": False, "sharey": True},
        )  # fmt: skip
        g.map_dataframe(_front_line)
        for ax, name in zip(g.axes.flat, measures, strict=False):
            values = long.loc[long["measure"] == name, "cost"].astype(float)
            logged = values.max() / values.min() >= 20  # a log axis over less than a decade only shows clutter
            if logged:
                ax.set_xscale("log")
                ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_title(name)
            ax.set_xlabel(f"{name}, log scale" if logged else name)
        g.set_ylabels("accuracy − best of its task")
        sns.move_legend(g, "lower center", bbox_to_anchor=(0.5, 1.0), ncol=min(6, len(hue_order)), frameon=False,
                        title=None)  # fmt: skip
        uri = encode(g.figure)
    fronts = []
    for m in measures:
        front = pareto_front(long[long["measure"] == m])
        fronts.append(f"{m}: {', '.join(dict.fromkeys(front['strategy']))}")
    alt = (
        f"Scatter plots, one per cost ({', '.join(measures)}, log x): each point is a cell (dataset, N, strategy, "
        f"backbone); y is its accuracy minus the best accuracy at the same dataset and N (0 = the best). A black "
        f"step line with open circles traces the Pareto front. Strategies on the front — {'; '.join(fronts)}."
    )
    return Figure(uri, alt)


# ----------------------------------------------------------------------------------------------------------
# 5b. Backbones: transfer accuracy against ImageNet top-1
# ----------------------------------------------------------------------------------------------------------


def _panel_title(dataset: str, n: int, px: int, correlations: pd.DataFrame, many: bool) -> str:
    """A panel's title: the dataset (and size where several are shown) with each strategy's ρ where it exists."""
    title = f"{dataset} (N={n}, {px} px)" if many else dataset
    sel = correlations[(correlations["dataset"] == dataset) & (correlations["n_images"] == n)
                       & (correlations["image_size"] == px)]  # fmt: skip
    rhos = [f"{abbreviation(r.strategy)} ρ={r.rho:+.2f}" for r in sel.itertuples() if pd.notna(r.rho)]
    return title + ("\n" + ", ".join(rhos) if rhos else "")


def backbone_transfer(table: pd.DataFrame, correlations: pd.DataFrame, dataset_order: Sequence[str]) -> Figure:
    """Per dataset (and size): each pretrained strategy's test accuracy against the backbones' ImageNet top-1.

    ``table`` and ``correlations`` are ``study.analysis.backbones.backbone_table`` / ``rank_correlations``; the
    figure only draws them (a line per strategy through its backbones in top-1 order, 95 % intervals as bars).
    """
    if table.empty or table["backbone"].nunique() < 2:
        raise NoData("fewer than two backbones with a published ImageNet top-1 were measured on any dataset")
    panels = table[["dataset", "n_images", "image_size"]].drop_duplicates()
    rank = {d: i for i, d in enumerate(dataset_order)}
    panels = panels.assign(_o=panels["dataset"].map(lambda d: rank.get(d, len(rank))))
    panels = panels.sort_values(["_o", "dataset", "image_size", "n_images"]).drop(columns="_o")
    many = len(panels[["n_images", "image_size"]].drop_duplicates()) > 1
    hue_order = _present(strategy_order(), table["strategy"])
    palette = strategy_palette(hue_order)
    ticks = table.groupby("backbone")["imagenet_top1"].first().sort_values()
    ncol = _wrap(len(panels), 3)
    nrow = -(-len(panels) // ncol)
    with theme():
        fig, axes = plt.subplots(nrow, ncol, figsize=(3.6 * ncol, 3.3 * nrow), squeeze=False, sharex=True)
        for ax, panel in zip(axes.flat, panels.itertuples(index=False), strict=False):
            sel = table[(table["dataset"] == panel.dataset) & (table["n_images"] == panel.n_images)
                        & (table["image_size"] == panel.image_size)]  # fmt: skip
            for strategy in hue_order:
                pts = sel[sel["strategy"] == strategy].sort_values("imagenet_top1")
                if pts.empty:
                    continue
                low = (pts["accuracy"] - pts["ci_low"]).clip(lower=0).fillna(0)
                high = (pts["ci_high"] - pts["accuracy"]).clip(lower=0).fillna(0)
                ax.errorbar(pts["imagenet_top1"], pts["accuracy"], yerr=[low, high], color=palette[strategy],
                            marker="o", markersize=5, linewidth=1.3, capsize=2, label=strategy)  # fmt: skip
            ax.set_title(_panel_title(str(panel.dataset), int(panel.n_images), int(panel.image_size),
                                      correlations, many), fontsize=9)  # fmt: skip
            ax.set_xticks(list(ticks.to_numpy()))
            ax.set_xticklabels([f"{v:.1f} {b}" for b, v in ticks.items()], rotation=60, ha="right", fontsize=7)
            ax.xaxis.set_minor_locator(NullLocator())
        for ax in list(axes.flat)[len(panels):]:
            ax.set_visible(False)
        for ax in axes[:, 0]:
            ax.set_ylabel("test accuracy")
        for ax in axes[-1, :]:
            ax.set_xlabel("ImageNet top-1 (%) and backbone")
        handles, labels = axes.flat[0].get_legend_handles_labels()
        seen = dict(zip(labels, handles, strict=True))
        for ax in axes.flat:
            for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
                seen.setdefault(lab, h)
        fig.legend(list(seen.values()), list(seen.keys()), loc="lower center", bbox_to_anchor=(0.5, 1.0),
                   ncol=min(6, len(seen)), frameon=False)  # fmt: skip
        fig.tight_layout()
        uri = encode(fig)
    measured = correlations.dropna(subset=["rho"])
    rhos = "; ".join(f"{r.dataset} N={int(r.n_images)} {r.strategy} {r.rho:+.2f}" for r in measured.itertuples())
    few = int(correlations["rho"].isna().sum())
    alt = (
        f"Line charts, one panel per dataset and size ({len(panels)} panels: "
        f"{', '.join(dict.fromkeys(panels['dataset'].astype(str)))}): x is each backbone's published ImageNet top-1 "
        f"({', '.join(f'{b} {v:.1f} %' for b, v in ticks.items())}), y its mean test accuracy with a 95 % interval, "
        f"one line per pretrained strategy ({', '.join(hue_order)}). Spearman rank correlations between ImageNet "
        f"top-1 and transfer accuracy: " + (rhos or "none (too few backbones per dataset)") + "."
        + (f" {few} panel-strategy combinations have fewer than 3 backbones and no correlation." if few else "")
    )
    return Figure(uri, alt)


# ----------------------------------------------------------------------------------------------------------
# 6. Learning curves
# ----------------------------------------------------------------------------------------------------------


def representative_rows(runs: pd.DataFrame, dataset_order: Sequence[str], limit: int = 4) -> pd.DataFrame:
    """A few rows that show the typical curve shapes: one per strategy (two-phase fine-tuning first)."""
    has = runs[runs["curves"].map(has_curves)] if "curves" in runs else runs[:0]
    if has.empty:
        return has
    rank = {d: i for i, d in enumerate(dataset_order)}
    ranked = sorted((r for r in strategy_records() if r.curve_example is not None), key=lambda r: r.curve_example)
    priority = [r.name for r in ranked]
    chosen = []
    for strategy in priority + sorted(set(has["strategy"]) - set(priority)):
        rows = has[has["strategy"] == strategy]
        if rows.empty:
            continue
        rows = rows.assign(_r=rows["dataset"].map(rank).fillna(len(rank)))
        rows = rows.sort_values(["n_images", "_r", "seed"], ascending=[False, True, True])
        chosen.append(rows.iloc[0])
        if len(chosen) == limit:
            break
    return pd.DataFrame(chosen).drop(columns="_r")


def curves_long(rows: pd.DataFrame) -> pd.DataFrame:
    """Long form of per-epoch curves: cell, epoch, panel (accuracy/loss), split (training/validation), value."""
    parts = []
    for row in rows.to_dict("records"):
        frame = curve_frame(row["curves"])
        label = f"{row['strategy']}/{row['backbone']} · N={int(row['n_images'])}\n{row['dataset']}"
        for panel, train_col, val_col in (("accuracy", "accuracy", "val_accuracy"), ("loss", "loss", "val_loss")):
            for split, col in (("training", train_col), ("validation", val_col)):
                if col in frame.columns:
                    value = pd.to_numeric(frame[col], errors="coerce").astype("float64")
                    part = {"cell": label, "epoch": frame["step"], "panel": panel, "split": split, "value": value,
                            "phase": frame["phase"]}  # fmt: skip
                    parts.append(pd.DataFrame(part))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def _phase_lines(data: pd.DataFrame, **_: Any) -> None:
    ax = plt.gca()
    first = data.drop_duplicates("epoch").sort_values("epoch")
    changes = first["epoch"][first["phase"].ne(first["phase"].shift()) & first["phase"].shift().notna()]
    for x in changes:
        ax.axvline(x - 0.5, color="grey", linestyle=":", linewidth=1.2)
        ax.annotate("start fine-tuning", (x - 0.5, 0.02), xycoords=("data", "axes fraction"), fontsize=7,
                    color="grey", rotation=90, ha="right", va="bottom")  # fmt: skip


def learning_curves(runs: pd.DataFrame, dataset_order: Sequence[str], limit: int = 4) -> Figure:
    """Training and validation accuracy and loss per epoch for a few typical cells, as the tutorials plot them."""
    rows = representative_rows(runs, dataset_order, limit)
    long = curves_long(rows)
    if long.empty:
        raise NoData("no row recorded per-epoch learning curves (e.g. only linear probes were run)")
    cells = list(dict.fromkeys(long["cell"]))
    with theme():
        g = sns.relplot(
            data=long, x="epoch", y="value", hue="split", hue_order=["training", "validation"], row="cell",
            row_order=cells, col="panel", col_order=["accuracy", "loss"], kind="line", marker="o", markersize=3,
            errorbar=None, height=2.1, aspect=1.7, facet_kws={"sharey": False, "sharex": "row", "margin_titles": False},
        )  # fmt: skip
        g.map_dataframe(_phase_lines)
        g.set_titles("{row_name}: {col_name}", size=9)
        for ax in g.axes.flat:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        g.set_axis_labels("epoch", "")
        sns.move_legend(g, "lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, frameon=False, title=None)
        uri = encode(g.figure)
    names = "; ".join(c.replace("\n", " on ") for c in cells)
    alt = (
        f"Learning curves of {len(cells)} representative cells ({names}): for each, training and "
        "validation accuracy (left) and cross-entropy loss (right) per epoch; a dotted vertical line marks where "
        "fine-tuning starts after the head phase."
    )
    return Figure(uri, alt)


# ----------------------------------------------------------------------------------------------------------
# 8. Domain adaptation (#20)
# ----------------------------------------------------------------------------------------------------------


def adaptation_long(table: pd.DataFrame) -> pd.DataFrame:
    """``study.analysis.adaptation.domain_adaptation_table`` in long form: one row per panel x N_t x recipe measured.

    A panel is one pair on one network, image size and source count (the table's row keys less N_t), so a recipe
    is only ever drawn beside the others it was compared with.
    """
    from study.analysis.adaptation import RECIPES

    rows = []
    for r in table.to_dict("records"):
        pair = f"{r['source']} → {r['dataset']}"
        pair = pair if len(pair) <= 44 else f"{r['source']} →\n{r['dataset']}"  # long names: two title lines
        panel = f"{pair}\n{r['network']}, {int(r['image_size'])} px, {int(r['n_images'])} source images"
        for recipe in RECIPES:
            if pd.notna(r[recipe]):
                rows.append({"panel": panel, "N_t": int(r["n_target_labels"]), "recipe": recipe,
                             "accuracy": float(r[recipe]), "ci_low": float(r[f"{recipe}_ci_low"]),
                             "ci_high": float(r[f"{recipe}_ci_high"])})  # fmt: skip
    return pd.DataFrame(rows, columns=["panel", "N_t", "recipe", "accuracy", "ci_low", "ci_high"])


def _recipe_points(data: pd.DataFrame, recipes: Sequence[str], levels: Sequence[int], palette: Mapping[int, Any],
                   **_: Any) -> None:  # fmt: skip
    """One panel: each N_t's recipes as dodged points with their 95 % intervals (categories: no joining line)."""
    ax = plt.gca()
    width = 0.5 / max(1, len(levels))
    for i, n_t in enumerate(levels):
        pts = data[data["N_t"] == n_t].set_index("recipe").reindex(list(recipes)).dropna(subset=["accuracy"])
        if pts.empty:
            continue
        x = np.array([list(recipes).index(r) for r in pts.index], float) + (i - (len(levels) - 1) / 2) * width
        y = pts["accuracy"].to_numpy(float)
        err = [(y - pts["ci_low"]).clip(lower=0), (pts["ci_high"] - y).clip(lower=0)]
        ax.errorbar(x, y, yerr=err, color=palette[n_t], marker="o", markersize=5, linestyle="none", capsize=2,
                    label=f"N_t = {n_t}")  # fmt: skip
    ax.set_xticks(range(len(recipes)))
    ax.set_xticklabels(list(recipes), rotation=30, ha="right")


def domain_adaptation(table: pd.DataFrame) -> Figure:
    """Per pair (and network): target test accuracy of each recipe, one colour per number of labelled target
    images N_t, with the table's 95 % intervals (the figure draws the table, it computes nothing)."""
    from study.analysis.adaptation import RECIPES

    frame = adaptation_long(table)
    if frame.empty:
        raise NoData("no domain-adaptation (source → target) cell has a non-degenerate result")
    panels = list(dict.fromkeys(frame["panel"]))
    levels = sorted(int(n) for n in frame["N_t"].unique())
    colours = sns.color_palette("colorblind", max(3, len(levels)))
    palette = {n: colours[i] for i, n in enumerate(levels)}
    with theme():
        g = sns.FacetGrid(frame, col="panel", col_order=panels, col_wrap=_wrap(len(panels), 3), height=2.8,
                          aspect=1.25, sharey=False, sharex=False)  # fmt: skip
        g.map_dataframe(_recipe_points, recipes=RECIPES, levels=levels, palette=palette)
        g.set_titles("{col_name}", size=8)
        g.set_axis_labels("", "target test accuracy")
        handles = [plt.Line2D([], [], color=palette[n], marker="o", linestyle="none") for n in levels]
        g.figure.legend(handles, [f"N_t = {n} labelled target images" for n in levels], loc="lower center",
                        bbox_to_anchor=(0.5, 1.0), ncol=len(levels), frameon=False)  # fmt: skip
        g.figure.tight_layout()
        uri = encode(g.figure)
    parts = []
    for panel in panels:
        sel = frame[frame["panel"] == panel]
        by_n = "; ".join(
            f"N_t {n}: " + ", ".join(f"{r.recipe} {r.accuracy:.3f}" for r in sel[sel["N_t"] == n].itertuples())
            for n in levels if (sel["N_t"] == n).any()
        )
        parts.append(f"{panel.replace(chr(10), ', ')} ({by_n})")
    alt = (
        f"Point charts, one panel per source → target pair and network ({len(panels)} panels): target test "
        f"accuracy (y, 95 % intervals as error bars) of {', '.join(RECIPES)} (x), one colour per number of labelled "
        f"target images. Means: " + " | ".join(parts) + "."
    )
    return Figure(uri, alt)
