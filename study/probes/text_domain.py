"""Domain similarity for text: how far a text dataset's sentence embeddings sit from general English prose.

The text analogue of ``study.probes.domain`` (images: Fréchet distance to natural photos). For a text dataset the
study takes a fixed stratified sample of its pool (``SAMPLE`` texts, seed 0), embeds it with the frozen encoder
(all-MiniLM-L6-v2, mean-pooled and L2-normalised, through the activation cache the text cells reuse) and computes
``study.probes.similarity.frechet_distance`` to the embeddings of a fixed reference of general English.

**The reference: AG News, its test split** (``REFERENCE_N`` texts, stratified, seed 0). Why this one:

- It is edited, standard English prose on general topics (world, sports, business, science/technology news): what
  "general English" means for a user asking how far their tickets or tweets are from it. The encoder's own training
  mix is broad rather than one register (its model card, huggingface.co/sentence-transformers/all-MiniLM-L6-v2,
  lists S2ORC, StackExchange, MS MARCO, Yahoo Answers, WikiHow, SNLI/MultiNLI, Natural Questions among its sentence
  pair sources), and none of it is offline here. Every other offline set is one specific register: movie snippets,
  Usenet posts, SMS, questions, tweets, biomedical abstracts.
- A balanced sample over the seven text datasets was the alternative and was rejected: it is "the average of our
  datasets", not general English; it would contain a seventh of the dataset being measured (biasing that distance
  down), and it would move whenever a dataset is added or removed. A fixed single-source reference stays put.
- Its *test* split is disjoint from every pool sample, so AG News's own distance is not zero by construction: it is
  the floor a same-distribution sample reaches at this sample size (what "close" means on this scale).

**One covariance estimator for every text distance**: Ledoit-Wolf shrinkage (``COVARIANCE``). The ``"auto"`` choice
of ``frechet_distance`` switches estimator at n = d = 384, so a user's 60 texts and a dataset's 500 would get
different estimators, and its docstring says such distances are not comparable. Shrinkage is well conditioned at any
n. What remains is the small-sample bias of any Fréchet distance (fewer texts: a larger distance); the advisor shows
the user's n beside the datasets' 500.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from study.cache.features import FeatureEngine
from study.cache.text_features import embeddings
from study.data.cell_data import CellData
from study.data.loaders import LoadedDataset
from study.data.sampling import stratified_subset
from study.probes.similarity import Covariance, frechet_distance
from study.zoo.text import get_text_encoder

ENCODER = "minilm_l6"
REFERENCE_DATASET = "ag_news"
REFERENCE_SPLIT = "test"
REFERENCE_N = 500
SAMPLE = 500
COVARIANCE: Covariance = "ledoit_wolf"
MAX_LENGTH = 128
"""The text grid's token budget: the distances describe the texts the study's cells see."""
TEXT_DATASETS = ("sst2", "ag_news", "20newsgroups", "sms_spam", "trec", "tweet_emotion", "medical_abstracts")
Loader = Callable[[str, int], LoadedDataset]


def _cell(ds: LoadedDataset, max_length: int) -> CellData:
    none = np.zeros(0, np.int64)
    return CellData(ds.name, ds.domain, list(ds.class_names), ds.source_checksum, max_length, ds.pool, ds.test, none,
                    none, none)  # fmt: skip


def sample_index(labels: np.ndarray, n: int) -> np.ndarray:
    """A fixed stratified sample of ``n`` rows (all rows when there are no more), seed 0."""
    return stratified_subset(labels, n, seed=0) if n < len(labels) else np.arange(len(labels))


def text_embeddings(ds: LoadedDataset, split: str, idx: np.ndarray, engine: FeatureEngine, max_length: int
                    ) -> np.ndarray:  # fmt: skip
    """Frozen unit-norm sentence embeddings of rows ``idx`` of a split (``"pool"`` or ``"test"``), cached."""
    spec = get_text_encoder(ENCODER)
    out = embeddings(engine.cache, _cell(ds, max_length), spec, engine.weights.cache_dir, split, idx, max_length)
    return np.asarray(out, dtype=np.float64)


def reference_embeddings(engine: FeatureEngine, load: Loader, max_length: int = MAX_LENGTH) -> np.ndarray:
    """The general-English reference: ``REFERENCE_N`` texts of AG News's test split, embedded."""
    ds = load(REFERENCE_DATASET, max_length)
    return text_embeddings(ds, REFERENCE_SPLIT, sample_index(ds.test.labels, REFERENCE_N), engine, max_length)


def text_gap(F: np.ndarray, reference: np.ndarray) -> dict[str, Any]:
    """The Fréchet distance of embeddings ``F`` to the reference, with what it was measured on."""
    return {"frechet_distance": frechet_distance(F, reference, COVARIANCE), "n": int(len(F)),
            "reference": f"{REFERENCE_DATASET}:{REFERENCE_SPLIT}", "reference_n": int(len(reference)),
            "frechet_covariance": COVARIANCE, "encoder": ENCODER}  # fmt: skip


def floor_at(n: int, reference: np.ndarray, engine: FeatureEngine, load: Loader, max_length: int = MAX_LENGTH
             ) -> float:  # fmt: skip
    """The distance a same-distribution sample of ``n`` texts reads (AG News pool texts, disjoint from the reference):
    the small-sample floor to read a user's ``n``-text gap against."""
    ds = load(REFERENCE_DATASET, max_length)
    F = text_embeddings(ds, "pool", sample_index(ds.pool.labels, max(n, 2)), engine, max_length)
    return frechet_distance(F, reference, COVARIANCE)


def measure(name: str, engine: FeatureEngine, load: Loader, max_length: int = MAX_LENGTH, n: int = SAMPLE
            ) -> dict[str, Any]:  # fmt: skip
    """The domain gap of one text dataset: its pool's fixed sample against the reference, with the time it took."""
    t0 = time.perf_counter()
    ds = load(name, max_length)
    F = text_embeddings(ds, "pool", sample_index(ds.pool.labels, n), engine, max_length)
    report = text_gap(F, reference_embeddings(engine, load, max_length))
    return {"dataset": name, "domain": ds.domain, **report, "max_length": max_length,
            "seconds": time.perf_counter() - t0}  # fmt: skip


def score_key(max_length: int = MAX_LENGTH) -> str:
    """A text dataset's key in the store's ``datasets.similarity`` JSON (images use ``backbone@size``)."""
    return f"{ENCODER}@{max_length}"


def main(argv: list[str] | None = None) -> int:
    """``python -m study.probes.text_domain --out results/text/similarity.csv``: the gap of every text dataset."""
    import pandas as pd

    from study import config
    from study.data import catalog

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True, help="CSV file to write")
    p.add_argument("--datasets", default=",".join(TEXT_DATASETS), help="comma-separated text datasets")
    p.add_argument("--sample", type=int, default=SAMPLE, help="texts per dataset (default %(default)s)")
    p.add_argument("--max-length", type=int, default=MAX_LENGTH, help="token budget (default %(default)s)")
    args = p.parse_args(argv)
    data_dirs, cache_dir = config.data_dirs(), config.cache_dir()
    engine = FeatureEngine(cache_dir, config.weights_dirs())

    def load(name: str, size: int) -> LoadedDataset:
        return catalog.load(name, size, data_dirs, cache_dir, allow_download=False)

    rows = [measure(d, engine, load, args.max_length, args.sample) for d in args.datasets.split(",")]
    table = pd.DataFrame(rows).sort_values("frechet_distance")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.round({"frechet_distance": 4, "seconds": 1}).to_csv(args.out, index=False)
    print(table.to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
