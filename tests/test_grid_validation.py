"""Grid files and flags are checked once, at the entry point, with one line naming the key and what it needs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from study.engine.grid import expand, get_grid, load_grids
from study.errors import StudyError

REPO = Path(__file__).resolve().parents[1]
AXES = 'datasets = ["mnist"]\nsizes = [50]\nstrategies = ["linear_probe"]\nbackbones = ["mobilenet_v2"]\nseeds = [0]\n'


def _grid_file(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "grids.toml"
    path.write_text(body)
    return path


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('[grids.g]\ndatasets = "mnist"\nsizes = [50]\nstrategies = ["linear_probe"]\nbackbones = ["mobilenet_v2"]\n'
         "seeds = [0]\n", "datasets must be a list of names, got 'mnist' (str)"),
        ('[grids.g]\n' + AXES + 'augment = "false"\n', "augment must be true or false, got 'false' (str)"),
        ('[grids.g]\n' + AXES + 'image_size = "big"\n', "image_size must be an integer, got 'big' (str)"),
        ("[grids.g]\n" + AXES + "[grids.g.limits]\nx = 5\n", "limits must be a table of per-strategy tables"),
        ("[grids.g]\n" + AXES + "[grids.g.limits.linear_probe]\nmax_n = \"big\"\n", "limits.linear_probe: max_n must"),
        ("[grids.g]\n" + AXES + "sizes_typo = [1]\n", "unknown keys ['sizes_typo']"),
        ("[grids.g]\n" + AXES.replace("[50]", "[50, 2.5]"), "sizes must be a list of integers"),
        ('[datasets.mine]\npath = 3\ndomain = "medical"\n[grids.g]\n' + AXES, "[datasets.mine]"),
        ("[grids.g]\n" + AXES + "image_size = 100000\n", "image_size must be an integer from 8 to 1024 px"),
        ("[grids.g]\n" + AXES.replace("seeds = [0]", "seeds = [-1]"), "seed -1 must be an integer from 0"),
    ],
)  # fmt: skip
def test_grid_file_values_of_the_wrong_type_or_range_are_one_line_errors(tmp_path, body, message):
    path = _grid_file(tmp_path, body)
    with pytest.raises(StudyError) as err:
        expand(get_grid("g", path))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_correct_grid_file_loads(tmp_path):
    grid = load_grids(_grid_file(tmp_path, "[grids.g]\n" + AXES + "augment = false\nimage_size = 32\n"))["g"]
    assert grid.augment is False and grid.datasets == ("mnist",) and grid.image_size == 32


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"image_size": 2000}, "--image-size must be an integer from 8 to 1024 px, got 2000"),
        ({"seeds": [99999999999999999999999]}, "--seeds: seed 99999999999999999999999 must be an integer from 0"),
        ({"seeds": [-1]}, "--seeds: seed -1 must be"),
        ({"sizes": [1]}, "--sizes: training-set size 1 must be"),
        ({"trials": 0}, "--trials must be an integer from 1"),
        ({"epochs": 10**9}, "--epochs must be an integer from 1 to 1000000"),
    ],
)
def test_flag_values_outside_their_range_are_named_by_their_flag(override, message):
    with pytest.raises(StudyError, match=message.replace("[", r"\[")):
        get_grid("smoke").with_overrides(**override)


def test_the_command_line_prints_one_line_and_exits_2(tmp_path):
    for args in (["--image-size", "2000"], ["--grid-file", str(tmp_path)], ["--seeds", "99999999999999999999999"]):
        proc = subprocess.run([sys.executable, "-m", "study.run", "--grid", "smoke", "--dry-run", *args], cwd=tmp_path,
                              capture_output=True, text=True, timeout=120)  # fmt: skip
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, proc.stderr
        assert "Traceback" not in proc.stderr


def test_an_unwritable_cache_folder_is_refused_before_anything_runs(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    proc = subprocess.run([sys.executable, "-m", "study.run", "--grid", "smoke", "--store",
                           f"sqlite:///{tmp_path / 's.db'}", "--cache-dir", str(afile / "cache")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 2
    assert f"the cache folder {afile / 'cache'} is not a folder" in proc.stderr
