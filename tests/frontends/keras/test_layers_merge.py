"""The merge layers (Concatenate, Add, Subtract, Multiply, Average, Maximum, Minimum, Dot) in
multi-input functional models, on the reference runtime."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kiln.frontends.keras import layers
from kiln.frontends.keras.model import Model
from kiln.ir import KilnTypeError, KilnValueError
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


# -- Subtract, Average, Maximum, Minimum -----------------------------------------------------
@pytest.mark.parametrize("layer, fold", [(layers.Maximum, np.maximum),
                                         (layers.Minimum, np.minimum)])
def test_maximum_and_minimum_broadcast_like_add(layer: type, fold: np.ufunc) -> None:
    a, b, c = layers.Input(shape=(3, 1)), layers.Input(shape=(3, 4)), layers.Input(shape=(4,))
    model = Model([a, b, c], layer()([a, b, c]))
    xa, xb, xc = arrays((2, 3, 1), (2, 3, 4), (2, 4))
    np.testing.assert_array_equal(predict(model, [xa, xb, xc]),
                                  fold(fold(xa, xb), xc[:, None, :]))


def test_subtract_and_average() -> None:
    a, b, c = (layers.Input(shape=(3,)) for _ in range(3))
    xa, xb, xc = arrays((2, 3), (2, 3), (2, 3))
    np.testing.assert_allclose(predict(Model([a, b], layers.subtract([a, b])), [xa, xb]),
                               xa - xb, rtol=1e-6)
    np.testing.assert_allclose(predict(Model([a, b, c], layers.average([a, b, c])),
                                       [xa, xb, xc]), (xa + xb + xc) / 3, rtol=1e-6)
    for fn, want in ((layers.maximum, np.maximum(xa, xb)), (layers.minimum, np.minimum(xa, xb))):
        np.testing.assert_array_equal(predict(Model([a, b], fn([a, b])), [xa, xb]), want)
    with pytest.raises(KilnValueError, match=r"'diff'.*`Subtract` layer should be called on a "
                                             r"list of exactly 2 input\(s\). Got 3 inputs"):
        layers.Subtract(name="diff")([a, b, c])


# -- Dot -----------------------------------------------------------------------------------
def batch_dot(x: np.ndarray, y: np.ndarray, a1: int, a2: int) -> np.ndarray:
    """Keras's batch_dot per sample: tensordot over (a1, a2), then (batch,) -> (batch, 1)."""
    out = np.stack([np.tensordot(xi, yi, axes=(a1 - 1, a2 - 1)) for xi, yi in zip(x, y)])
    return out.reshape(len(x), 1) if out.ndim == 1 else out


@settings(max_examples=25, deadline=None)
@given(st.data())
def test_dot_matches_numpy_batch_dot(data: st.DataObject) -> None:
    rank1, rank2 = data.draw(st.integers(2, 4)), data.draw(st.integers(2, 4))
    dims = st.integers(1, 3)
    s1 = [data.draw(dims) for _ in range(rank1 - 1)]
    s2 = [data.draw(dims) for _ in range(rank2 - 1)]
    a1, a2 = data.draw(st.integers(1, rank1 - 1)), data.draw(st.integers(1, rank2 - 1))
    s2[a2 - 1] = s1[a1 - 1]
    negative = data.draw(st.booleans())
    axes = [a1 - rank1, a2 - rank2] if negative else [a1, a2]
    normalize = data.draw(st.booleans())
    x, y = layers.Input(shape=tuple(s1)), layers.Input(shape=tuple(s2))
    model = Model([x, y], layers.Dot(axes=axes, normalize=normalize)([x, y]))
    xs = arrays((2, *s1), (2, *s2))
    if normalize:
        want = batch_dot(xs[0] / np.linalg.norm(xs[0], axis=a1, keepdims=True),
                         xs[1] / np.linalg.norm(xs[1], axis=a2, keepdims=True), a1, a2)
    else:
        want = batch_dot(xs[0], xs[1], a1, a2)
    assert model.outputs[0].shape == (None, *want.shape[1:])
    np.testing.assert_allclose(predict(model, xs), want, rtol=1e-5, atol=1e-6)


def test_dot_of_one_axis_for_both_and_errors() -> None:
    a, b = layers.Input(shape=(4,)), layers.Input(shape=(4,))
    xa, xb = arrays((3, 4), (3, 4))
    cosine = predict(Model([a, b], layers.dot([a, b], axes=1, normalize=True)), [xa, xb])
    want = (xa * xb).sum(1) / np.linalg.norm(xa, axis=1) / np.linalg.norm(xb, axis=1)
    np.testing.assert_allclose(cosine[:, 0], want, rtol=1e-5)
    assert layers.Dot(axes=[1, 2], normalize=True).get_config()["axes"] == [1, 2]
    with pytest.raises(KilnValueError, match=r"axis values 4 \(at axis 1\) != 3"):
        layers.Dot(axes=1)([a, layers.Input(shape=(3,))])
    with pytest.raises(KilnValueError, match="over axis 0"):
        layers.Dot(axes=0)([a, b])
    with pytest.raises(KilnValueError, match="should contain two integers"):
        layers.Dot(axes=[1, 2, 3])
    with pytest.raises(KilnTypeError, match="should be a list or an int"):
        layers.Dot(axes="1")
