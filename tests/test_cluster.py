"""Beyond one process: local workers, a local Ray cluster, and concurrent sweeps on a real PostgreSQL server."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from study.engine.executors import RunnerConfig, run_local, run_ray
from study.engine.grid import Cell, expand, get_grid
from study.engine.store import ResultsStore

REPO = Path(__file__).resolve().parents[1]
PLUGINS = REPO / "tests" / "plugins"
CACHED = ("feature_extraction", "linear_probe")


def _rows(url: str):
    return ResultsStore(url).to_frame().set_index("cell_key").sort_index()


def _cheap_cells(sizes=(30, 40, 50, 60)) -> list[Cell]:
    grid = get_grid("smoke").with_overrides(datasets=["retinamnist"], strategies=list(CACHED), sizes=list(sizes))
    return expand(grid)[0]


def _config(url: str, **kw) -> RunnerConfig:
    env = os.environ
    return RunnerConfig(store_url=url, cache_dir=env["TRANSFER_STUDY_CACHE"], data_dirs=(env["TRANSFER_STUDY_DATA"],),
                        keras_home=env["KERAS_HOME"], measure_latency=False, **kw)  # fmt: skip


def test_two_local_workers_run_each_cell_once(tmp_path, datapack):
    url = f"sqlite:///{tmp_path / 'w.db'}"
    cells = _cheap_cells()
    summary = run_local(cells, _config(url), workers=2, progress=False)
    assert summary.complete == len(cells) and summary.failed == 0
    frame = _rows(url)
    assert len(frame) == len(cells) and (frame["status"] == "complete").all() and (frame["attempts"] == 1).all()
    assert frame["worker"].nunique() == 2  # both workers did work


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    import ray

    die_dir = tmp_path_factory.mktemp("die")
    os.environ["STUDY_TEST_DIE_DIR"] = str(die_dir)
    os.environ["PYTHONPATH"] = os.pathsep.join([str(PLUGINS), str(REPO), os.environ.get("PYTHONPATH", "")])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield die_dir
    ray.shutdown()


def test_ray_runs_the_smoke_grid_with_the_same_rows_as_the_local_executor(ray_cluster, smoke_store, tmp_path):
    local_url = smoke_store[0]
    url = f"sqlite:///{tmp_path / 'ray.db'}"
    cells, _ = expand(get_grid("smoke"))
    summary = run_ray(cells, _config(url), progress=False)
    assert summary.complete == len(cells), summary.failures
    ray_rows, local_rows = _rows(url), _rows(local_url)
    assert list(ray_rows.index) == list(local_rows.index)
    assert (ray_rows["status"] == "complete").all()
    cached = ray_rows["strategy"].isin(CACHED)
    # frozen features + deterministic heads: the same models whichever executor ran them
    diff = (ray_rows.loc[cached, "accuracy"] - local_rows.loc[cached, "accuracy"]).abs()
    assert diff.max() <= 0.02, diff
    assert ray_rows["worker"].str.split(":").str[1].nunique() >= 1


def test_a_ray_worker_killed_mid_cell_is_retried(ray_cluster, tmp_path, datapack):
    url = f"sqlite:///{tmp_path / 'die.db'}"
    cell = Cell(dataset="retinamnist", n_images=40, strategy="die_once", backbone="mobilenet_v2", image_size=32,
                seed=0, epochs=2, trials=1, augment=False, max_test=100, grid="test", retries=0)
    summary = run_ray([cell], _config(url, plugins=("die_once",)), max_retries=2, progress=False)
    assert summary.complete == 1, summary.failures
    row = _rows(url).iloc[0]
    assert row["status"] == "complete" and row["attempts"] == 2  # the dead worker's claim was taken over
    assert list(ray_cluster.glob("died-retinamnist-*"))  # the first attempt did die


def test_a_ray_task_failing_outside_its_cell_names_the_cell_and_the_cause(ray_cluster, tmp_path, datapack):
    url = f"sqlite:///{tmp_path / 'bad.db'}"
    cells = _cheap_cells(sizes=(30,))
    summary = run_ray(cells, _config(url, plugins=("no_such_plugin_module",)), max_retries=0, progress=False)
    assert summary.failed == len(cells) and summary.complete == 0
    assert sorted(key for key, _ in summary.failures) == sorted(c.key for c in cells)  # not '?'
    for _, message in summary.failures:
        assert message.startswith("StudyError: plugin 'no_such_plugin_module' cannot be imported"), message


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    return str(candidates[-1]) if candidates else None


@pytest.fixture(scope="module")
def postgres_url():
    """A throwaway PostgreSQL server on a loopback port (Debian's package; .ci/run installs it if missing)."""
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not (initdb and pg_ctl):
        pytest.fail("PostgreSQL server binaries (initdb, pg_ctl) not found; install Debian's postgresql package")
    root = Path(tempfile.mkdtemp(prefix="study-pg-", dir="/tmp"))
    root.chmod(0o777)
    data, sock = root / "data", root
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    subprocess.run([*as_user, initdb, "-D", str(data), "-A", "trust", "-U", "study"], check=True, capture_output=True)
    opts = f"-p {port} -k {sock} -c listen_addresses=127.0.0.1"
    subprocess.run([*as_user, pg_ctl, "-D", str(data), "-o", opts, "-l", str(root / "log"), "-w", "start"],
                   check=True, capture_output=True)  # fmt: skip
    try:
        import sqlalchemy as sa

        admin = sa.create_engine(f"postgresql+psycopg://study@127.0.0.1:{port}/postgres", isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text("CREATE DATABASE results"))
        admin.dispose()
        yield f"postgresql+psycopg://study@127.0.0.1:{port}/results"
    finally:
        subprocess.run([*as_user, pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def test_two_concurrent_sweeps_on_postgresql_run_each_cell_exactly_once(postgres_url, tmp_path, datapack):
    args = [sys.executable, "-m", "study.run", "--grid", "smoke", "--datasets", "retinamnist", "--strategies",
            ",".join(CACHED), "--sizes", "30,40,50,60,70,80", "--trials", "2", "--store", postgres_url,
            "--no-latency", "--no-similarity", "--log-dir", str(tmp_path)]  # fmt: skip
    procs = [subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]  # fmt: skip
    outs = [p.communicate(timeout=900) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, out[-3000:] + err[-2000:]
    frame = _rows(postgres_url)
    assert len(frame) == 12 and frame.index.is_unique
    assert (frame["status"] == "complete").all() and (frame["attempts"] == 1).all()
    completed = [int(out.split("finished in")[1].split(":")[1].split("complete")[0]) for out, _ in outs]
    assert sum(completed) == 12  # every cell trained by exactly one of the two sweeps
    import optuna

    studies = optuna.get_all_study_summaries(storage=postgres_url)
    assert len(studies) == 12 and all(s.n_trials == 2 for s in studies)  # the searches live in the same database


def test_unreachable_ray_address_is_a_clear_error(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "study.run", "--grid", "smoke", "--executor", "ray", "--address", "ray://127.0.0.1:1",
         "--store", f"sqlite:///{tmp_path / 'x.db'}", "--no-similarity", "--log-dir", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 2 and "cannot connect to Ray" in proc.stderr, proc.stderr[-2000:]
