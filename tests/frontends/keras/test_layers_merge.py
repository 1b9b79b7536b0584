"""Concatenate, Add and Multiply in multi-input functional models, on the reference runtime."""

from __future__ import annotations

import numpy as np
import pytest

from kiln.frontends.keras import layers
from kiln.frontends.keras.model import Model
from kiln.ir import KilnValueError
from kiln.runtimes.reference import run_graph

RNG = np.random.default_rng(2)


def predict(model: Model, xs: list[np.ndarray]) -> np.ndarray:
    fg = model.forward_graph(training=False)
    state = {name: var.value for name, var in fg.variables.items()}
    outputs, _ = run_graph(fg.graph, dict(zip(model.input_names, xs)), state)
    return outputs[model.output_names[0]]


def arrays(*shapes: tuple) -> list[np.ndarray]:
    return [RNG.normal(size=s).astype(np.float32) for s in shapes]


@pytest.mark.parametrize("layer, fold", [(layers.Add, np.add), (layers.Multiply, np.multiply)])
def test_elementwise_merge_of_three_inputs(layer: type, fold: np.ufunc) -> None:
    inputs = [layers.Input(shape=(3, 4)) for _ in range(3)]
    model = Model(inputs, layer()(inputs))
    xs = arrays((2, 3, 4), (2, 3, 4), (2, 3, 4))
    assert model.outputs[0].shape == (None, 3, 4)
    np.testing.assert_allclose(predict(model, xs), fold(fold(xs[0], xs[1]), xs[2]), rtol=1e-6)
    assert model.count_params() == 0


@pytest.mark.parametrize("layer, fold", [(layers.Add, np.add), (layers.Multiply, np.multiply)])
def test_elementwise_merge_broadcasts_like_keras(layer: type, fold: np.ufunc) -> None:
    """A size-1 axis broadcasts; a lower-rank input gains axes after the batch axis."""
    a, b, c = layers.Input(shape=(3, 1)), layers.Input(shape=(3, 4)), layers.Input(shape=(4,))
    model = Model([a, b, c], layer()([a, b, c]))
    xa, xb, xc = arrays((2, 3, 1), (2, 3, 4), (2, 4))
    assert model.outputs[0].shape == (None, 3, 4)
    expected = fold(fold(xa, xb), xc[:, None, :])
    np.testing.assert_allclose(predict(model, [xa, xb, xc]), expected, rtol=1e-6)


def test_add_in_a_residual_block() -> None:
    """Dense -> Add with the block's input, the residual connection of the book's chapter 9."""
    inputs = layers.Input(shape=(4,))
    dense = layers.Dense(4, activation="relu")
    outputs = layers.add([inputs, dense(inputs)])
    model = Model(inputs, outputs)
    kernel, bias = arrays((4, 4), (4,))
    model.set_weights([kernel, bias])
    (x,) = arrays((3, 4))
    np.testing.assert_allclose(predict(model, [x]), x + np.maximum(x @ kernel + bias, 0),
                               rtol=1e-5, atol=1e-6)


def test_functional_shortcuts() -> None:
    a, b = layers.Input(shape=(2,)), layers.Input(shape=(2,))
    xa, xb = arrays((3, 2), (3, 2))
    for fn, expected in ((layers.add, xa + xb), (layers.multiply, xa * xb),
                         (layers.concatenate, np.concatenate([xa, xb], -1))):
        np.testing.assert_allclose(predict(Model([a, b], fn([a, b])), [xa, xb]), expected,
                                   rtol=1e-6)


def test_elementwise_merge_incompatible_shapes() -> None:
    a, b = layers.Input(shape=(3,)), layers.Input(shape=(4,))
    with pytest.raises(KilnValueError, match=r"layer 'sum'.*incompatible shapes. "
                                             r"Received shapes \(3,\) and \(4,\)"):
        layers.Add(name="sum")([a, b])


def test_merge_batch_sizes_must_agree() -> None:
    a = layers.Input(shape=(3,), batch_size=2)
    b = layers.Input(shape=(3,), batch_size=5)
    with pytest.raises(KilnValueError, match="different batch sizes"):
        layers.Multiply()([a, b])


def test_merge_needs_a_list() -> None:
    with pytest.raises(KilnValueError, match="expects a list of inputs"):
        layers.Add()(layers.Input(shape=(3,)))
    with pytest.raises(KilnValueError, match="at least 1 input"):
        layers.Concatenate()([])


# -- Concatenate ----------------------------------------------------------------------------
@pytest.mark.parametrize("axis", [-1, 1, 2])
def test_concatenate(axis: int) -> None:
    shapes = {-1: [(2, 3), (2, 5)], 1: [(1, 3), (4, 3)], 2: [(2, 3), (2, 5)]}[axis]
    inputs = [layers.Input(shape=s) for s in shapes]
    layer = layers.Concatenate(axis=axis)
    model = Model(inputs, layer(inputs))
    xs = arrays(*[(2, *s) for s in shapes])
    expected = np.concatenate(xs, axis=axis)
    assert model.outputs[0].shape == (None, *expected.shape[1:])
    np.testing.assert_array_equal(predict(model, xs), expected)
    assert layer.get_config()["axis"] == axis


def test_concatenate_feeds_a_dense_layer() -> None:
    """The book's two-input question-answering shape: concatenate, then Dense."""
    text, question = layers.Input(shape=(3,), name="text"), layers.Input(shape=(2,), name="q")
    merged = layers.concatenate([text, question], axis=-1)
    model = Model([text, question], layers.Dense(1)(merged))
    assert model.input_names == ["text", "q"]
    kernel, bias = arrays((5, 1), (1,))
    model.set_weights([kernel, bias])
    xt, xq = arrays((4, 3), (4, 2))
    np.testing.assert_allclose(predict(model, [xt, xq]),
                               np.concatenate([xt, xq], -1) @ kernel + bias, rtol=1e-5)


@pytest.mark.parametrize("shapes", [[(3, 4), (5, 2)], [(3, 4), (3,)]])
def test_concatenate_incompatible_shapes(shapes: list) -> None:
    inputs = [layers.Input(shape=s) for s in shapes]
    with pytest.raises(KilnValueError, match=r"layer 'cat'.*matching shapes except for the "
                                             r"concatenation axis") as err:
        layers.Concatenate(name="cat")(inputs)
    for s in shapes:
        assert str((None, *s)) in str(err.value)


def test_concatenate_axis_out_of_range() -> None:
    inputs = [layers.Input(shape=(3,)), layers.Input(shape=(3,))]
    with pytest.raises(KilnValueError, match="axis=3"):
        layers.Concatenate(axis=3)(inputs)
    with pytest.raises(KilnValueError, match="axis='x'"):
        layers.Concatenate(axis="x")
