"""A strategy registered from a plugin module is a first-class component: one record, nothing else to edit.

It is swept with ``--plugin`` and a 2-trial tuning budget, compared by the statistics (as a pretrained strategy and,
re-registered, as a from-scratch baseline), ranked by the advisor and drawn in the report.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
GRID = """
[grids.plugin]
description = "the plugin strategy beside the study's own on the tiny test components, two seeds, a 2-trial search"
datasets = ["tiny_shapes", "tiny_shapes@grey_invert"]
sizes = [90]  # at 30 images the small CNN from scratch is degenerate in most seeds: no baseline to compare
strategies = ["raw_probe", "linear_probe", "scratch_small"]
backbones = ["tiny_cnn"]
seeds = [0, 1]
image_size = 16
epochs = 8
trials = 2
max_test = 36
retries = 0
"""


@pytest.fixture(scope="module")
def swept(tmp_path_factory, datapack):
    """The plugin grid swept in this process through the command line's own entry point (``--plugin``), on the tiny
    test components; the plugins' registrations are undone after this module."""
    from conftest import plugins

    from advisor.data import load_results
    from study import run

    tmp = tmp_path_factory.mktemp("plugin")
    (tmp / "grids.toml").write_text(GRID)
    url = f"sqlite:///{tmp / 'study.db'}"
    with plugins():  # tests/plugins on the path; --plugin imports the modules as a user's sweep does
        rc = run.main(["--grid", "plugin", "--grid-file", str(tmp / "grids.toml"), "--plugin", "tiny_components",
                       "--plugin", "raw_probe", "--store", url, "--log-dir", str(tmp / "logs"),
                       "--no-latency"])  # fmt: skip
        assert rc == 0
        runs, similarity = load_results(url)
        yield {"url": url, "runs": runs, "similarity": similarity, "tmp": tmp}


def test_the_plugin_strategy_is_tuned_with_the_same_budget(swept):
    runs = swept["runs"]
    plugin = runs[runs["strategy"] == "raw_probe"]
    assert len(plugin) == 4 and (plugin["status"] == "complete").all()
    assert {m["trials_run"] for m in plugin["metrics"]} == {2}  # a real 2-trial search, no KeyError
    assert set(runs.groupby("strategy")["trials_budget"].unique().map(tuple)) == {(2,)}


def test_statistics_compare_it_as_a_pretrained_strategy(swept):
    from study.analysis.stats import transfer_gain

    gains = transfer_gain(swept["runs"])
    assert set(gains["strategy"]) == {"raw_probe", "linear_probe"}
    assert set(gains["baseline_strategy"].dropna()) == {"scratch_small"}


def test_statistics_take_it_as_a_baseline_when_its_record_says_so(swept):
    from study.analysis.stats import transfer_gain
    from study.train.strategies import STRATEGIES

    as_baseline = replace(STRATEGIES.get("raw_probe"), pretrained=False, baseline=True)
    with STRATEGIES.temporary(as_baseline):
        gains = transfer_gain(swept["runs"])
    assert set(gains["strategy"]) == {"linear_probe"}
    assert "raw_probe" in set(gains["baseline_strategy"].dropna())


def test_the_advisor_ranks_it_with_its_recipe(swept):
    from advisor.model import Advisor

    advisor = Advisor().fit(swept["runs"], swept["similarity"])
    assert "raw_probe" in advisor.strategies_
    rec = advisor.recommend({"n_images": 30, "domain": "natural"})
    option = next(o for o in rec.options if o.strategy == "raw_probe")
    assert option.recipe["strategy_recipe"].startswith("Logistic regression on the frozen backbone's pooled")
    assert option.recipe["freeze"] == "freeze the whole backbone; fit a logistic regression on its raw pooled features"
    assert set(option.recipe) >= {"linear_c"}


def test_the_report_draws_it_in_its_own_colour(swept):
    from reports.build import build_report
    from reports.figures import abbreviation, strategy_order, strategy_palette
    from study.engine.store import ResultsStore
    from study.train.strategies import get_strategy

    with ResultsStore(swept["url"], create=False) as store:
        out = build_report(store, out=swept["tmp"] / "site" / "report.html")
    html = out.read_text("utf-8")
    assert "raw_probe" in html
    image = [s for s in strategy_order() if get_strategy(s).modality == "image" and not get_strategy(s).pair]
    assert image[-1] == "raw_probe" and abbreviation("raw_probe") == "RAW"
    assert strategy_palette(["raw_probe"])["raw_probe"] == "#e69f00"


def test_no_module_keeps_a_table_keyed_by_strategy_names():
    """What a strategy is lives in its record: no other module lists several strategy names in one literal."""
    names = ("scratch", "scratch_small", "linear_probe", "feature_extraction", "fine_tune_top", "full_fine_tune")
    quoted = re.compile(r"""["'](%s)["']""" % "|".join(names))  # noqa: UP031 - a regex, clearer with %
    offenders = []
    for path in [*REPO.glob("study/**/*.py"), *REPO.glob("advisor/*.py"), *REPO.glob("reports/*.py")]:
        if path == REPO / "study" / "train" / "strategies.py":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if line.lstrip().startswith((">>>", "#")):  # doctest examples and comments are not tables
                continue
            if len(set(quoted.findall(line))) >= 2:  # two strategy names in one literal line: a table
                offenders.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)
