"""Embedding: table lookups on the reference runtime, its weight, and its gradient (a sum of
the output cotangents into the rows looked up)."""

from __future__ import annotations

import numpy as np
import pytest

from kiln.frontends.keras import layers
from kiln.frontends.keras.model import Model
from kiln.frontends.keras.sequential import Sequential
from kiln.ir import KilnValueError, grad
from kiln.runtimes.reference import run_graph

RNG = np.random.default_rng(4)


def predict(model: Model, x: np.ndarray) -> np.ndarray:
    fg = model.forward_graph(training=False)
    state = {name: var.value for name, var in fg.variables.items()}
    outputs, _ = run_graph(fg.graph, {model.input_names[0]: x}, state)
    return outputs[model.output_names[0]]


def test_weight_shape_and_default_initializer() -> None:
    layer = layers.Embedding(1000, 8)
    model = Sequential([layers.Input(shape=(5,), dtype="int32"), layer])
    assert [w.path for w in model.weights] == [f"{layer.name}/embeddings"]
    assert layer.embeddings.shape == (1000, 8) and layer.embeddings.trainable
    table = layer.embeddings.numpy()
    assert np.abs(table).max() <= 0.05  # Keras's "uniform": RandomUniform(-0.05, 0.05)
    assert np.abs(table).max() > 0.045 and abs(table.mean()) < 0.005
    assert model.count_params() == 8000
    assert model.outputs[0].shape == (None, 5, 8)


@pytest.mark.parametrize("dtype", ["int32", "int64"])
def test_lookup(dtype: str) -> None:
    model = Sequential([layers.Input(shape=(4,), dtype=dtype), layers.Embedding(10, 3)])
    table = RNG.normal(size=(10, 3)).astype(np.float32)
    model.set_weights([table])
    ids = RNG.integers(0, 10, size=(2, 4)).astype(dtype)
    np.testing.assert_array_equal(predict(model, ids), table[ids])


def test_float_ids_are_cast_to_int32() -> None:
    """Sequential's default input is float32, as in Keras; the ids are cast before the lookup."""
    model = Sequential([layers.Embedding(10, 2, input_shape=(3,))])
    assert model.inputs[0].dtype == "float32"
    table = RNG.normal(size=(10, 2)).astype(np.float32)
    model.set_weights([table])
    ids = np.array([[0, 9, 4], [1, 1, 2]])
    np.testing.assert_array_equal(predict(model, ids.astype(np.float32)), table[ids])


def test_book_embedding_classifier() -> None:
    """Deep Learning with Python's first embedding model: Embedding(10000, 8, input_length=20),
    Flatten, Dense(1, sigmoid). input_length is Keras 2's and, as in Keras 3, ignored."""
    with pytest.warns(UserWarning, match="input_length"):
        embedding = layers.Embedding(10000, 8, input_length=20)
    model = Sequential([layers.Input(shape=(20,), dtype="int32"), embedding, layers.Flatten(),
                        layers.Dense(1, activation="sigmoid")])
    assert model.count_params() == 80161
    table, kernel, bias = model.get_weights()
    ids = RNG.integers(0, 10000, size=(3, 20)).astype(np.int32)
    logits = table[ids].reshape(3, 160) @ kernel + bias
    np.testing.assert_allclose(predict(model, ids), 1 / (1 + np.exp(-logits)), rtol=1e-5)


def test_gradient_scatters_into_the_looked_up_rows() -> None:
    ids_in = layers.Input(shape=(3,), dtype="int32", name="ids")
    model = Model(ids_in, layers.Embedding(5, 2, name="emb")(ids_in))
    fg = model.forward_graph(training=True)
    graph = grad(fg.graph, of=model.output_names[0], wrt=["emb.embeddings"])
    ids = np.array([[0, 2, 2], [4, 2, 0]], np.int32)
    state = {name: var.value for name, var in fg.variables.items()}
    outputs, _ = run_graph(graph, {"ids": ids}, state)
    counts = np.bincount(ids.ravel(), minlength=5).astype(np.float32)
    np.testing.assert_array_equal(outputs["grad.emb.embeddings"], np.repeat(counts[:, None], 2, 1))


def test_initial_weights_and_initializer_argument() -> None:
    table = np.arange(6, dtype=np.float32).reshape(3, 2)
    layer = layers.Embedding(3, 2, weights=[table])
    Sequential([layers.Input(shape=(1,), dtype="int32"), layer])
    np.testing.assert_array_equal(layer.get_weights()[0], table)
    zeros = layers.Embedding(3, 2, embeddings_initializer="zeros")
    Sequential([layers.Input(shape=(1,), dtype="int32"), zeros])
    np.testing.assert_array_equal(zeros.get_weights()[0], 0)


def test_config() -> None:
    config = layers.Embedding(100, 16, name="words").get_config()
    assert config["input_dim"] == 100 and config["output_dim"] == 16
    assert config["embeddings_initializer"] == "uniform" and config["mask_zero"] is False
    assert config["name"] == "words"


def test_errors() -> None:
    with pytest.raises(KilnValueError, match="input_dim=0"):
        layers.Embedding(0, 2)
    with pytest.raises(KilnValueError, match="output_dim=-1"):
        layers.Embedding(10, -1)
    with pytest.raises(KilnValueError, match=r"expected weights of shape \(10, 2\)"):
        layers.Embedding(10, 2, weights=[np.zeros((3, 2))])
    model = Sequential([layers.Input(shape=(2,), dtype="int32"), layers.Embedding(4, 2)])
    with pytest.raises(KilnValueError, match=r"expected indices in \[0, 4\)"):
        predict(model, np.array([[1, 4]], np.int32))
