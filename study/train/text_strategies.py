"""Text strategies: the study's ways of (not) using a pretrained sentence encoder, one ``Strategy`` record each.

They mirror the image strategies recipe for recipe, on all-MiniLM-L6-v2 (``study.zoo.text``), and carry
``modality="text"`` so grids pair them with text datasets only. Their own names (``text_...``) keep one record = one
recipe: the statistics, tuning budget, cost hints and the advisor read a record, never a branch on the dataset.

- ``text_tfidf_logreg`` (baseline): scikit-learn TF-IDF of word 1-2 grams + logistic regression (C tuned);
- ``text_scratch_cnn`` (baseline): word-piece embeddings + 1-D convolution + max pooling, randomly initialised;
- ``text_linear_probe``: logistic regression on the frozen mean-pooled embeddings, C chosen by 5-fold
  cross-validation on the training texts (SentEval's recipe);
- ``text_feature_extraction``: frozen embeddings + a new head (dropout + dense softmax) trained with Adam;
- ``text_fine_tune_top``: the head phase, then the top k transformer layers + head at a low learning rate, trained
  on hidden states cached at the freeze point (the frozen layers below never run again);
- ``text_full_fine_tune``: the head phase, then every layer of the encoder at a low learning rate.

The token budget of a text cell is the cell's ``image_size`` (the grid's input size: pixels for images, tokens for
text): texts are truncated there. Frozen outputs come from ``study.cache.text_features`` (cached, never recomputed).
The cell's training texts only are fitted (TF-IDF vocabulary included); validation and test texts are only predicted.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from study.cache.features import FeatureEngine
from study.cache.text_features import POOLED, embeddings, hidden_states, tokenizer
from study.data.cell_data import CellData
from study.train.head import train_head
from study.train.strategies import Strategy, probe_dense_weights, register_strategy
from study.train.training import FitResult, TrainConfig, compile_classifier, count_params, fit
from study.zoo.text import build_text_encoder, build_top, get_text_encoder
from study.zoo.text.encoder import batches

ENCODER = "minilm_l6"
"""The pretrained text encoder of the built-in text strategies (the one registered in ``study.zoo.text``)."""

EMB_SCALE = float(np.sqrt(384))
"""Unit-norm embeddings times sqrt(hidden) give coordinates of about unit scale, so that the head's weight decay and
Adam steps (at most lr_head per weight) act as on image features. The fine-tune models apply the same factor."""

PROBE_C_GRID = tuple(2.0**k for k in range(-1, 11))
"""The C values ``text_linear_probe`` cross-validates on its training texts (raw unit-norm embeddings). SentEval's
``KFoldClassifier`` (facebookresearch/SentEval, ``senteval/tools/validation.py``) searches 2^-1 .. 2^5 by 5-fold
cross-validation on the training set; the grid goes on to 2^10 because at 50 texts the weakest penalties win on
unit-norm embeddings. On the reference's 26 text cells of seed 0 (``bench.linear_probe_recipe --text``) this recipe
beat the former one (standardised embeddings, C = 1) by 2.6 points at n = 250, 5.6 at 1000 and 4.3 at 4000 and
matched it at 50 (-0.1)."""

HEAD_ZERO_INIT = True
"""The text head starts at zero, not Glorot-uniform (a defect fix). A Glorot kernel (limit sqrt(6/(384+C)) = 0.12)
on these embeddings gives random initial logits of std ~1.4, while an Adam step moves a logit by at most
lr_head x |x|_1 ~ 0.3; with 50-250 texts an epoch is 2-7 steps, so the head spent its budget undoing its own random
start. Measured (TREC n=60, seed 0, lr 1e-3): Glorot 0.23 test accuracy at 2 epochs, 0.36 at 10; zero 0.59 / 0.62
(the linear probe: 0.61). Unscaled embeddings did no better (0.25 / 0.39: the random logits and the steps shrink
together) and a 10x lr_head only partly (0.48 / 0.57). Softmax regression is convex: a zero start loses nothing."""


def _seed(cfg: TrainConfig) -> None:
    import keras

    keras.utils.set_random_seed(cfg.seed)


def _texts(data: CellData, split: str, idx: np.ndarray) -> list[str]:
    source = data.pool if split == "pool" else data.test
    return [str(t) for t in source.texts[idx]]  # type: ignore[attr-defined]


def _result(data: CellData, engine: FeatureEngine, before: float, val: np.ndarray, test: np.ndarray,
            curves: list[dict[str, Any]], train_seconds: float, eval_seconds: float, trainable: int,
            info: dict[str, Any], export: Any = None) -> FitResult:  # fmt: skip
    return FitResult(
        val_proba=np.asarray(val, dtype=np.float64),
        test_proba=np.asarray(test, dtype=np.float64),
        curves=curves,
        timings={"extract_seconds": engine.cache.stats.extract_seconds - before, "train_seconds": train_seconds,
                 "eval_seconds": eval_seconds},  # fmt: skip
        trainable_params=trainable,
        build_model=None,  # the sweep's latency/size figures take images: none for text cells
        export_model=export,  # advisor train's deployable model: token ids + padding mask in, probabilities out
        info={"encoder": ENCODER, "max_length": data.image_size, **info},
    )


def _full_proba(clf: Any, x: Any, n_classes: int) -> np.ndarray:
    out = np.zeros((x.shape[0], n_classes))
    out[:, clf.classes_] = clf.predict_proba(x)
    return out


def _batches(inputs: dict[str, np.ndarray], lengths: np.ndarray, y: np.ndarray, batch_size: int, shuffle: bool,
             seed: int) -> tuple[Any, int]:  # fmt: skip
    """``(tf.data.Dataset, batches per epoch)`` of token (or hidden-state) batches padded to each batch's longest text.

    Texts are grouped by length (little padding); the batch order is reshuffled each epoch with the cell's seed. The
    signature leaves the length axis open: a ``keras.utils.PyDataset`` infers it from its first two batches, which
    fixed it at 128 whenever both were full-length, and every shorter batch then failed the cell (3 of 244 cells of
    the first text-grid run)."""
    import tensorflow as tf

    groups = batches(lengths, batch_size)
    lengths = np.asarray(lengths)
    rng = np.random.default_rng(seed)
    order = np.arange(len(groups))
    if shuffle:
        rng.shuffle(order)
    epochs = [0]

    def generate() -> Any:
        if epochs[0] and shuffle:  # a new epoch: a new order, as PyDataset.on_epoch_end did
            rng.shuffle(order)
        epochs[0] += 1
        for g in order:
            idx = groups[g]
            longest = max(int(lengths[idx].max()), 1)
            yield {k: v[idx, :longest] for k, v in inputs.items()}, y[idx].astype("int32")

    spec = {k: tf.TensorSpec((None, None, *v.shape[2:]), tf.as_dtype(v.dtype)) for k, v in inputs.items()}
    dataset = tf.data.Dataset.from_generator(generate, output_signature=(spec, tf.TensorSpec((None,), tf.int32)))
    return dataset, len(groups)


def _tokens(data: CellData, split: str, idx: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
    tok = tokenizer(get_text_encoder(ENCODER), data.image_size)
    batch = tok.pad(tok.ids(_texts(data, split, idx)), data.image_size)
    return batch.inputs(), batch.lengths


def _predict(model: Any, inputs: dict[str, np.ndarray], lengths: np.ndarray) -> np.ndarray:
    """Probabilities in input order, batches bucketed by length. Eager calls: with dynamic padding every batch
    length is a new shape, and ``predict_on_batch`` traced a new graph for several of them (0.8-2.3 s each for
    MiniLM, measured) where an eager forward pass of a 30-text batch took 0.1-0.4 s."""
    order: list[np.ndarray] = []
    out: list[np.ndarray] = []
    for idx in batches(lengths, 64):
        longest = max(int(lengths[idx].max()), 1)
        out.append(np.asarray(model({k: v[idx, :longest] for k, v in inputs.items()}, training=False)))
        order.append(idx)
    proba = np.empty((len(lengths), out[0].shape[1]))
    proba[np.concatenate(order)] = np.concatenate(out)
    return proba


# ------------------------------------------------------------------------------------------------- baselines


def run_tfidf_logreg(data: CellData, spec: Any, cfg: TrainConfig, engine: FeatureEngine) -> FitResult:
    """TF-IDF (word 1-2 grams, sublinear tf, vocabulary from the training texts only) + logistic regression."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    t0 = time.perf_counter()
    vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1, max_features=50000)
    xtr = vec.fit_transform(_texts(data, "pool", data.train_idx))
    clf = LogisticRegression(C=cfg.linear_c * 10, max_iter=2000, random_state=cfg.seed).fit(xtr, data.y_train)
    train_seconds = time.perf_counter() - t0
    t1 = time.perf_counter()
    val = _full_proba(clf, vec.transform(_texts(data, "pool", data.val_idx)), data.n_classes)
    test = _full_proba(clf, vec.transform(_texts(data, "test", data.test_idx)), data.n_classes)
    return _result(data, engine, engine.cache.stats.extract_seconds, val, test, [], train_seconds,
                   time.perf_counter() - t1, int(clf.coef_.size + clf.intercept_.size),
                   {"vocabulary": len(vec.vocabulary_), "encoder": None})  # fmt: skip


def scratch_text_cnn(vocab_size: int, n_classes: int, cfg: TrainConfig, dim: int = 64) -> Any:
    """Word-piece embeddings -> Conv1D(128, 3) -> masked global max pool -> dropout -> dense softmax."""
    import keras

    token_ids = keras.Input((None,), dtype="int32", name="token_ids")
    padding_mask = keras.Input((None,), dtype="int32", name="padding_mask")
    x = keras.layers.Embedding(vocab_size, dim, name="embed")(token_ids)
    x = keras.layers.Conv1D(128, 3, padding="same", activation="relu")(x)
    mask = keras.ops.expand_dims(keras.ops.cast(padding_mask, "float32"), -1)
    x = keras.ops.max(x * mask - (1.0 - mask) * 1e4, axis=1)
    x = keras.layers.Dropout(cfg.dropout, seed=cfg.seed)(x)
    l2 = keras.regularizers.L2(cfg.weight_decay)
    out = keras.layers.Dense(n_classes, activation="softmax", kernel_regularizer=l2)(x)
    return keras.Model({"token_ids": token_ids, "padding_mask": padding_mask}, out, name="text_cnn")


EAGER_MAX_STEPS = 10
"""A fit of at most this many optimizer steps runs eagerly (Keras ``run_eagerly``), not as a traced graph. Tracing
a MiniLM train step (twice, plus the validation step) costs about as much as ten eager steps: measured on 2 busy
cores (load 5-6), full fine-tuning, 13 texts x 16 tokens, 1 step: traced 12.7 s, eager 2.7 s; 40 texts x 64 tokens,
10 steps: traced 23.0 s, eager 22.6 s. Same operations either way; longer fits keep the graph."""


def _fit(model: Any, lr: float, train: tuple, val: tuple, data: CellData, cfg: TrainConfig, phase: str) -> list:
    """Compile and fit on token batches ((ids, lengths) for the training and validation texts)."""
    train_batches, steps = _batches(*train, data.y_train, cfg.batch_size, True, cfg.seed)
    compile_classifier(model, lr)
    model.run_eagerly = steps * cfg.epochs <= EAGER_MAX_STEPS
    return fit(model, train_batches, _batches(*val, data.y_val, 64, False, cfg.seed)[0], cfg.epochs, cfg.patience,
               phase)  # fmt: skip


def run_scratch_cnn(data: CellData, spec: Any, cfg: TrainConfig, engine: FeatureEngine) -> FitResult:
    _seed(cfg)
    enc = get_text_encoder(ENCODER)
    model = scratch_text_cnn(enc.vocab_size, data.n_classes, cfg)
    xtr, ltr = _tokens(data, "pool", data.train_idx)
    xva, lva = _tokens(data, "pool", data.val_idx)
    t0 = time.perf_counter()
    curves = _fit(model, cfg.lr_head * 3, (xtr, ltr), (xva, lva), data, cfg, "scratch")
    train_seconds = time.perf_counter() - t0
    t1 = time.perf_counter()
    val, test = _predict(model, xva, lva), _predict(model, *_tokens(data, "test", data.test_idx))
    return _result(data, engine, engine.cache.stats.extract_seconds, val, test, curves, train_seconds,
                   time.perf_counter() - t1, count_params(model)[0], {"encoder": None}, lambda: model)  # fmt: skip


# ------------------------------------------------------------------------------------------------- transfer


def _emb(data: CellData, engine: FeatureEngine, split: str, idx: np.ndarray) -> np.ndarray:
    return embeddings(engine.cache, data, get_text_encoder(ENCODER), engine.weights.cache_dir, split, idx,
                      data.image_size)  # fmt: skip


def run_linear_probe(data: CellData, spec: Any, cfg: TrainConfig, engine: FeatureEngine) -> FitResult:
    """Logistic regression on the raw embeddings, C chosen from ``PROBE_C_GRID`` on the training texts alone."""
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    from study.probes.similarity import select_c

    before = engine.cache.stats.extract_seconds
    ftr = np.asarray(_emb(data, engine, "pool", data.train_idx), dtype=np.float64)
    fval, ftest = _emb(data, engine, "pool", data.val_idx), _emb(data, engine, "test", data.test_idx)
    t0 = time.perf_counter()
    with threadpool_limits(1):  # 60 small regressions: BLAS threads only fight the sweep's other worker
        c = select_c(ftr, data.y_train, PROBE_C_GRID, 5, cfg.seed)[0]
        clf = LogisticRegression(C=c, max_iter=2000, random_state=cfg.seed).fit(ftr, data.y_train)
    train_seconds = time.perf_counter() - t0
    t1 = time.perf_counter()
    val = _full_proba(clf, fval, data.n_classes)
    test = _full_proba(clf, ftest, data.n_classes)
    return _result(data, engine, before, val, test, [], train_seconds, time.perf_counter() - t1,
                   int(clf.coef_.size + clf.intercept_.size), {"freeze_point": POOLED, "linear_c": c},
                   lambda: _probe_export(engine, clf, data.n_classes))  # fmt: skip


def _token_inputs() -> dict[str, Any]:
    import keras

    return {"token_ids": keras.Input((None,), dtype="int32", name="token_ids"),
            "padding_mask": keras.Input((None,), dtype="int32", name="padding_mask")}  # fmt: skip


def _frozen(engine: FeatureEngine) -> Any:
    encoder = build_text_encoder(get_text_encoder(ENCODER), "pretrained", engine.weights.cache_dir)
    encoder.trainable = False
    return encoder


def _probe_export(engine: FeatureEngine, clf: Any, n_classes: int) -> Any:
    """Frozen MiniLM + the probe as one softmax Dense layer (``probe_dense_weights``)."""
    import keras

    dense = keras.layers.Dense(n_classes, activation="softmax", name="probe")
    inputs = _token_inputs()
    model = keras.Model(inputs, dense(_frozen(engine)(inputs)), name="text_linear_probe")
    dense.set_weights(list(probe_dense_weights(clf, n_classes)))
    return model


def _head_phase(data: CellData, engine: FeatureEngine, cfg: TrainConfig) -> tuple[Any, list, float]:
    ftr, fval = _emb(data, engine, "pool", data.train_idx), _emb(data, engine, "pool", data.val_idx)
    t0 = time.perf_counter()
    weights, curves = train_head(ftr[None] * EMB_SCALE, data.y_train, fval * EMB_SCALE, data.y_val, data.n_classes,
                                 cfg, zero_init=HEAD_ZERO_INIT)  # fmt: skip
    return weights, curves, time.perf_counter() - t0


def run_feature_extraction(data: CellData, spec: Any, cfg: TrainConfig, engine: FeatureEngine) -> FitResult:
    _seed(cfg)
    before = engine.cache.stats.extract_seconds
    weights, curves, seconds = _head_phase(data, engine, cfg)
    fval, ftest = _emb(data, engine, "pool", data.val_idx), _emb(data, engine, "test", data.test_idx)
    t1 = time.perf_counter()
    val, test = weights.predict_proba(fval * EMB_SCALE), weights.predict_proba(ftest * EMB_SCALE)
    return _result(data, engine, before, val, test, curves, seconds, time.perf_counter() - t1,
                   int(weights.kernel.size + weights.bias.size), {"freeze_point": POOLED},
                   lambda: _on_top(_frozen(engine), weights.to_keras(cfg), _token_inputs()))  # fmt: skip


def _on_top(body: Any, head: Any, inputs: dict[str, Any]) -> Any:
    import keras

    return keras.Model(inputs, head(keras.layers.Rescaling(EMB_SCALE)(body(inputs))))


def run_fine_tune_top(data: CellData, spec: Any, cfg: TrainConfig, engine: FeatureEngine) -> FitResult:
    import keras

    _seed(cfg)
    enc_spec = get_text_encoder(ENCODER)
    before = engine.cache.stats.extract_seconds
    k = cfg.top_k or enc_spec.default_top_k
    boundary = enc_spec.freeze_point(k)
    weights, curves, head_seconds = _head_phase(data, engine, cfg)

    def cached(split: str, idx: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
        h, mask = hidden_states(engine.cache, data, enc_spec, engine.weights.cache_dir, split, idx, boundary,
                                data.image_size)  # fmt: skip
        return {"hidden": h, "padding_mask": mask}, mask.sum(axis=1)

    xtr, ltr = cached("pool", data.train_idx)
    xva, lva = cached("pool", data.val_idx)
    encoder = build_text_encoder(enc_spec, "pretrained", engine.weights.cache_dir)
    top = build_top(encoder, boundary)
    inputs = {"hidden": keras.Input((None, enc_spec.hidden), name="hidden"),
              "padding_mask": keras.Input((None,), dtype="int32", name="padding_mask")}  # fmt: skip
    head = weights.to_keras(cfg)
    model = _on_top(top, head, inputs)
    t0 = time.perf_counter()
    curves = curves + _fit(model, cfg.lr_finetune, (xtr, ltr), (xva, lva), data, cfg, "fine_tune")
    train_seconds = head_seconds + time.perf_counter() - t0
    t1 = time.perf_counter()
    val, test = _predict(model, xva, lva), _predict(model, *cached("test", data.test_idx))
    return _result(data, engine, before, val, test, curves, train_seconds, time.perf_counter() - t1,
                   count_params(model)[0], {"freeze_point": boundary, "top_k": k},
                   lambda: _on_top(encoder, head, _token_inputs()))  # fmt: skip (top shares encoder's layers)


def run_full_fine_tune(data: CellData, spec: Any, cfg: TrainConfig, engine: FeatureEngine) -> FitResult:
    import keras

    _seed(cfg)
    enc_spec = get_text_encoder(ENCODER)
    before = engine.cache.stats.extract_seconds
    weights, curves, head_seconds = _head_phase(data, engine, cfg)
    encoder = build_text_encoder(enc_spec, "pretrained", engine.weights.cache_dir)
    encoder.trainable = True
    inputs = {"token_ids": keras.Input((None,), dtype="int32", name="token_ids"),
              "padding_mask": keras.Input((None,), dtype="int32", name="padding_mask")}  # fmt: skip
    model = _on_top(encoder, weights.to_keras(cfg), inputs)
    xtr, ltr = _tokens(data, "pool", data.train_idx)
    xva, lva = _tokens(data, "pool", data.val_idx)
    t0 = time.perf_counter()
    curves = curves + _fit(model, cfg.lr_finetune, (xtr, ltr), (xva, lva), data, cfg, "fine_tune")
    train_seconds = head_seconds + time.perf_counter() - t0
    t1 = time.perf_counter()
    val, test = _predict(model, xva, lva), _predict(model, *_tokens(data, "test", data.test_idx))
    return _result(data, engine, before, val, test, curves, train_seconds, time.perf_counter() - t1,
                   count_params(model)[0], {"freeze_point": None}, lambda: model)  # fmt: skip


_HEAD = ("lr_head", "dropout", "weight_decay")

for _s in (
    Strategy(
        name="text_tfidf_logreg", run=run_tfidf_logreg, modality="text", pretrained=False, baseline=True,
        uses_backbone=False, params=("linear_c",), freeze_level=0,
        recipe="TF-IDF of word 1-2 grams (sublinear tf, vocabulary from the training texts) + scikit-learn logistic "
        "regression (C = 10 x linear_c, tuned): the strong classical text baseline.",
        freeze_text="nothing pretrained: a TF-IDF + logistic-regression classifier",
        seconds_per_image_epoch=0.00002, fixed_seconds=0.5, label="TF-IDF + logistic regression",
        abbreviation="TFIDF", colour="#7f7f7f", order=10,
    ),
    Strategy(
        name="text_scratch_cnn", run=run_scratch_cnn, modality="text", pretrained=False, baseline=True,
        uses_backbone=False, cached=False, params=_HEAD, freeze_level=0,
        recipe="Word-piece embeddings (64-d) + Conv1D(128, 3) + masked max pooling + dropout + dense softmax, "
        "randomly initialised, Adam at 3 x lr_head: a small neural text model trained from scratch.",
        freeze_text="nothing pretrained: train a small convolutional text model from random initialisation",
        seconds_per_image_epoch=0.0008, fixed_seconds=3.0, label="text CNN from scratch", abbreviation="TCNN",
        colour="#bababa", order=11,
    ),
    Strategy(
        name="text_linear_probe", run=run_linear_probe, modality="text", pretrained=True, uses_backbone=False,
        params=(), freeze_level=3,
        recipe="Frozen MiniLM mean-pooled embeddings (cached) + scikit-learn logistic regression, C chosen by 5-fold "
        "cross-validation on the training texts (SentEval's recipe).",
        freeze_text="freeze the whole encoder; fit a logistic regression on its sentence embeddings",
        seconds_per_image_epoch=0.00005, fixed_seconds=1.0, label="text linear probe", abbreviation="TLP",
        colour="#009e73", order=12,
    ),
    Strategy(
        name="text_feature_extraction", run=run_feature_extraction, modality="text", pretrained=True,
        uses_backbone=False, params=_HEAD, freeze_level=3,
        recipe="Frozen MiniLM mean-pooled embeddings (cached) + a new head (dropout + dense softmax) trained with "
        "Adam at lr_head.",
        freeze_text="freeze the whole encoder; train only the new head",
        seconds_per_image_epoch=0.00005, fixed_seconds=1.0, label="text feature extraction", abbreviation="TFE",
        colour="#0072b2", order=13,
    ),
    Strategy(
        name="text_fine_tune_top", run=run_fine_tune_top, modality="text", pretrained=True, uses_backbone=False,
        params=(*_HEAD, "lr_finetune"), freeze_level=2,
        recipe="Head phase as text_feature_extraction, then the top 2 transformer layers (TrainConfig.top_k if set) + "
        "head at lr_finetune, trained on hidden states cached at the freeze point (layer_3's output).",
        freeze_text="freeze all but the top 2 transformer layers; head first, then those layers",
        seconds_per_image_epoch=0.01, fixed_seconds=8.0, label="text fine-tune top layers", abbreviation="TFT-top",
        colour="#d55e00", order=14,
    ),
    Strategy(
        name="text_full_fine_tune", run=run_full_fine_tune, modality="text", pretrained=True, uses_backbone=False,
        cached=False, params=(*_HEAD, "lr_finetune"), freeze_level=1,
        recipe="Head phase as text_feature_extraction, then every encoder layer + head at lr_finetune on tokens.",
        freeze_text="head first, then unfreeze the whole encoder",
        seconds_per_image_epoch=0.03, fixed_seconds=12.0, label="text fine-tune everything", abbreviation="TFT-all",
        colour="#cc79a7", order=15,
    ),
):
    register_strategy(_s)
