"""The per-call fast path of train_on_batch / test_on_batch / predict_on_batch / predict: a
repeated call with arrays of the same kind reuses the checks made once, yet every call still
gets the value checks and the errors of the full path, and the same results."""

from __future__ import annotations

import numpy as np
import pytest

from kiln import layers, models
from kiln.frontends.keras.data import all_finite
from kiln.ir import KilnTypeError, KilnValueError


def _mlp(loss: str = "categorical_crossentropy", metrics=("accuracy",)) -> models.Model:  # noqa: ANN001
    model = models.Sequential([layers.Input((6,)), layers.Dense(8, activation="relu"),
                               layers.Dense(3, activation="softmax")])
    model.compile(optimizer="rmsprop", loss=loss, metrics=list(metrics))
    return model


def _data(n: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rs = np.random.default_rng(seed)
    x = rs.standard_normal((n, 6)).astype(np.float32)
    labels = rs.integers(0, 3, n)
    return x, labels, np.eye(3, dtype=np.float32)[labels]


def test_cached_calls_equal_the_full_path() -> None:
    """Arrays take the fast path from the second call on; nested lists never do: the two
    twins stay equal step by step, and their logs have the same keys and order."""
    fast, slow = _mlp(), _mlp()
    slow.set_weights(fast.get_weights())
    for step in range(4):
        x, _, y = _data(seed=step)
        a = fast.train_on_batch(x, y)
        b = slow.train_on_batch(x.tolist(), y.tolist())
        np.testing.assert_allclose(a, b, rtol=1e-6)
        assert fast.train_on_batch(x, y, return_dict=True).keys() == \
            slow.train_on_batch(x.tolist(), y.tolist(), return_dict=True).keys()
        np.testing.assert_allclose(fast.test_on_batch(x, y), slow.test_on_batch(x.tolist(), y),
                                   rtol=1e-6)
        np.testing.assert_allclose(fast.predict_on_batch(x), slow.predict_on_batch(x.tolist()),
                                   rtol=1e-6)
        np.testing.assert_allclose(fast.predict(x, verbose=0, batch_size=5),
                                   slow.predict(x.tolist(), verbose=0, batch_size=5), rtol=1e-6)
    assert fast._plans  # the fast path was taken (arrays), and never for lists
    assert all(key[1] is not None for key in fast._plans)


def test_value_checks_run_on_every_cached_call() -> None:
    model = _mlp()
    x, _, y = _data()
    model.train_on_batch(x, y)
    model.train_on_batch(x, y)  # cached
    bad = x.copy()
    bad[3, 2] = np.nan
    with pytest.raises(KilnValueError, match=r"finite values in x.*NaN at index \(3, 2\)"):
        model.train_on_batch(bad, y)
    bad[3, 2] = np.inf
    with pytest.raises(KilnValueError, match="inf at index"):
        model.predict_on_batch(bad)
    with pytest.raises(KilnValueError, match="Data cardinality is ambiguous"):
        model.train_on_batch(x, y[:-1])
    with pytest.raises(KilnValueError, match="at least one sample"):
        model.train_on_batch(x[:0], y[:0])
    with pytest.raises(KilnValueError, match="finite values in y"):
        model.test_on_batch(x, np.full_like(y, np.inf))


def test_a_new_dtype_or_shape_is_checked_again() -> None:
    model = _mlp()
    x, _, y = _data()
    model.train_on_batch(x, y)
    model.train_on_batch(x, y)
    # another dtype: checked in full (and cast), same result as float32
    loss64 = model.test_on_batch(x.astype(np.float64), y)
    np.testing.assert_allclose(loss64, model.test_on_batch(x, y), rtol=1e-6)
    with pytest.raises(KilnValueError, match=r"incompatible with the data.*x.shape=\(16, 5\)"):
        model.train_on_batch(x[:, :5], y)
    with pytest.raises(KilnValueError, match="incompatible"):
        model.predict_on_batch(np.zeros((2, 7), np.float32))
    with pytest.raises(KilnTypeError, match="hold numbers"):
        model.train_on_batch(x.astype(str), y)
    with pytest.raises(KilnValueError, match="same shape"):
        model.train_on_batch(x, y[:, :2])
    model.train_on_batch(x, y)  # the cached kind still works after the errors


def test_sparse_labels_are_checked_on_every_call() -> None:
    model = _mlp(loss="sparse_categorical_crossentropy")
    x, labels, _ = _data()
    model.train_on_batch(x, labels)
    model.train_on_batch(x, labels)
    with pytest.raises(KilnValueError, match="outside the valid range"):
        model.train_on_batch(x, np.where(labels == 0, 3, labels))
    with pytest.raises(KilnValueError, match="outside the valid range"):
        model.train_on_batch(x, labels - 1)
    floats = labels.astype(np.float32)
    model.train_on_batch(x, floats)
    model.train_on_batch(x, floats)  # the float kind cached too
    with pytest.raises(KilnValueError, match="non-integer values"):
        model.train_on_batch(x, floats + 0.5)


def test_integer_inputs_from_floats_are_checked_on_every_call() -> None:
    model = models.Sequential([layers.Input((5,), dtype="int32"), layers.Embedding(10, 4),
                               layers.Flatten(), layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer="sgd", loss="binary_crossentropy")
    x = np.arange(20, dtype=np.float32).reshape(4, 5) % 10
    y = np.ones((4, 1), np.float32)
    model.train_on_batch(x, y)
    model.train_on_batch(x, y)
    with pytest.raises(KilnValueError, match="fractional values"):
        model.train_on_batch(x + 0.25, y)


def test_sample_weights_and_dict_inputs() -> None:
    a, b = layers.Input((3,), name="a"), layers.Input((2,), name="b")
    out = layers.Dense(1)(layers.Concatenate()([a, b]))
    model = models.Model([a, b], out)
    model.compile(optimizer="sgd", loss="mse")
    rs = np.random.default_rng(1)
    xa, xb = rs.standard_normal((8, 3)), rs.standard_normal((8, 2))
    y, w = rs.standard_normal((8, 1)), rs.random(8)
    first = model.test_on_batch({"a": xa, "b": xb}, y, sample_weight=w)
    again = model.test_on_batch({"a": xa, "b": xb}, y, sample_weight=w)
    assert first == again == model.test_on_batch([xa, xb], y, sample_weight=w[:, None])
    assert model.test_on_batch({"a": xa, "b": xb}, y) != first  # unweighted: another kind
    with pytest.raises(KilnValueError, match="with the keys"):
        model.predict_on_batch({"a": xa, "c": xb})
    with pytest.raises(KilnValueError, match="1D array with one weight per sample"):
        model.test_on_batch({"a": xa, "b": xb}, y, sample_weight=np.ones((8, 2)))
    with pytest.raises(KilnValueError, match="finite values in sample_weight"):
        model.test_on_batch({"a": xa, "b": xb}, y, sample_weight=np.full(8, np.nan))


def test_recompile_and_replaced_state_drop_the_cache() -> None:
    model = _mlp()
    x, labels, y = _data()
    model.train_on_batch(x, y)
    model.train_on_batch(x, y)
    model.compile(optimizer="rmsprop", loss="sparse_categorical_crossentropy")
    assert not model._plans
    with pytest.raises(KilnValueError, match="integer class labels of shape"):
        model.train_on_batch(x, y)  # one-hot targets no longer fit the loss
    model.train_on_batch(x, labels)
    # a weight's array replaced (not written in place): the executable follows it
    dense = model.layers[-1]
    dense.kernel.value = np.zeros_like(dense.kernel.value)
    bias = dense.bias.value.astype(np.float64)
    expected = np.exp(bias) / np.exp(bias).sum()
    np.testing.assert_allclose(model.predict_on_batch(x), np.tile(expected, (16, 1)),
                               rtol=1e-5)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_all_finite_equals_numpy(dtype) -> None:  # noqa: ANN001
    rs = np.random.default_rng(0)
    a = (rs.standard_normal((37, 5)) * 100).astype(dtype)
    assert all_finite(a) and all_finite(a[:, ::2]) and all_finite(a[:0])
    assert all_finite(np.full(4, np.finfo(dtype).max, dtype))  # large, not infinite
    for value in (np.inf, -np.inf, np.nan):
        for where in ((0, 0), (36, 4), (17, 2)):
            b = a.copy()
            b[where] = value
            assert not all_finite(b) and not all_finite(b.T)


def test_multi_output_targets_by_list_and_dict() -> None:
    """Two outputs, one without a loss: y as a dict of the needed target or a list of both;
    the cached calls equal the full path's (nested lists), and a bad label still raises."""
    def build() -> models.Model:  # new layers each time: the twins share no weights
        inp = layers.Input((4,), name="inp")
        hidden = layers.Dense(5, activation="relu")(inp)
        cls = layers.Dense(3, activation="softmax", name="cls")(hidden)
        model = models.Model(inp, [cls, layers.Dense(2, name="aux")(hidden)])
        model.compile(optimizer="sgd", loss=["sparse_categorical_crossentropy", None],
                      metrics=[["accuracy"], []])
        return model

    fast = build()
    slow = build()
    slow.set_weights(fast.get_weights())
    rs = np.random.default_rng(3)
    x = rs.standard_normal((6, 4)).astype(np.float32)
    labels, extra = rs.integers(0, 3, 6), rs.standard_normal((6, 2)).astype(np.float32)
    for _ in range(3):
        np.testing.assert_allclose(fast.train_on_batch(x, {"cls": labels}),
                                   slow.train_on_batch(x.tolist(), {"cls": labels.tolist()}),
                                   rtol=1e-6)
        np.testing.assert_allclose(fast.test_on_batch(x, [labels, extra]),
                                   slow.test_on_batch(x.tolist(), [labels.tolist(), extra]),
                                   rtol=1e-6)
    assert len(fast._plans) == 2 and not slow._plans  # both kinds cached, lists never
    with pytest.raises(KilnValueError, match="outside the valid range"):
        fast.train_on_batch(x, {"cls": labels + 3})
    with pytest.raises(KilnValueError, match="Data cardinality"):
        fast.test_on_batch(x, [labels, extra[:5]])
    with pytest.raises(KilnValueError, match="finite values in y\\[1\\]"):
        fast.test_on_batch(x, [labels, np.full_like(extra, np.nan)])


@pytest.mark.parametrize("buffers", [1, 2])
def test_shuffled_batches_stay_intact_for_as_many_steps_as_buffers(buffers: int) -> None:
    """Dataset.batches gathers shuffled samples into `buffers` sets in turn: with 2, a batch
    held while the next one is drawn (fit prefetching to a device) keeps its samples."""
    from kiln.frontends.keras.data import Dataset

    x = np.arange(20, dtype=np.float32).reshape(10, 2)
    data = Dataset({"x": x}, 10)
    drawn = list(data.batches(3, True, np.random.default_rng(0), buffers=buffers))
    order = np.random.default_rng(0).permutation(10)
    expected = [x[order[s:s + 3]] for s in range(0, 10, 3)]
    assert [n for _, n in drawn] == [3, 3, 3, 1]
    held = [feed["x"] for feed, _ in drawn]  # each batch as left after every draw
    intact = [np.array_equal(h, e) for h, e in zip(held, expected, strict=True)]
    # the last `buffers` batches drawn are intact; with one buffer, earlier ones were
    # overwritten by later draws
    assert intact[-buffers:] == [True] * buffers
    if buffers == 1:
        assert not all(intact)
    fresh = data.batches(3, True, np.random.default_rng(0), buffers=2)
    previous = next(fresh)[0]["x"]
    for feed, _ in fresh:
        assert not np.shares_memory(previous, feed["x"])
        previous = feed["x"]
