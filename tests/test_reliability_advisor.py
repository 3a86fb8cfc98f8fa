"""Issue 16, advisor side: nothing the user owns is ever lost, and every fault is one clear line, early.

Folders are real: a few cats_and_dogs_filtered JPEGs copied into ``tmp_path`` (never committed). One tiny real
``advisor train`` run (linear probe, MobileNetV2, 32 px, 12 images per class) is shared by the module for the
tests that need a model folder. Every refusal is checked to leave every file exactly as it was.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_advisor as run_cli

from advisor.cli import PREDICT_PARTIAL, main

REPO = Path(__file__).resolve().parents[1]
NOISE = ("oneDNN custom operations", "Could not find cuda drivers", "cuInit", "absl::InitializeLog",
         "cpu_feature_guard", "This TensorFlow binary is optimized")  # fmt: skip




def one_line_error(code: int, err: str, message: str) -> None:
    assert code == 2, err
    assert message in err and len(err.strip().splitlines()) == 1 and err.startswith("error: "), err


def photos(datapack: Path, root: Path, counts: dict[str, int], part: str = "train") -> Path:
    """``root/<class>/`` with the first ``n`` real JPEGs of each cats_and_dogs_filtered class (copied)."""
    source = datapack / "cats_and_dogs_filtered" / part
    for cls, n in counts.items():
        (root / cls).mkdir(parents=True, exist_ok=True)
        for f in sorted((source / cls).iterdir())[:n]:
            shutil.copy(f, root / cls / f.name)
    return root


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` with its bytes: what "nothing was touched" is compared against."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _can_write(folder: Path) -> bool:
    try:
        (folder / ".probe").write_text("x")
        (folder / ".probe").unlink()
        return True
    except OSError:
        return False


@pytest.fixture
def unwritable(tmp_path) -> Path:
    """A folder this process cannot write in: a 0555 folder, or /sys when running as root (root ignores modes)."""
    folder = tmp_path / "readonly"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        if not _can_write(folder):
            yield folder
            return
        if Path("/sys").is_dir() and not _can_write(Path("/sys")):
            yield Path("/sys")
            return
        pytest.skip("no unwritable folder on this machine (root and a writable /sys)")
    finally:
        folder.chmod(0o755)


@pytest.fixture(scope="module")
def model(tmp_path_factory, datapack, keras_cache) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("reliability")
    data = photos(datapack, tmp / "pets", {"cats": 12, "dogs": 12})
    out = tmp / "models" / "pets"
    code, stdout, stderr = run_cli("train", "--data-dir", str(data), "--out", str(out), "--strategy", "linear_probe",
                                   "--backbone", "mobilenet_v2", "--image-size", "32", "--trials", "1", "--epochs",
                                   "1", "--no-gap")  # fmt: skip
    assert code == 0, stderr[-3000:]
    return {"out": out, "data": data, "tmp": tmp}


# ------------------------------------------------------------------------------------------ 1. no data loss


def test_out_at_above_or_inside_the_data_is_refused_and_nothing_moves(tmp_path, datapack, monkeypatch):
    home = tmp_path / "home"
    data = photos(datapack, home / "photos", {"cats": 4, "dogs": 4})
    (home / "notes.txt").write_text("my notes")
    (tmp_path / "link").symlink_to(data)
    before = snapshot(tmp_path)
    cases = [
        (str(data), "is --data-dir"),
        (str(tmp_path / "link"), "is --data-dir"),  # through a symlink
        (str(home), "is a folder above --data-dir"),
        (str(data / "cats" / "model"), "is inside --data-dir"),
    ]
    for out, message in cases:
        for force in ([], ["--force"]):
            code, _, err = run_cli("train", "--data-dir", str(data), "--out", out, *force)
            one_line_error(code, err, message)
            assert snapshot(tmp_path) == before
    monkeypatch.chdir(home)  # `cd home && advisor train --data-dir photos --out . --force`
    code, _, err = run_cli("train", "--data-dir", "photos", "--out", ".", "--force")
    one_line_error(code, err, "is a folder above --data-dir")
    assert snapshot(tmp_path) == before and not (data / "cats" / "model").exists()


def test_force_never_replaces_a_folder_the_tool_did_not_write(tmp_path, datapack, monkeypatch):
    data = photos(datapack, tmp_path / "photos", {"cats": 4, "dogs": 4})
    work = tmp_path / "work"  # `cd work && advisor train --data-dir ../photos --out . --force`
    work.mkdir()
    (work / "thesis.tex").write_text("years of work")
    (work / "src").mkdir()
    (work / "src" / "main.py").write_text("print('hi')")
    lookalike = tmp_path / "lookalike"  # labels.json + metrics.json but no marker, and a file of the user's
    lookalike.mkdir()
    for name in ("labels.json", "metrics.json", "model.keras"):
        (lookalike / name).write_text("{}")
    stuffed = tmp_path / "stuffed"  # a real marker, plus a file the tool never writes
    stuffed.mkdir()
    for name in ("labels.json", "metrics.json", "advisor-model.json", "diary.txt"):
        (stuffed / name).write_text("{}")
    before = snapshot(tmp_path)
    monkeypatch.chdir(work)
    code, _, err = run_cli("train", "--data-dir", str(data), "--out", ".", "--force")
    one_line_error(code, err, "was not written by advisor train (it holds src, thesis.tex)")
    for folder, why in ((lookalike, "it lacks advisor-model.json"), (stuffed, "it holds diary.txt")):
        code, _, err = run_cli("train", "--data-dir", str(data), "--out", str(folder), "--force")
        one_line_error(code, err, f"was not written by advisor train ({why}); --force only replaces a model folder")
    assert snapshot(tmp_path) == before


def test_force_replaces_only_a_model_folder_advisor_train_wrote(model, tmp_path):
    from advisor.deploy import MARKER, _check_out, _replace_folder, is_model_folder

    out, data = model["out"], model["data"].resolve()
    marker = json.loads((out / MARKER).read_text())
    assert marker["written_by"] == "advisor train" and set(marker["files"]) == {
        p.name for p in out.iterdir() if p.name != MARKER}  # fmt: skip
    assert is_model_folder(out)
    _check_out(out, data, force=True)  # allowed: the tool's own folder

    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    (copy / "mine.txt").write_text("a file of the user's")
    assert not is_model_folder(copy)
    code, _, err = run_cli("train", "--data-dir", str(data), "--out", str(copy), "--force")
    one_line_error(code, err, "(it holds mine.txt)")

    # the replacement re-checks at the end: a user file put into the folder during training stops it
    tmp = tmp_path / ".copy.tmp-1"
    tmp.mkdir()
    (tmp / "labels.json").write_text("{}")
    with pytest.raises(Exception, match="changed while the model trained"):
        _replace_folder(tmp, copy)
    assert (copy / "mine.txt").read_text() == "a file of the user's"
    (copy / "mine.txt").unlink()
    _replace_folder(tmp, copy)
    assert [p.name for p in copy.iterdir()] == ["labels.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy"]


# --------------------------------------------------------------------------------- 5, 6. checked before training


def test_unwritable_out_and_cache_are_one_line_before_training(tmp_path, datapack, unwritable, monkeypatch):
    import advisor.traits as traits

    def no_measuring(*_a, **_k):
        raise AssertionError("measured the folder before checking where to write")

    data = photos(datapack, tmp_path / "photos", {"cats": 4, "dogs": 4})
    with monkeypatch.context() as mp:
        mp.setattr(traits, "measure", no_measuring)
        code, _, err = run_cli("train", "--data-dir", str(data), "--out", str(unwritable / "model"))
    one_line_error(code, err, f"--out {unwritable / 'model'}: its folder {unwritable} is not writable")
    assert "pass a folder you can write to" in err

    monkeypatch.setenv("TRANSFER_STUDY_CACHE", str(unwritable / "cache"))
    for argv in (["train", "--out", str(tmp_path / "model")], ["recommend"]):
        code, _, err = run_cli(*argv, "--data-dir", str(data))
        one_line_error(code, err, f"the cache folder {unwritable / 'cache'} is not writable ({unwritable}: ")
        assert "set TRANSFER_STUDY_CACHE to a folder you can write to" in err
    assert not (tmp_path / "model").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--seed=-1"], "--seed must be an integer between 0 and 4294967295, got -1"),
        (["--seed", str(2**40)], "--seed must be an integer between 0 and 4294967295"),
        (["--image-size", "2000"], "--image-size must be an integer between 8 and 1024, got 2000"),
        (["--image-size", "4"], "--image-size must be an integer between 8 and 1024, got 4"),
        (["--trials", "0"], "--trials must be an integer of at least 1, got 0"),
    ],
)
def test_bad_numbers_name_the_allowed_range(tmp_path, datapack, argv, message):
    data = photos(datapack, tmp_path / "photos", {"cats": 4, "dogs": 4})
    code, _, err = run_cli("train", "--data-dir", str(data), "--out", str(tmp_path / "model"), *argv)
    one_line_error(code, err, message)
    assert not (tmp_path / "model").exists()


def test_folders_too_small_or_misshapen_fail_before_the_gap(tmp_path, datapack, monkeypatch):
    """One line naming the real problem, before the (slow) domain-gap measurement or any training."""
    import advisor.traits as traits

    def no_gap(*_a, **_k):
        raise AssertionError("the slow gap measurement ran before the folder was checked")

    monkeypatch.setattr(traits, "_gap", no_gap)
    one_class = photos(datapack, tmp_path / "one_class", {"cats": 10})
    lonely = photos(datapack, tmp_path / "lonely", {"cats": 10, "dogs": 1})
    two = photos(datapack, tmp_path / "two", {"cats": 1, "dogs": 1})
    train_only = photos(datapack, tmp_path / "train_only" / "train", {"cats": 5, "dogs": 5}).parent
    thin_train = photos(datapack, tmp_path / "thin" / "train", {"cats": 5, "dogs": 1}).parent
    photos(datapack, thin_train / "test", {"cats": 2, "dogs": 2}, part="validation")
    cases = [
        (one_class, "has only one class (cats/); put one sub-folder of images per class in it"),
        (
            lonely,
            "has too few images: class 'dogs' has 1 image; each class needs at least 3 (one to train, one to "
            "validate, one to test)",
        ),  # fmt: skip
        (two, "has too few images: class 'cats' has 1 image"),
        (train_only, "has train/ but no test/ beside it; use either train/<class>/ plus test/<class>/"),
        (thin_train, "class 'dogs' has 1 in train/; each class needs 2 there"),
    ]
    for folder, message in cases:
        for argv in (["recommend", "--data-dir", str(folder)],
                     ["train", "--data-dir", str(folder), "--out", str(tmp_path / "model")]):  # fmt: skip
            code, _, err = run_cli(*argv)
            assert code == 2, err
            lines = [line for line in err.strip().splitlines() if not line.startswith("note: ")]
            assert len(lines) == 1 and message in lines[0] and lines[0].count("--data-dir") == 1, (argv, err)
            assert "--n-classes" not in err and "--n-images" not in err
    assert not (tmp_path / "model").exists()


# -------------------------------------------------------------------------------------------- 9, 10. predict


def test_predict_reads_the_good_images_and_names_each_bad_one(model, tmp_path, datapack):
    good = sorted((datapack / "cats_and_dogs_filtered" / "validation" / "dogs").iterdir())[0]
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(good.read_bytes()[:200])
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    code, out, err = run_cli("predict", "--model", str(model["out"]), str(good), str(truncated), str(empty),
                             str(tmp_path / "missing.jpg"))  # fmt: skip
    assert code == PREDICT_PARTIAL == 1, err
    (line,) = out.strip().splitlines()
    assert line.startswith(f"{good}: ") and line.split()[1] in ("cats", "dogs")
    errors = err.strip().splitlines()
    assert len(errors) == 3 and all(e.startswith("error: ") for e in errors), err
    assert f"cannot read image {truncated}" in errors[1] and f"cannot read image {empty}" in errors[2]
    assert f"image {tmp_path / 'missing.jpg'} does not exist" in errors[0]

    code, out, err = run_cli("predict", "--model", str(model["out"]), "--json", str(good), str(empty))
    assert code == 1 and [r["image"] for r in json.loads(out)] == [str(good)] and err.count("\n") == 1

    code, out, err = run_cli("predict", "--model", str(model["out"]), str(empty))  # nothing readable: usage error
    one_line_error(code, err, f"cannot read image {empty}")
    assert out == ""

    code, out, _ = run_cli("predict", "--help")
    assert code == 0 and "Exit status: 0 every image predicted; 1 some images could not be read" in " ".join(
        out.split())  # fmt: skip


def test_predict_on_a_folder_predicts_every_image_in_it(model, tmp_path):
    folder = model["data"]
    expected = sorted(str(p) for p in folder.rglob("*.jpg"))
    code, out, err = run_cli("predict", "--model", str(model["out"]), str(folder))
    assert code == 0, err
    assert sorted(line.rsplit(": ", 1)[0] for line in out.strip().splitlines()) == expected
    empty = tmp_path / "nothing"
    empty.mkdir()
    code, out, err = run_cli("predict", "--model", str(model["out"]), str(empty))
    one_line_error(code, err, f"folder {empty} holds no images")


# ------------------------------------------------------------------------------------------------- 11. small ones


def test_model_folder_has_ordinary_permissions(model):
    mask = os.umask(0)
    os.umask(mask)
    out = model["out"]
    assert stat.S_IMODE(out.stat().st_mode) == 0o777 & ~mask
    for f in out.iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o666 & ~mask, f
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temporary folder left behind


def test_val_beside_train_and_test_joins_the_training_pool(tmp_path, datapack):
    from study import config
    from study.data import catalog
    from study.data.datasets import register_image_folder, unregister_dataset

    root = tmp_path / "split"
    photos(datapack, root / "train", {"cats": 4, "dogs": 4})
    photos(datapack, root / "test", {"cats": 2, "dogs": 2}, part="validation")
    (root / "val").mkdir()
    for cls in ("cats", "dogs"):  # other images than test/'s
        (root / "val" / cls).mkdir()
        for f in sorted((datapack / "cats_and_dogs_filtered" / "validation" / cls).iterdir())[5:8]:
            shutil.copy(f, root / "val" / cls / f.name)
    spec = register_image_folder("user_val_test", root, "natural")
    try:
        assert spec.pool_parts == ("train", "val") and spec.test_part == "test"
        ds = catalog.load("user_val_test", 32, config.data_dirs(), config.cache_dir(), allow_download=False)
        assert (len(ds.pool), len(ds.test)) == (8 + 6, 4)
    finally:
        unregister_dataset("user_val_test")
    without_test = tmp_path / "tv"
    photos(datapack, without_test / "train", {"cats": 3, "dogs": 3})
    photos(datapack, without_test / "val", {"cats": 2, "dogs": 2}, part="validation")
    spec = register_image_folder("user_tv", without_test, "natural")
    unregister_dataset("user_tv")
    assert spec.pool_parts == ("train",) and spec.test_part == "val"  # unchanged: val/ is the held-out part


def test_report_on_a_store_whose_cells_all_failed_points_at_retry_failed(tmp_path, capsys):
    from reports.build import main as build
    from study.engine.store import ResultsStore, make_cell_key

    url = f"sqlite:///{tmp_path / 'study.db'}"
    cells = [
        {
            "grid": "test",
            "dataset": "cats_and_dogs_filtered",
            "domain": "natural",
            "n_images": 40,
            "strategy": "linear_probe",
            "backbone": "mobilenet_v2",
            "image_size": 32,
            "seed": s,
        }
        for s in (0, 1)
    ]
    with ResultsStore(url) as store:
        for c in cells:
            assert store.claim(c)
            store.fail(make_cell_key(c), "Traceback (most recent call last):\n  ...\nStudyError: cannot read image x")
    code = build(["--store", url, "--out", str(tmp_path / "report.html")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "no complete rows: all 2 of its cells failed (first error: StudyError: cannot read image x)" in err
    assert "--retry-failed" in err and "run python -m study.run first" not in err
    assert not (tmp_path / "report.html").exists()


# ------------------------------------------------------------------------------------------- quiet command lines


def _env_without_tf_settings() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "TRANSFER_STUDY_QUIET_TF")}


def test_cli_prints_no_tensorflow_noise_unless_verbose(model, datapack):
    image = sorted((datapack / "cats_and_dogs_filtered" / "validation" / "cats").iterdir())[0]
    argv = [sys.executable, "-m", "advisor", "predict", "--model", str(model["out"]), str(image)]
    quiet = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, env=_env_without_tf_settings(),
                           timeout=300)  # fmt: skip
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stdout.startswith(f"{image}: ")
    assert not [n for n in NOISE if n in quiet.stderr], quiet.stderr
    assert quiet.stderr == ""
    loud = subprocess.run([*argv, "-v"], cwd=REPO, capture_output=True, text=True, env=_env_without_tf_settings(),
                          timeout=300)  # fmt: skip
    assert loud.returncode == 0 and loud.stdout == quiet.stdout, loud.stderr


def test_every_cli_takes_verbose(capsys, monkeypatch):
    from reports.build import main as report_main
    from study.analysis.export import main as export_main
    from study.analysis.tables import main as analysis_main
    from study.run import main as run_main

    for entry in (run_main, report_main, export_main, analysis_main, main):
        with pytest.raises(SystemExit) as done:
            entry(["--help"])
        assert done.value.code == 0
        assert "-v, --verbose" in capsys.readouterr().out, entry
    for name in ("TF_CPP_MIN_LOG_LEVEL", "TRANSFER_STUDY_QUIET_TF"):  # -v changes them: restored after the test
        monkeypatch.setenv(name, os.environ.get(name, ""))
    recommend = ("recommend", "--n-images", "2000", "--domain", "medical")  # any command; this one is cheap
    code, _, _ = run_cli(*recommend, "-v")
    assert code == 0 and os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0"
    code, _, _ = run_cli("-v", *recommend)
    assert code == 0


def test_spawned_workers_of_a_quiet_cli_stay_quiet():
    """``study.run --workers N`` spawns processes: importing ``study`` there re-installs the quiet import."""
    probe = "import sys, study; print(any(type(f).__name__ == '_QuietImport' for f in sys.meta_path))"
    for value, expected in (("1", "True"), (None, "False")):
        env = _env_without_tf_settings() | ({"TRANSFER_STUDY_QUIET_TF": value} if value else {})
        proc = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, env=env)
        assert proc.stdout.strip() == expected, proc.stderr
