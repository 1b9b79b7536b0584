"""An imported ONNX model as a Keras layer (OnnxModel.as_layer, kiln.layers.GraphLayer):
its outputs, training through it (numba against the reference), freezing, saving."""

from __future__ import annotations

import numpy as np
import pytest

from kiln import layers, models
from kiln.frontends.onnx import import_onnx
from kiln.ir import GraphBuilder, TensorType
from tests.frontends.onnx.test_models import _cnn, _ort


def _backbone_model(trainable: bool = True, seed: int = 0) -> tuple:
    proto = _cnn(np.random.default_rng(seed))
    backbone = import_onnx(proto).as_layer(name="backbone", trainable=trainable)
    inputs = layers.Input((3, 12, 12))
    outputs = layers.Dense(3, activation="softmax", name="head")(backbone(inputs))
    return proto, backbone, models.Model(inputs, outputs)


def test_the_layer_computes_the_onnx_model() -> None:
    proto = _cnn(np.random.default_rng(0))
    inputs = layers.Input((3, 12, 12))
    model = models.Model(inputs, import_onnx(proto).as_layer()(inputs))
    x = np.random.default_rng(1).standard_normal((6, 3, 12, 12)).astype(np.float32)
    (want,) = _ort(proto, {"x": x})
    np.testing.assert_allclose(model.predict(x, verbose=0), want, rtol=1e-5, atol=1e-6)
    assert model.count_params() == import_onnx(proto).count_params()


def _data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(2)
    return rng.standard_normal((24, 3, 12, 12)).astype(np.float32), rng.integers(0, 3, 24)


def test_fine_tuning_trains_the_backbone_alike_on_numba_and_reference() -> None:
    x, y = _data()
    runs, start = {}, None
    for backend in ("reference", "numba"):
        _, backbone, model = _backbone_model()
        start = start or model.get_weights()
        model.set_weights(start)  # the same head for both
        before = [w.numpy() for w in backbone.weights]
        model.compile("sgd", "sparse_categorical_crossentropy", backend=backend)
        history = model.fit(x, y, epochs=2, batch_size=8, shuffle=False, verbose=0)
        after = [w.numpy() for w in backbone.weights]
        assert all(not np.array_equal(a, b) for a, b in zip(before, after, strict=True)), \
            "every backbone weight moves"
        runs[backend] = (history.history["loss"], after)
    np.testing.assert_allclose(runs["numba"][0], runs["reference"][0], rtol=1e-5)
    for a, b in zip(runs["numba"][1], runs["reference"][1], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_a_frozen_backbone_keeps_its_weights_and_saves(tmp_path) -> None:  # noqa: ANN001
    x, y = _data()
    _, backbone, model = _backbone_model(trainable=False)
    before = [w.numpy() for w in backbone.weights]
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    for a, b in zip(before, backbone.weights, strict=True):
        np.testing.assert_array_equal(a, b.numpy())
    assert len(model.trainable_weights) == 2  # the head's kernel and bias
    model.save(tmp_path / "tuned.kiln")
    loaded = models.load_model(tmp_path / "tuned.kiln")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    loaded.fit(x, y, epochs=1, batch_size=8, verbose=0)  # trains on where it stopped


def test_graph_layer_refusals() -> None:
    b = GraphBuilder("g")
    b.output(b.relu(b.input("x", TensorType(("N", "T", 4), "float32"))), "y")
    with pytest.raises(ValueError, match="only symbolic dimension is the batch"):
        layers.GraphLayer(b.build())
    proto = _cnn(np.random.default_rng(0))
    backbone = import_onnx(proto).as_layer()
    with pytest.raises(ValueError, match=r"expected shape \(None, 3, 12, 12\)"):
        backbone(layers.Input((3, 10, 10)))
    with pytest.raises(ValueError, match="no state of"):
        layers.GraphLayer(import_onnx(proto).graph, {"nope": np.zeros(1)})
