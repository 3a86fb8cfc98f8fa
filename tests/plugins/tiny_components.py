"""Tiny components registered exactly like real ones, so engine, store, tuning, advisor and report tests run in seconds.

- ``tiny_shapes``: an image-folder dataset of 3 classes (stripes one way, the other way, a checkerboard, in random
  colours with noise), 48 images each at 24 px, written once into ``$TINY_COMPONENTS_DIR`` (default: the test cache).
- ``tiny_cnn``: a 3-block convolutional backbone (about 6 k parameters) with named block boundaries, whose
  "ImageNet weights" come from a few seeded epochs on the tiny dataset, saved once to a weights file and found and
  loaded through its own ``Builder`` record like the real backbones' files.
- ``tiny_other``: the same network trained less, so backbone comparisons have two backbones.

The module is a plugin (``--plugin tiny_components``): sweeps import it in every worker, local or Ray, and get the
same files (written atomically, deterministic).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from study.data.datasets import DATASETS, DatasetSpec
from study.zoo.backbones import BACKBONES, BackboneSpec, Builder

REPO = Path(__file__).resolve().parents[2]
ROOT = Path(os.environ.get("TINY_COMPONENTS_DIR", REPO / ".cache" / "test" / "tiny-components"))
CLASSES = ("checker", "horizontal", "vertical")
PER_CLASS = 48
SIZE = 24


def _image(kind: str, rng: np.random.Generator) -> np.ndarray:
    period = int(rng.integers(3, 7))
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    phase = int(rng.integers(0, period))
    if kind == "horizontal":
        mask = ((yy + phase) // period) % 2
    elif kind == "vertical":
        mask = ((xx + phase) // period) % 2
    else:
        mask = (((yy + phase) // period) + ((xx + phase) // period)) % 2
    fg, bg = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    img = np.where(mask[..., None] == 1, fg, bg) + rng.normal(0, 20, (SIZE, SIZE, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def dataset_folder() -> Path:
    """The tiny dataset's folder, written once (a half-written folder is never seen: it is renamed into place)."""
    folder = ROOT / "tiny_shapes"
    if folder.is_dir():
        return folder
    from PIL import Image

    ROOT.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=ROOT, prefix=".tiny_shapes-"))
    rng = np.random.default_rng(0)
    for kind in CLASSES:
        (staging / kind).mkdir()
        for i in range(PER_CLASS):
            Image.fromarray(_image(kind, rng)).save(staging / kind / f"{kind}_{i:03d}.png")
    try:
        staging.rename(folder)
    except OSError:  # another process won the race: its folder is identical
        import shutil

        shutil.rmtree(staging, ignore_errors=True)
    return folder


def _build(spec: BackboneSpec, image_size: int) -> Any:
    import keras

    inp = keras.Input((image_size, image_size, 3))
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", name="stem_conv")(inp)
    x = keras.layers.BatchNormalization(name="stem_bn")(x)
    x = keras.layers.ReLU(name="stem_relu")(x)
    for i, filters in enumerate((16, 24), 1):
        x = keras.layers.Conv2D(filters, 3, padding="same", name=f"block{i}_conv")(x)
        x = keras.layers.BatchNormalization(name=f"block{i}_bn")(x)
        x = keras.layers.ReLU(name=f"block{i}_out")(x)
        x = keras.layers.MaxPooling2D(name=f"block{i}_pool")(x) if i == 1 else x
    x = keras.layers.Conv2D(32, 1, name="top_conv")(x)
    x = keras.layers.ReLU(name="top_relu")(x)
    return keras.Model(inp, x, name=spec.name)


def _weights_path(spec: BackboneSpec) -> Path:
    return ROOT / "weights" / spec.weights_file


def _find(spec: BackboneSpec, home: Path) -> Path | None:
    path = _weights_path(spec)
    return path if path.is_file() else None


def _fetch(spec: BackboneSpec, home: Path) -> Path:
    """'Pretrained' weights, made once (the stand-in for a download): a seeded network trained for a few epochs to
    tell the tiny dataset's patterns apart, so its frozen features carry information as real ones do."""
    import keras

    from study.data.loaders import load_dataset

    keras.utils.set_random_seed(int(spec.kwargs["seed"]))
    model = _build(spec, SIZE)
    data = load_dataset("tiny_shapes", SIZE, [ROOT], ROOT, use_cache=False)
    head = keras.layers.Dense(len(CLASSES), activation="softmax")(keras.layers.GlobalAveragePooling2D()(model.output))
    clf = keras.Model(model.input, head)
    clf.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy")
    x = data.pool.images.astype("float32") / 127.5 - 1.0  # the "tf" preprocessing mode
    clf.fit(x, data.pool.labels, epochs=int(spec.kwargs["epochs"]), batch_size=32, verbose=0)
    path = _weights_path(spec)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.weights.h5")
    model.save_weights(str(tmp))
    os.replace(tmp, path)
    return path


def _load(model: Any, path: Path) -> None:
    model.load_weights(str(path))


TINY = Builder("tiny (tests)", _build, _find, _fetch, _load)
BLOCKS = ("stem_relu", "block1_pool", "block2_out", "top_relu")


def _register() -> None:
    if "tiny_shapes" not in DATASETS:
        folder = dataset_folder()
        DATASETS.register(DatasetSpec(
            name="tiny_shapes", domain="natural", format="image_folder", folder=folder.name, pool_parts=("",),
            test_split="fixed_fraction", test_fraction=0.25, class_names=CLASSES,
            expected_counts=(len(CLASSES) * PER_CLASS * 3 // 4, len(CLASSES) * PER_CLASS // 4), root=folder,
            homepage="tests/plugins/tiny_components.py", description="generated stripes and checkerboards (tests)",
            checksum_note="generated deterministically by the tests: nothing to download",
        ))  # fmt: skip
    for name, seed, epochs in (("tiny_cnn", 1, 12), ("tiny_other", 2, 3)):
        if name not in BACKBONES:
            BACKBONES.register(BackboneSpec(
                name=name, constructor=name, preprocess="", preprocess_mode="tf", weights_file=f"{name}.weights.h5",
                weights_url="generated by tests/plugins/tiny_components.py", blocks=BLOCKS, default_top_k=1,
                min_size=8, family="tiny", builder=TINY, kwargs={"seed": seed, "epochs": epochs},
                imagenet_top1=50.0 + seed,  # invented for the tests: the registry field must hold something
            ))  # fmt: skip


_register()
