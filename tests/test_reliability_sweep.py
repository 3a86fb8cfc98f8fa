"""Nothing the user owns is lost, and every fault is one clear line: the sweep side of issue 16.

Real sweeps (``python -m study.run`` in a subprocess, on ../shared data, tiny cells): Ctrl-C and SIGTERM with 1 and
2 workers, broken image folders built from a few real photos, a dataset whose folder changed under stored results,
and the small ones (no empty store file left by --dry-run or a missing-weights error, a read-only store).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from study.engine.store import ResultsStore
from study.errors import StudyError, unknown_name

REPO = Path(__file__).resolve().parents[1]
PLUGINS = REPO / "tests" / "plugins"
CHEAP = ["--no-similarity", "--no-latency"]


def _env(**extra: str) -> dict[str, str]:
    env = os.environ.copy()
    env["PYTHONPATH"] = os.pathsep.join([str(PLUGINS), str(REPO), env.get("PYTHONPATH", "")])
    env.update(extra)
    return env


def study_run(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "study.run", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env=env or _env())  # fmt: skip


def _clean(stderr: str) -> None:
    assert "Traceback" not in stderr, stderr[-3000:]
    assert "leaked semaphore" not in stderr, stderr[-3000:]


# ------------------------------------------------------------------------------------------- SIGINT / SIGTERM


def _as_in_a_terminal() -> None:
    """The sweep gets SIGINT/SIGTERM as a terminal's foreground job does, even when the test runner itself was
    started in the background (where SIGINT is ignored and, rightly, stays ignored in the children)."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)


def _interrupt(args: list[str], env: dict[str, str], sig: int, store_path: Path, pause_dir: Path,
               need_complete: int) -> tuple[subprocess.CompletedProcess, list[dict]]:
    """Start the sweep, wait until a cell is in flight (and ``need_complete`` rows are complete), send ``sig``."""
    proc = subprocess.Popen([sys.executable, "-m", "study.run", *args], cwd=REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=_as_in_a_terminal)  # fmt: skip
    deadline, store = time.time() + 240, None
    try:
        while time.time() < deadline and proc.poll() is None:
            time.sleep(0.3)
            if (pause_dir / "paused").exists() and store_path.exists():
                store = store or ResultsStore(f"sqlite:///{store_path}")
                if store.status_counts()["complete"] >= need_complete:
                    break
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=180)
    finally:
        proc.kill()
    assert store is not None, err[-3000:]
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err), store.rows()


@pytest.mark.parametrize("workers", [1, 2])
def test_ctrl_c_and_sigterm_lose_no_cell_and_train_none_twice(tmp_path, datapack, workers):
    """SIGINT, then SIGTERM on the rerun: each time the cell in flight goes back to pending, one line, exit 130;
    the third run of the same command completes the table, every cell completed exactly once."""
    db = tmp_path / "i.db"
    args = ["--grid", "smoke", "--datasets", "retinamnist", "--strategies", "linear_probe,pause_once",
            "--sizes", "30,40", "--plugin", "pause_once", "--workers", str(workers), "--store", f"sqlite:///{db}",
            "--log-dir", str(tmp_path / "logs"), *CHEAP]  # fmt: skip
    completed: dict[str, dict] = {}
    paused = "retinamnist[n=30]/pause_once/mobilenet_v2/s32/e=2/t=1/seed=0"  # the first pause_once cell of the list
    for run, (sig, need) in enumerate([(signal.SIGINT, 1), (signal.SIGTERM, 0)]):
        pause_dir = tmp_path / f"pause{run}"  # pause_once pauses once per folder: once per run here
        pause_dir.mkdir()
        proc, rows = _interrupt(args, _env(STUDY_TEST_PAUSE_DIR=str(pause_dir)), sig, db, pause_dir, need)
        assert proc.returncode == 130, proc.stderr[-3000:]
        _clean(proc.stderr)
        now = {r["cell_key"]: r for r in rows if r["status"] == "complete"}
        done = len(now) - len(completed)
        last = proc.stderr.strip().splitlines()[-1]
        assert last == f"interrupted: {done} cells done, rerun the same command to go on", proc.stderr[-2000:]
        assert "finished in" not in proc.stdout
        assert all(r["status"] != "failed" for r in rows), rows  # an interruption is not a failure
        pending = {r["cell_key"]: r for r in rows if r["status"] == "running"}  # one per worker at most
        assert paused in pending and len(pending) <= workers, pending
        assert all(r["heartbeat_at"] is None for r in pending.values()), pending  # released: claimable at once
        for key, row in completed.items():  # what an earlier run completed, no later run touched
            assert now[key]["finished_at"] == row["finished_at"] and now[key]["attempts"] == 1
        completed = now

    (tmp_path / "pause2").mkdir()
    (tmp_path / "pause2" / "paused").write_text("")  # no pause on the last run
    again = study_run(*args, env=_env(STUDY_TEST_PAUSE_DIR=str(tmp_path / "pause2")))
    assert again.returncode == 0, again.stderr[-3000:]
    _clean(again.stderr)
    assert f"{len(completed)} already complete" in again.stdout
    rows = {r["cell_key"]: r for r in ResultsStore(f"sqlite:///{db}").rows()}
    assert len(rows) == 4 and all(r["status"] == "complete" for r in rows.values()), rows
    for key, row in completed.items():
        assert rows[key]["finished_at"] == row["finished_at"] and rows[key]["attempts"] == 1
    assert rows[paused]["attempts"] == 3  # claimed by each run, released twice, completed by the last one only


# ------------------------------------------------------------------------------------------------ image folders

PHOTOS = ("cats_and_dogs_filtered", "train")


def _photos(datapack: Path, root: Path, per_class: int, offset: int = 0, classes: tuple[str, ...] = ("cats", "dogs")):
    """``root/<class>/`` with ``per_class`` real JPEGs each, copied from the data pack (never committed)."""
    src = datapack.joinpath(*PHOTOS)
    for cls in classes:
        (root / cls).mkdir(parents=True, exist_ok=True)
        for f in sorted((src / cls).iterdir())[offset : offset + per_class]:
            shutil.copy(f, root / cls / f.name)
    return root


def _truncated(datapack: Path, path: Path, keep: float = 0.3) -> None:
    data = datapack.joinpath(*PHOTOS, "dogs", "dog.100.jpg").read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


@pytest.fixture
def folder(tmp_path):
    """Register ``tmp_path/<name>`` as a user folder for one test, then forget it."""
    from study.data.datasets import DATASETS, register_image_folder

    names: list[str] = []

    def register(root: Path) -> str:
        name = f"t_{root.name}"
        register_image_folder(name, root, "natural")
        names.append(name)
        return name

    yield register
    for name in names:
        DATASETS.unregister(name)


def _faults(datapack: Path, root: Path, kind: str) -> None:
    """Each fault a user's folder can have, built from real photos."""
    root.mkdir()
    if kind == "one class":
        _photos(datapack, root, 12, classes=("cats",))
    elif kind == "no class folders":
        for f in sorted(datapack.joinpath(*PHOTOS, "cats").iterdir())[:6]:
            shutil.copy(f, root / f.name)
    elif kind == "only non-images":
        for cls in ("cats", "dogs"):
            (root / cls).mkdir()
            (root / cls / "notes.txt").write_text("not a photo")
    elif kind == "many unreadable":
        _photos(datapack, root, 12)
        for i in range(3):
            (root / "cats" / f"empty{i}.jpg").write_bytes(b"")
            _truncated(datapack, root / "dogs" / f"cut{i}.jpg")
    elif kind == "empty class":
        _photos(datapack, root, 12, classes=("cats",))
        (root / "dogs").mkdir()
    elif kind == "class too small":
        _photos(datapack, root, 12, classes=("cats",))
        _photos(datapack, root, 2, classes=("dogs",))
    elif kind == "fewer than the size":
        _photos(datapack, root, 12)


@pytest.mark.parametrize(
    "kind, size, message",
    [
        ("empty", 10, "has no class sub-folders; put each class's images in its own sub-folder"),
        ("no class folders", 10, "has images but no class sub-folders"),
        ("one class", 10, "has one class folder (cats); a classifier needs at least two"),
        ("only non-images", 10, "notes.txt is not an image (extension .txt); move it out of the class folder"),
        ("empty class", 10, "dogs has no images; add some or remove it"),
        ("many unreadable", 10, "6 of 30 images in"),
        ("class too small", 10, "fewer than 2 images to train from after the test split: dogs (1)"),
        ("fewer than the size", 30, "fewer than the requested size 30; add images or request sizes up to 19"),
    ],
)
def test_a_broken_folder_is_one_line_before_anything_trains(tmp_path, datapack, folder, kind, size, message):
    from study.data.checks import check_folders

    root = tmp_path / kind.replace(" ", "_")
    if kind == "empty":
        root.mkdir()
    else:
        _faults(datapack, root, kind)
    name = folder(root)
    with pytest.raises(StudyError) as err:
        check_folders({(name, 32): {size}}, [], tmp_path / "cache")
    text = str(err.value)
    assert message in text and "\n" not in text, text
    if kind == "many unreadable":  # the first few files are named, and the policy is stated
        assert "cats/empty0.jpg" in text and "up to 5 unreadable images" in text


def test_a_handful_of_unreadable_images_is_skipped_with_a_count(tmp_path, datapack, folder):
    from study.data.checks import check_folders
    from study.data.loaders import load_dataset

    root = _photos(datapack, tmp_path / "mostly_fine", 12)
    (root / "cats" / "zero.jpg").write_bytes(b"")
    _truncated(datapack, root / "dogs" / "cut.jpg")
    name = folder(root)
    warnings = check_folders({(name, 32): {10}}, [], tmp_path / "cache")
    assert warnings == [f"dataset {name!r}: 2 unreadable images skipped (cats/zero.jpg, dogs/cut.jpg); delete or "
                        "replace them to use them"]  # fmt: skip
    for _ in range(2):  # decoded, then from the decoded cache: the same images, the same skips
        ds = load_dataset(name, 32, [], tmp_path / "cache")
        assert len(ds.pool) + len(ds.test) == 24 and ds.skipped == ("cats/zero.jpg", "dogs/cut.jpg")
        assert not any(i.endswith(("zero.jpg", "cut.jpg")) for i in ds.pool.ids + ds.test.ids)


def _grid_file(tmp_path: Path, folders: dict[str, str], name: str = "mine") -> Path:
    text = "".join(f'[datasets.{n}]\npath = "{p}"\ndomain = "natural"\n\n' for n, p in folders.items())
    text += (f"[grids.{name}]\ndatasets = {list(folders)!r}\nsizes = [16]\nstrategies = [\"linear_probe\"]\n"
             'backbones = ["mobilenet_v2"]\nseeds = [0]\nimage_size = 32\nepochs = 2\nmax_test = 50\n')  # fmt: skip
    path = tmp_path / "grids.toml"
    path.write_text(text.replace("'", '"'))
    return path


def test_a_fixed_folder_runs_and_failed_cells_say_how_to_retry(tmp_path, datapack):
    """Too many unreadable images: refused before training, no store; fixed: the rerun trains. A cell that failed
    in an earlier run (as before these checks) is named in one line with --retry-failed, which reruns it."""
    root = _photos(datapack, tmp_path / "photos", 12)
    for i in range(4):
        _truncated(datapack, root / "dogs" / f"cut{i}.jpg")
    db = tmp_path / "f.db"
    args = ["--grid", "mine", "--grid-file", str(_grid_file(tmp_path, {"mine": "photos"})), "--store",
            f"sqlite:///{db}", "--log-dir", str(tmp_path / "logs"), *CHEAP]  # fmt: skip
    proc = study_run(*args)
    assert proc.returncode == 2 and not db.exists() and not (tmp_path / "logs").exists()
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: dataset 'mine': 4 of 28 images in"), proc.stderr
    assert "dogs/cut0.jpg" in lines[0]

    from study.engine.grid import expand, get_grid

    cell = expand(get_grid("mine", tmp_path / "grids.toml"))[0][0]
    store = ResultsStore(f"sqlite:///{db}")  # what an earlier version left: the cell failed on the broken folder
    store.claim({**cell.store_fields(), "cell_key": cell.key})
    store.fail(cell.key, f"StudyError: cannot read image {root / 'dogs' / 'cut0.jpg'}: image file is truncated")
    for f in (root / "dogs").glob("cut*.jpg"):
        f.unlink()
    again = study_run(*args)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"note: 1 cells failed in an earlier run and are skipped (first: {cell.key}: StudyError: cannot read " \
           "image" in again.stdout and "add --retry-failed to rerun them" in again.stdout  # fmt: skip
    retry = study_run(*args, "--retry-failed")
    assert retry.returncode == 0 and "1 complete" in retry.stdout, retry.stderr[-2000:]
    row = store.rows()[0]
    assert row["status"] == "complete" and row["attempts"] == 2


# ------------------------------------------------------------------------------------------------- stale data


def test_a_dataset_whose_data_changed_is_refused_and_a_new_name_keeps_both(tmp_path, datapack):
    """Same name, other folder: one line, nothing trained; registered under a new name beside the old: both kept."""
    _photos(datapack, tmp_path / "a", 12)
    _photos(datapack, tmp_path / "b", 12, offset=100)
    db = tmp_path / "s.db"
    common = ["--store", f"sqlite:///{db}", "--log-dir", str(tmp_path / "logs"), *CHEAP]
    first = study_run("--grid", "mine", "--grid-file", str(_grid_file(tmp_path, {"mine": "a"})), *common)
    assert first.returncode == 0, first.stderr[-2000:]
    before = ResultsStore(f"sqlite:///{db}").rows()
    assert [r["status"] for r in before] == ["complete"]

    moved = study_run("--grid", "mine", "--grid-file", str(_grid_file(tmp_path, {"mine": "b"})), *common)
    assert moved.returncode == 2, moved.stdout + moved.stderr
    lines = moved.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: dataset 'mine' is not the data that 1 complete cells"), lines
    assert "register the new data under another name" in lines[0] and "another --store" in lines[0]
    assert ResultsStore(f"sqlite:///{db}").rows() == before  # nothing claimed, nothing trained

    both = _grid_file(tmp_path, {"mine": "a", "mine_b": "b"})
    kept = study_run("--grid", "mine", "--grid-file", str(both), *common)
    assert kept.returncode == 0, kept.stderr[-2000:]
    assert "1 already complete" in kept.stdout  # the unchanged folder's result still counts
    rows = {r["dataset"]: r for r in ResultsStore(f"sqlite:///{db}").rows()}
    assert set(rows) == {"mine", "mine_b"} and all(r["status"] == "complete" for r in rows.values())
    assert rows["mine"]["provenance"]["data_checksum"] != rows["mine_b"]["provenance"]["data_checksum"]


def test_built_in_cell_keys_carry_no_fingerprint():
    """The committed reference store's keys stay valid: the fingerprint is compared, never put into a key."""
    from study.engine.grid import expand, get_grid

    cell = expand(get_grid("smoke"))[0][0]
    assert cell.key == "retinamnist[n=40]/scratch/mobilenet_v2/s32/e=2/t=1/seed=0"


# ------------------------------------------------------------------------------------------------- small ones


def test_dry_run_and_a_missing_weights_error_leave_no_store_file(tmp_path):
    db = tmp_path / "none.db"
    dry = study_run("--grid", "smoke", "--dry-run", "--store", f"sqlite:///{db}", timeout=120)
    assert dry.returncode == 0 and "8 cells (0 already complete" in dry.stdout, dry.stderr[-2000:]
    from study.zoo.backbones import get_backbone

    models = tmp_path / "keras" / "models"
    models.mkdir(parents=True)
    (models / get_backbone("vgg16").weights_file).write_bytes(b"not the weights")  # md5 differs: offline and online
    bad = study_run("--grid", "smoke", "--datasets", "retinamnist", "--strategies", "linear_probe", "--backbones",
                    "vgg16", "--store",
                    f"sqlite:///{db}", "--log-dir", str(tmp_path / "logs"), *CHEAP,
                    env=_env(KERAS_HOME=str(tmp_path / "keras")), timeout=120)  # fmt: skip
    assert bad.returncode == 2 and "is corrupt" in bad.stderr, bad.stderr[-2000:]
    assert len(bad.stderr.strip().splitlines()) == 1
    assert not db.exists() and not (tmp_path / "logs").exists()


def test_a_read_only_store_says_so(tmp_path):
    db = tmp_path / "ro.db"
    ResultsStore(f"sqlite:///{db}").close()
    read_only = f"sqlite:///file:{db}?mode=ro&uri=true"
    with pytest.raises(StudyError, match=r"^the store .* is read-only \(attempt to write a readonly database\); "
                                         "make the file and its folder writable"):  # fmt: skip
        ResultsStore(read_only).check_writable()
    proc = study_run("--grid", "smoke", "--datasets", "retinamnist", "--strategies", "linear_probe", "--store",
                     read_only, "--log-dir", str(tmp_path / "logs"), *CHEAP, timeout=120)  # fmt: skip
    assert proc.returncode == 2 and "if it is busy" not in proc.stderr, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: the store sqlite:///") and "is read-only" in lines[0]
    assert not (tmp_path / "logs").exists()


def test_unknown_names_are_pluralised():
    assert "known strategies: a, b" in str(unknown_name("strategy", "x", ["b", "a"]))
    assert "known grids: g" in str(unknown_name("grid", "x", ["g"]))
    from study.train.strategies import get_strategy

    with pytest.raises(StudyError, match="unknown strategy 'magic'; known strategies: .*linear_probe"):
        get_strategy("magic")
