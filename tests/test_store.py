"""The results store: claim lifecycle, exactly-once claiming across processes, resume after SIGKILL, export."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import pickle
import re
import signal
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa

from study.analysis import export
from study.engine.store import (
    DATASET_COLUMNS,
    KEY_COLUMNS,
    METRIC_COLUMNS,
    RUN_COLUMNS,
    ResultsStore,
    make_cell_key,
    runs,
)
from study.errors import StudyError

REPO = Path(__file__).resolve().parents[1]
SPAWN = mp.get_context("spawn")  # what Ray and macOS use; also proves the store needs no inherited state


def _cell(seed: int = 1, n: int = 200, **extra: Any) -> dict[str, Any]:
    return {
        "grid": "test",
        "dataset": "cats_and_dogs_filtered",
        "domain": "natural",
        "n_images": n,
        "strategy": "fine_tune_top",
        "backbone": "mobilenet_v2",
        "image_size": 160,
        "seed": seed,
        **extra,
    }


def _result(acc: float = 0.9) -> dict[str, Any]:
    return {
        "accuracy": np.float32(acc),
        "metrics": {"macro_f1": 0.8, "confusion": np.array([[5, 1], [2, 4]])},
        "roc_auc": float("nan"),
        "degenerate": np.bool_(False),
        "trainable_params": np.int64(1281),
        "curves": {"loss": [0.7, 0.5], "val_accuracy": [0.6, 0.8]},
        "params": {"lr": 1e-3, "dropout": 0.2},
        "provenance": {"tensorflow": "2.x", "weights_sha256": "ab12"},
        "dataset": "ignored: the row already has it",
        "n_classes": 2,
    }


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'study.db'}"


@pytest.fixture
def store(url: str) -> ResultsStore:
    with ResultsStore(url) as s:
        yield s


def _age_heartbeats(store: ResultsStore, key: str | None = None) -> None:
    """Pretend the claimer stopped heartbeating long ago."""
    stmt = sa.update(runs).values(heartbeat_at=datetime(2000, 1, 1))
    if key is not None:
        stmt = stmt.where(runs.c.cell_key == key)
    with store.session() as s:
        s.execute(stmt)


# -- lifecycle ------------------------------------------------------------------------------------------------


def test_cell_key_is_readable() -> None:
    assert make_cell_key(_cell()) == "cats_and_dogs_filtered[n=200]/fine_tune_top/mobilenet_v2/s160/seed=1"
    assert make_cell_key(_cell(augment=True, epochs_budget=5, trials_budget=3)).endswith("/aug/e=5/t=3/seed=1")
    store = ResultsStore("sqlite://")
    assert store.claim({**_cell(), "cell_key": "given"})  # claim honours a key the grid supplies
    assert store.rows()[0]["cell_key"] == "given"


def test_claim_complete_lifecycle(store: ResultsStore) -> None:
    key = make_cell_key(_cell())
    assert store.claim(_cell()) is True
    assert store.claim(_cell()) is False  # running, fresh heartbeat, live worker (us)
    assert store.status_counts() == {"running": 1, "complete": 0, "failed": 0}
    assert store.heartbeat(key) is True
    assert store.complete(key, _result()) is True
    assert store.claim(_cell()) is False
    assert store.claim(_cell(), retry_failed=True) is False  # complete is final
    assert store.complete(key, _result(0.1)) is False  # first result wins
    assert store.heartbeat(key) is False
    assert store.finished_keys() == {key}
    assert store.status_counts() == {"running": 0, "complete": 1, "failed": 0}

    (row,) = store.rows()
    assert row["status"] == "complete" and row["attempts"] == 1
    assert row["worker"] == store.worker and ":" in row["worker"]
    assert row["started_at"] <= row["finished_at"]
    assert row["accuracy"] == pytest.approx(0.9, abs=1e-12)  # float32 stored as the value it prints as
    assert row["macro_f1"] == 0.8 and row["roc_auc"] is None and row["degenerate"] is False
    assert row["trainable_params"] == 1281 and row["log_loss"] is None
    assert row["dataset"] == "cats_and_dogs_filtered"
    assert row["metrics"] == {"confusion": [[5, 1], [2, 4]], "n_classes": 2}
    assert row["curves"]["val_accuracy"] == [0.6, 0.8]
    assert row["params"] == {"lr": 1e-3, "dropout": 0.2}
    assert row["provenance"]["weights_sha256"] == "ab12"


def test_failed_cell_is_skipped_unless_retry_failed(store: ResultsStore) -> None:
    key = make_cell_key(_cell())
    assert store.claim(_cell())
    assert store.fail(key, "Traceback...\nValueError: boom") is True
    assert store.fail(key, "again") is False  # no longer running
    (row,) = store.rows("failed")
    assert row["error"].endswith("boom") and row["finished_at"] is not None
    assert store.claim(_cell()) is False
    assert store.claim(_cell(), retry_failed=True) is True
    (row,) = store.rows()
    assert (row["status"], row["attempts"], row["error"], row["finished_at"]) == ("running", 2, None, None)
    assert store.complete(key, {"accuracy": 0.5})
    assert store.rows("complete")[0]["attempts"] == 2


def test_complete_requires_a_claim(store: ResultsStore) -> None:
    with pytest.raises(StudyError, match="never claimed"):
        store.complete("nope", {"accuracy": 1.0})


def test_bad_cells_are_one_line_errors(store: ResultsStore) -> None:
    with pytest.raises(StudyError, match="missing n_images"):
        store.claim({k: v for k, v in _cell().items() if k != "n_images"})
    with pytest.raises(StudyError, match="'n_images' must be int"):
        store.claim(_cell(n="many"))  # type: ignore[arg-type]
    with pytest.raises(StudyError, match="'augment' must be bool"):
        store.claim(_cell(augment="light"))
    with pytest.raises(StudyError, match="more than 256"):
        store.claim(_cell(backbone="b" * 300))
    with pytest.raises(StudyError, match="unknown status"):
        store.rows("done")
    assert store.rows() == []


def test_complete_is_one_transaction(store: ResultsStore) -> None:
    """A crash after the UPDATE but before COMMIT leaves the cell running with no partial result."""
    key = make_cell_key(_cell())
    store.claim(_cell())

    def crash(conn: Any, clauseelement: Any, *args: Any) -> None:
        if isinstance(clauseelement, sa.Update):  # the UPDATE ran; die before COMMIT
            raise RuntimeError("killed mid-write")

    sa.event.listen(store.engine, "after_execute", crash)
    try:
        with pytest.raises(RuntimeError):
            store.complete(key, _result())
    finally:
        sa.event.remove(store.engine, "after_execute", crash)
    (row,) = store.rows()
    assert row["status"] == "running" and row["accuracy"] is None and row["curves"] is None
    assert store.complete(key, _result())


# -- stale claims ---------------------------------------------------------------------------------------------


def test_stale_heartbeat_is_reclaimable(url: str) -> None:
    a = ResultsStore(url, worker="host-a:1")  # other hosts: only the heartbeat can tell they died
    b = ResultsStore(url, worker="host-b:2")
    key = make_cell_key(_cell())
    assert a.claim(_cell())
    assert b.claim(_cell()) is False
    _age_heartbeats(a, key)
    assert b.claim(_cell()) is True
    assert b.claim(_cell()) is False
    (row,) = b.rows()
    assert (row["worker"], row["attempts"], row["status"]) == ("host-b:2", 2, "running")
    assert a.heartbeat(key) is False  # a learns it lost the claim
    assert a.fail(key, "late failure") is False  # and cannot fail b's run
    assert b.heartbeat(key) is True
    assert a.complete(key, _result(0.7)) is True  # a result that does arrive is kept: first finisher wins
    assert b.complete(key, _result(0.8)) is False
    assert b.rows()[0]["accuracy"] == pytest.approx(0.7)


def test_stale_after_is_configurable(url: str) -> None:
    a = ResultsStore(url, worker="host-a:1")
    b = ResultsStore(url, worker="host-b:2", stale_after=0.05)
    assert a.claim(_cell())
    time.sleep(0.1)
    assert b.claim(_cell()) is True


def _claim_and_hang(url: str, cell: dict[str, Any], ready: Any) -> None:
    store = ResultsStore(url)
    ready.put(store.claim(cell))
    time.sleep(600)


def test_sigkilled_worker_is_reclaimable(store: ResultsStore, url: str) -> None:
    """A run killed with SIGKILL (no chance to fail()) resumes at once on the same host: its pid is dead."""
    ready = SPAWN.Queue()
    proc = SPAWN.Process(target=_claim_and_hang, args=(url, _cell(), ready), daemon=True)
    proc.start()
    try:
        assert ready.get(timeout=60) is True
        assert store.claim(_cell()) is False  # alive with a fresh heartbeat: hands off
        assert store.rows()[0]["worker"].endswith(f":{proc.pid}")
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(timeout=30)
    assert store.claim(_cell()) is True  # heartbeat still fresh, but the pid is gone
    (row,) = store.rows()
    assert row["attempts"] == 2 and row["worker"] == store.worker


def test_heartbeating_thread_keeps_claim_and_reports_loss(url: str) -> None:
    a = ResultsStore(url, worker="host-a:1")
    key = make_cell_key(_cell())
    assert a.claim(_cell())
    _age_heartbeats(a, key)
    with a.heartbeating(key, interval=0.02) as lost:
        time.sleep(0.2)
        assert a.rows()[0]["heartbeat_at"] > datetime(2001, 1, 1)  # beats while the block runs
        assert ResultsStore(url, worker="host-b:2").claim(_cell()) is False
        assert a.fail(key, "handed over")  # claim no longer running -> the thread notices
        deadline = time.monotonic() + 5
        while not lost.is_set() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert lost.is_set()


# -- concurrency ----------------------------------------------------------------------------------------------

N_PROCS = 5
N_CELLS = 20


def _race_worker(url: str, index: int, barrier: Any, go: Any, out: Any) -> None:
    """Claim (and complete) every cell it can, once per "go"; processes are reused to keep the test fast."""
    store = ResultsStore(url)
    cells = [_cell(seed=s) for s in range(N_CELLS)]
    if index % 2:
        cells.reverse()  # half the workers meet the other half in the middle, half collide head-on
    while go.get(timeout=120):
        barrier.wait(timeout=120)  # everyone starts claiming at the same moment
        won = []
        for cell in cells:
            if store.claim(cell):
                won.append(make_cell_key(cell))
                assert store.heartbeat(won[-1])
                assert store.complete(won[-1], {"accuracy": 0.5, "worker_index": index})
        out.put(won)


def test_concurrent_processes_claim_each_cell_exactly_once(store: ResultsStore, url: str) -> None:
    expected = sorted(make_cell_key(_cell(seed=s)) for s in range(N_CELLS))
    barrier, out = SPAWN.Barrier(N_PROCS), SPAWN.Queue()
    gos = [SPAWN.Queue() for _ in range(N_PROCS)]
    procs = [
        SPAWN.Process(target=_race_worker, args=(url, i, barrier, gos[i], out), daemon=True) for i in range(N_PROCS)
    ]
    for p in procs:
        p.start()

    def race() -> list[str]:
        for go in gos:
            go.put(True)
        return [key for _ in procs for key in out.get(timeout=120)]

    try:
        claimed = race()  # fresh cells: the INSERT path
        assert sorted(claimed) == expected  # every cell once, none twice
        assert store.status_counts() == {"running": 0, "complete": N_CELLS, "failed": 0}
        assert {r["attempts"] for r in store.rows()} == {1}

        assert race() == []  # all complete: nobody runs anything again

        with store.session() as s:  # every run "died" long ago: the conditional-UPDATE takeover path
            s.execute(sa.update(runs).values(status="running", heartbeat_at=datetime(2000, 1, 1)))
        claimed = race()
        assert sorted(claimed) == expected
        assert {r["attempts"] for r in store.rows()} == {2}
        assert store.status_counts()["complete"] == N_CELLS
    finally:
        for go in gos:
            go.put(False)
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]


# -- reading and export -----------------------------------------------------------------------------------------


def _filled(store: ResultsStore) -> None:
    for seed in range(3):
        store.claim(_cell(seed=seed, augment=seed == 1, epochs_budget=5))
    store.complete(make_cell_key(_cell(seed=0, epochs_budget=5)), _result(0.9))
    store.complete(make_cell_key(_cell(seed=1, augment=True, epochs_budget=5)), _result(0.6))
    store.fail(make_cell_key(_cell(seed=2, epochs_budget=5)), "OOM")
    store.put_dataset("cats_and_dogs_filtered", domain="natural", similarity={"imagenet_fid": 12.5})
    store.put_dataset("cats_and_dogs_filtered", similarity={"kid": 0.01})


def test_to_frame_has_stable_schema(store: ResultsStore) -> None:
    empty = store.to_frame()
    assert list(empty.columns) == list(RUN_COLUMNS) and empty.empty
    _filled(store)
    frame = store.to_frame()
    assert len(frame) == 3 and str(frame["n_images"].dtype) == "Int64"
    assert str(frame["started_at"].dtype).endswith("UTC]")
    assert frame.loc[0, "curves"]["loss"] == [0.7, 0.5]
    assert len(store.to_frame("complete")) == 2
    (ds,) = store.datasets()
    assert ds["similarity"] == {"imagenet_fid": 12.5, "kid": 0.01} and ds["domain"] == "natural"


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_export_round_trips_through_pandas(
    store: ResultsStore, url: str, tmp_path: Path, fmt: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import pandas as pd  # here, not at the top: spawned race workers import this module and need no pandas

    _filled(store)
    out = tmp_path / "export"
    assert export.main(["--format", fmt, "--store", url, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"wrote 3 rows to {out / f'runs.{fmt}'}" in printed and "wrote 1 rows" in printed
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp files left behind

    read = pd.read_parquet if fmt == "parquet" else pd.read_csv
    got, want = read(out / f"runs.{fmt}"), store.to_frame()
    assert list(got.columns) == list(RUN_COLUMNS)
    assert got["cell_key"].tolist() == want["cell_key"].tolist()
    for spec in KEY_COLUMNS:
        if want[spec.name].isna().all():  # an all-null column (trials_budget, source, ...): its dtype is per format
            assert got[spec.name].isna().all(), spec.name
        else:
            assert got[spec.name].tolist() == want[spec.name].tolist(), spec.name
    assert got["status"].tolist() == ["complete", "complete", "failed"]
    assert got["accuracy"].tolist()[:2] == pytest.approx([0.9, 0.6])
    for name in ("metrics", "curves", "params", "provenance"):
        decoded = [None if pd.isna(v) else json.loads(v) for v in got[name]]
        assert decoded == want[name].tolist(), name
    assert pd.to_datetime(got["finished_at"], utc=True).notna().all()

    ds = read(out / f"datasets.{fmt}")
    assert json.loads(ds.loc[0, "similarity"]) == {"imagenet_fid": 12.5, "kid": 0.01}
    assert list(ds.columns) == list(DATASET_COLUMNS)

    assert export.main(["--format", fmt, "--store", url, "--out", str(out), "--status", "complete"]) == 0
    assert len(read(out / f"runs.{fmt}")) == 2


def test_export_of_a_missing_store_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.db"
    assert export.main(["--store", f"sqlite:///{missing}", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no results store") and err.count("\n") == 1
    assert not missing.exists()  # the exporter never creates an empty store


# -- URLs -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad_url", "pattern"),
    [
        ("postgresql://nobody@127.0.0.1:1/x", r"pip install|cannot open results store"),
        ("postgresql+psycopg2://nobody:secret@127.0.0.1:1/x", r"pip install|cannot open results store"),
        ("notaurl", r"invalid results store URL 'notaurl'; use e\.g\. sqlite:///"),
        ("nosuchdb://host/x", r"unknown database 'nosuchdb'"),
        ("sqlite:////nonexistent-dir/sub/study.db", r"missing folder /nonexistent-dir/sub; create it"),
    ],
)
def test_bad_url_fails_fast_with_one_line(bad_url: str, pattern: str) -> None:
    start = time.monotonic()
    with pytest.raises(StudyError) as info:
        ResultsStore(bad_url)
    message = str(info.value)
    assert time.monotonic() - start < 15
    assert re.search(pattern, message) and "\n" not in message
    assert "secret" not in message  # passwords are masked
    if "pip install" in message:
        assert re.search(r"driver 'psycopg2?' is not installed; pip install 'psycopg", message)


def test_default_url_is_absolute_and_creates_the_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    from study.engine.store import default_url

    assert default_url() == f"sqlite:///{tmp_path.resolve() / 'results' / 'study.db'}"
    assert (tmp_path / "results").is_dir()


def test_store_pickles_as_its_url(store: ResultsStore) -> None:
    store.claim(_cell())
    clone = pickle.loads(pickle.dumps(store))
    assert clone.url == store.url and clone.status_counts()["running"] == 1


def test_sqlite_uses_wal(store: ResultsStore) -> None:
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 10_000


def test_opening_a_new_store_waits_for_a_writer_instead_of_failing(tmp_path: Path) -> None:
    """A writer on a not-yet-WAL file blocks the switch to WAL, which SQLite refuses at once ("database is
    locked") rather than waiting on the busy timeout; two Ray workers opening a fresh store lost this in CI."""
    import sqlite3

    path = tmp_path / "new.db"
    writer = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    writer.execute("CREATE TABLE other (x)")
    writer.execute("BEGIN IMMEDIATE")  # a RESERVED lock on a rollback-journal file, as a CREATE in progress
    release = threading.Timer(0.5, lambda: writer.execute("COMMIT"))
    release.start()
    try:
        opened = ResultsStore(f"sqlite:///{path}")
    finally:
        release.join()
        writer.close()
    with opened.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


def test_schema_doc_names_every_column() -> None:
    doc = (REPO / "docs" / "results-schema.md").read_text()
    for name in (*RUN_COLUMNS, *DATASET_COLUMNS):
        assert f"`{name}`" in doc, f"docs/results-schema.md does not document {name}"
    for spec in METRIC_COLUMNS:
        assert spec.unit in doc


@pytest.mark.skipif(
    not os.environ.get("TRANSFER_STUDY_TEST_PG_URL"),
    reason="set TRANSFER_STUDY_TEST_PG_URL=postgresql+psycopg://user@host/scratch_db (tables are dropped)",
)
def test_postgresql_lifecycle_and_race() -> None:
    """The same guarantees on PostgreSQL (opt-in: needs a server, a scratch database and psycopg)."""
    from study.engine.store import metadata

    pg_url = os.environ["TRANSFER_STUDY_TEST_PG_URL"]
    metadata.drop_all(ResultsStore(pg_url).engine)
    test_claim_complete_lifecycle(ResultsStore(pg_url))
    metadata.drop_all(ResultsStore(pg_url).engine)
    test_stale_heartbeat_is_reclaimable(pg_url)
    metadata.drop_all(ResultsStore(pg_url).engine)
    test_concurrent_processes_claim_each_cell_exactly_once(ResultsStore(pg_url), pg_url)
