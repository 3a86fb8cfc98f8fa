"""The results store: one row per grid cell in a SQL database, the single source of truth for "what is done".

Why a database and not a folder of JSON files: cells are run by several worker processes (later Ray tasks on a
cluster and concurrent sweeps against PostgreSQL), and each cell must be trained exactly once. That needs an
atomic "claim" that works across processes and hosts, which a unique constraint plus conditional UPDATEs
give us on both SQLite and PostgreSQL (Optuna's storage works the same way).

Lifecycle of a row (see ``docs/results-schema.md``)::

    (no row) --claim--> running --complete--> complete
                          |  ^
                        fail  \\--claim (heartbeat older than stale_after, or worker pid dead on this host)
                          v
                        failed --claim(retry_failed=True)--> running

``release`` (an interrupted sweep, SIGINT/SIGTERM) clears the heartbeat of its own ``running`` rows, so they are
claimable at once, as a SIGKILLed worker's rows are once found dead or stale: an interruption is never a failure.

One module per job:

- ``schema``: the columns as data (``KEY_COLUMNS``, ``METRIC_COLUMNS``, ``JSON_COLUMNS``), the tables derived from
  them, ``RunStatus``, ``NO_BACKBONE`` and ``make_cell_key``;
- ``values``: Python values into columns (type coercion, JSON-safe data, ``split_result``) and rows into frames;
- ``connection``: the default URL, engine creation, SQLite set-up (WAL, busy timeout, fork safety), driver hints;
- ``liveness``: a worker's identity and whether its process is still alive;
- ``results``: ``ResultsStore``, the claim protocol, reading rows and the datasets table.

This package never imports TensorFlow; pandas is imported only by ``to_frame``/``datasets_frame``.
"""

from __future__ import annotations

from study.engine.store.connection import default_url, store_exists
from study.engine.store.results import DEFAULT_STALE_AFTER, ResultsStore
from study.engine.store.schema import (
    DATASET_COLUMNS,
    JSON_COLUMNS,
    KEY_COLUMNS,
    METRIC_COLUMNS,
    NO_BACKBONE,
    RUN_COLUMNS,
    ColumnSpec,
    RunStatus,
    datasets,
    make_cell_key,
    metadata,
    runs,
)
from study.engine.store.values import split_result

__all__ = [
    "DATASET_COLUMNS",
    "DEFAULT_STALE_AFTER",
    "JSON_COLUMNS",
    "KEY_COLUMNS",
    "METRIC_COLUMNS",
    "NO_BACKBONE",
    "RUN_COLUMNS",
    "ColumnSpec",
    "ResultsStore",
    "RunStatus",
    "datasets",
    "default_url",
    "make_cell_key",
    "metadata",
    "runs",
    "split_result",
    "store_exists",
]
