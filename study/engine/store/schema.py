"""The store's schema as data: typed column specs, the ``runs`` and ``datasets`` tables, statuses, cell keys.

``KEY_COLUMNS`` and ``METRIC_COLUMNS`` are the only lists of those columns; the tables, the result splitting
(``values``) and the docs' tables are all derived from them, so they cannot drift apart.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import sqlalchemy as sa

from study.errors import StudyError

_ColType = Literal["str", "int", "float", "bool"]


NO_BACKBONE = "none"
"""The ``backbone`` column's value for a cell whose strategy uses no backbone (``Cell.backbone`` is None)."""


@dataclass(frozen=True)
class ColumnSpec:
    """One typed column described as data, so the table, coercion and docs cannot drift apart."""

    name: str
    type: _ColType
    unit: str
    doc: str


KEY_COLUMNS: tuple[ColumnSpec, ...] = (
    ColumnSpec("dataset", "str", "", "dataset name in the dataset registry"),
    ColumnSpec("domain", "str", "", "domain label of the dataset (e.g. natural, medical, satellite)"),
    ColumnSpec("n_images", "int", "images", "training-set size: labelled images used for training"),
    ColumnSpec("strategy", "str", "", "transfer strategy (e.g. linear_probe, fine_tune_top, scratch)"),
    ColumnSpec("backbone", "str", "", f"backbone name in the registry ({NO_BACKBONE!r}: the strategy has none)"),
    ColumnSpec("image_size", "int", "px", "side length of the square network input"),
    ColumnSpec("seed", "int", "", "replicate seed (data subset, initialisation, shuffling)"),
    ColumnSpec("augment", "bool", "", "whether training-time data augmentation was on"),
    ColumnSpec("epochs_budget", "int", "epochs", "maximum training epochs allowed for the cell"),
    ColumnSpec("trials_budget", "int", "trials", "hyper-parameter search trials allowed for the cell"),
    ColumnSpec("source", "str", "", "labelled source dataset of a domain-adaptation cell (NULL: an ordinary cell)"),
    ColumnSpec(
        "n_target_labels", "int", "images", "labelled target images of a domain-adaptation cell (NULL: ordinary)"
    ),
)
"""Columns that identify a cell; filled by ``claim`` from the cell dict."""

ADDED_COLUMNS = frozenset({"source", "n_target_labels"})
"""Nullable key columns added after stores existed: an older ``runs`` table gains them (``ALTER TABLE``) on open."""

REQUIRED_KEYS = ("dataset", "n_images", "strategy", "backbone", "image_size", "seed")

METRIC_COLUMNS: tuple[ColumnSpec, ...] = (
    ColumnSpec("accuracy", "float", "fraction 0-1", "test-set accuracy"),
    ColumnSpec("balanced_accuracy", "float", "fraction 0-1", "mean per-class recall on the test set"),
    ColumnSpec("macro_f1", "float", "fraction 0-1", "unweighted mean of per-class F1 on the test set"),
    ColumnSpec(
        "roc_auc",
        "float",
        "fraction 0-1",
        "ROC AUC on the test set (one-vs-rest macro for >2 classes); NULL when undefined",
    ),
    ColumnSpec("log_loss", "float", "nats", "mean cross-entropy of the predicted probabilities on the test set"),
    ColumnSpec(
        "majority_share",
        "float",
        "fraction 0-1",
        "share of test predictions that fall in the single most-predicted class",
    ),
    ColumnSpec("degenerate", "bool", "", "the model collapsed (e.g. predicts one class); metrics are not comparable"),
    ColumnSpec("train_seconds", "float", "s", "wall time spent training (search trials included)"),
    ColumnSpec("extract_seconds", "float", "s", "wall time spent extracting/caching backbone features"),
    ColumnSpec("eval_seconds", "float", "s", "wall time spent evaluating on the test set"),
    ColumnSpec("trainable_params", "int", "parameters", "trainable parameters of the final model"),
    ColumnSpec("total_params", "int", "parameters", "all parameters of the final model"),
    ColumnSpec("model_mb", "float", "MB (10^6 bytes)", "size of the saved final model"),
    ColumnSpec("latency_ms", "float", "ms/image", "inference latency per image of the final model"),
)
"""Metrics flattened out of a result for fast SQL/pandas filtering; everything else goes to ``metrics``."""

JSON_COLUMNS: tuple[ColumnSpec, ...] = (
    ColumnSpec("metrics", "str", "JSON object", "every result field that has no column of its own"),
    ColumnSpec("curves", "str", "JSON", 'per-epoch learning curves, e.g. {"loss": [...], "val_accuracy": [...]}'),
    ColumnSpec("params", "str", "JSON object", "hyper-parameters chosen for the final model"),
    ColumnSpec("provenance", "str", "JSON object", "software versions, data and weight checksums, host/device"),
)
"""Free-form parts of a result, stored as JSON (decoded by ``rows``/``to_frame``, strings in exports)."""


class RunStatus(enum.StrEnum):
    """State of a cell; a StrEnum so ``RunStatus.COMPLETE == "complete"``."""

    RUNNING = "running"
    COMPLETE = "complete"
    FAILED = "failed"


_SQL_TYPES: dict[str, type[sa.types.TypeEngine[Any]]] = {
    "str": sa.String,
    "int": sa.BigInteger,
    "float": sa.Float,
    "bool": sa.Boolean,
}
_JSON = sa.JSON(none_as_null=True)
METRIC_NAMES = frozenset(c.name for c in METRIC_COLUMNS)
JSON_NAMES = frozenset(c.name for c in JSON_COLUMNS)

metadata = sa.MetaData()


def _spec_column(spec: ColumnSpec) -> sa.Column[Any]:
    sql_type: sa.types.TypeEngine[Any] = _SQL_TYPES[spec.type]() if spec.type != "str" else sa.String(256)
    return sa.Column(spec.name, sql_type, nullable=True, comment=spec.doc)


runs = sa.Table(
    "runs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("cell_key", sa.String(512), nullable=False, unique=True),
    sa.Column("grid", sa.String(128), nullable=True),
    *(_spec_column(c) for c in KEY_COLUMNS),
    sa.Column(
        "status",
        sa.Enum(
            RunStatus,
            name="run_status",
            native_enum=False,
            length=16,
            create_constraint=True,
            values_callable=lambda e: [m.value for m in e],
        ),
        nullable=False,
        index=True,
    ),
    sa.Column("attempts", sa.Integer, nullable=False, default=1),
    sa.Column("worker", sa.String(256), nullable=True),
    sa.Column("heartbeat_at", sa.DateTime, nullable=True),
    sa.Column("started_at", sa.DateTime, nullable=True),
    sa.Column("finished_at", sa.DateTime, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    *(_spec_column(c) for c in METRIC_COLUMNS),
    *(sa.Column(c.name, _JSON, nullable=True, comment=c.doc) for c in JSON_COLUMNS),
)

datasets = sa.Table(
    "datasets",
    metadata,
    sa.Column("name", sa.String(256), primary_key=True),
    sa.Column("domain", sa.String(256), nullable=True),
    sa.Column("similarity", _JSON, nullable=True),
    sa.Column("updated_at", sa.DateTime, nullable=True),
)

RUN_COLUMNS: tuple[str, ...] = tuple(c.name for c in runs.columns)
DATASET_COLUMNS: tuple[str, ...] = tuple(c.name for c in datasets.columns)
DATETIME_COLUMNS = ("heartbeat_at", "started_at", "finished_at", "updated_at")
# Result keys naming these describe the cell or its bookkeeping, which claim() owns; complete() drops them.
NOT_RESULT = frozenset(RUN_COLUMNS) - METRIC_NAMES - JSON_NAMES


def make_cell_key(cell: Mapping[str, Any]) -> str:
    """The readable key of a cell.

    E.g. ``cats_and_dogs_filtered[n=200]/fine_tune_top/mobilenet_v2/s160/seed=1``. Optional parts appear only
    when set, so cells that differ only in augmentation or budgets get distinct keys: ``/aug`` when augment is
    true, ``/e=<epochs_budget>``, ``/t=<trials_budget>``, all before ``/seed=``. A domain-adaptation cell (``source``
    set) adds ``/src=<source>/nt=<n_target_labels>`` there too; ordinary cells' keys are unchanged by it.
    """
    missing = [k for k in REQUIRED_KEYS if cell.get(k) is None]
    if missing:
        raise StudyError(f"cell is missing {', '.join(missing)}; a cell needs {', '.join(REQUIRED_KEYS)}")
    key = f"{cell['dataset']}[n={cell['n_images']}]/{cell['strategy']}/{cell['backbone']}/s{cell['image_size']}"
    if cell.get("augment"):
        key += "/aug"
    if cell.get("epochs_budget") is not None:
        key += f"/e={cell['epochs_budget']}"
    if cell.get("trials_budget") is not None:
        key += f"/t={cell['trials_budget']}"
    if cell.get("source") is not None:
        key += f"/src={cell['source']}/nt={cell.get('n_target_labels') or 0}"
    return f"{key}/seed={cell['seed']}"


def utc_now() -> datetime:
    """Naive UTC: SQLite drops tzinfo, so every timestamp in the store is naive UTC by convention."""
    return datetime.now(UTC).replace(tzinfo=None)
