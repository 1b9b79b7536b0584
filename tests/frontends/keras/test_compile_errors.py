"""Bad arguments and bad data are refused before any work, with Keras-style messages naming
the argument and the shapes, and a call that fails leaves the model exactly as it was."""

from __future__ import annotations

import re

import numpy as np
import pytest

from kiln import layers, losses, models, optimizers
from kiln.ir import KilnError, KilnTypeError, KilnValueError

rs = np.random.default_rng(0)
X = rs.standard_normal((12, 4)).astype(np.float32)
LABELS = rs.integers(0, 3, 12)
ONEHOT = np.eye(3, dtype=np.float32)[LABELS]


def _model(loss: str = "sparse_categorical_crossentropy") -> models.Sequential:
    model = models.Sequential([layers.Input((4,)), layers.Dense(5, activation="relu"),
                               layers.Dense(3, activation="softmax")])
    model.compile(optimizer="adam", loss=loss, metrics=["accuracy"])
    return model


def _with(array: np.ndarray, index: tuple, value: float) -> np.ndarray:
    array = array.copy()
    array[index] = value
    return array


FIT_ERRORS = [
    ("length mismatch", dict(x=X, y=LABELS[:9]), KilnValueError,
     "Data cardinality is ambiguous. Make sure all arrays contain the same number of samples. "
     "'x' sizes: 12; 'y' sizes: 9"),
    ("feature shape", dict(x=np.zeros((12, 5), np.float32), y=LABELS), KilnValueError,
     "expected shape (None, 4). Received: x.shape=(12, 5)"),
    ("rank", dict(x=np.zeros((12, 4, 1), np.float32), y=LABELS), KilnValueError,
     "x.shape=(12, 4, 1)"),
    ("strings", dict(x=np.full((12, 4), "a"), y=LABELS), KilnTypeError,
     "Expected x to hold numbers (bool, int or float). Received: x with dtype <U1"),
    ("objects", dict(x=X.astype(object), y=LABELS), KilnTypeError, "dtype object"),
    ("ragged", dict(x=[[1.0, 2.0], [3.0]], y=LABELS), KilnValueError, "rectangular"),
    ("nan in x", dict(x=_with(X, (2, 1), np.nan), y=LABELS), KilnValueError,
     "Expected finite values in x. Received: x contains NaN at index (2, 1)"),
    ("inf in y", dict(x=X, y=_with(ONEHOT, (5, 0), np.inf), loss="categorical_crossentropy"),
     KilnValueError, "Expected finite values in y. Received: y contains inf at index (5, 0)"),
    ("label too large", dict(x=X, y=_with(LABELS, (3,), 3)), KilnValueError,
     "Received: a label value of 3 which is outside the valid range of [0, 3)"),
    ("negative label", dict(x=X, y=_with(LABELS, (3,), -1)), KilnValueError,
     "a label value of -1"),
    ("fractional labels", dict(x=X, y=LABELS + 0.5), KilnValueError,
     "Expected y to hold integer class labels for sparse_categorical_crossentropy"),
    ("sparse label shape", dict(x=X, y=ONEHOT), KilnValueError,
     "integer class labels of shape (None,)"),
    ("target shape", dict(x=X, y=np.zeros((12, 2), np.float32), loss="mse"), KilnValueError,
     "Received: y.shape=(12, 2), output.shape=(None, 3)"),
    ("validation_split 1", dict(x=X, y=LABELS, validation_split=1.0), KilnValueError,
     "`validation_split` must be in [0, 1). Received: validation_split=1.0"),
    ("validation_split negative", dict(x=X, y=LABELS, validation_split=-0.1), KilnValueError,
     "validation_split=-0.1"),
    ("validation_split too small", dict(x=X, y=LABELS, validation_split=0.95), KilnValueError,
     "Training data contains 12 samples, which is not sufficient"),
    ("batch_size 0", dict(x=X, y=LABELS, batch_size=0), KilnValueError,
     "Expected batch_size to be a positive integer. Received: batch_size=0"),
    ("batch_size negative", dict(x=X, y=LABELS, batch_size=-4), KilnValueError,
     "batch_size=-4"),
    ("batch_size float", dict(x=X, y=LABELS, batch_size=2.5), KilnValueError,
     "batch_size=2.5"),
    ("epochs negative", dict(x=X, y=LABELS, epochs=-1), KilnValueError,
     "Expected epochs to be a non-negative integer. Received: epochs=-1"),
    ("no y", dict(x=X), KilnValueError, "Received: y=None"),
    ("no x", dict(y=LABELS), KilnValueError, "Received: x=None"),
    ("empty", dict(x=X[:0], y=LABELS[:0]), KilnValueError, "at least one sample"),
    ("sample_weight shape", dict(x=X, y=LABELS, sample_weight=np.ones((12, 2))),
     KilnValueError, "sample_weight.shape=(12, 2)"),
    ("sample_weight count", dict(x=X, y=LABELS, sample_weight=np.ones(11)), KilnValueError,
     "'sample_weight' sizes: 11"),
    ("validation_data format", dict(x=X, y=LABELS, validation_data=X), KilnValueError,
     "it must contain either 2 items (x_val, y_val), or 3 items"),
    ("validation_data shape", dict(x=X, y=LABELS, validation_data=(X[:, :3], LABELS)),
     KilnValueError, "Received: validation_data[0].shape=(12, 3)"),
    ("validation labels", dict(x=X, y=LABELS, validation_data=(X, LABELS + 7)),
     KilnValueError, "validation_data[1] to hold labels in [0, 3)"),
    ("verbose", dict(x=X, y=LABELS, verbose=3), KilnValueError, "verbose=3"),
    ("shuffle", dict(x=X, y=LABELS, shuffle="yes"), KilnValueError, "shuffle='yes'"),
    ("list of inputs", dict(x=[X, X], y=LABELS), KilnValueError, "x"),
]


@pytest.mark.parametrize("case,kwargs,error,message", FIT_ERRORS, ids=[c[0] for c in FIT_ERRORS])
def test_fit_refuses_bad_input_and_leaves_the_model_unchanged(case, kwargs, error,  # noqa: ANN001
                                                                message) -> None:  # noqa: ANN001
    kwargs = dict(kwargs)
    model = _model(kwargs.pop("loss", "sparse_categorical_crossentropy"))
    model.fit(X, LABELS if model.loss.sparse else ONEHOT, epochs=1, verbose=0)  # state exists
    before = model.get_weights()
    steps = model.optimizer.iterations
    optimizer_state = {k: v.copy() for k, v in model.optimizer.state.items()}
    with pytest.raises(error, match=re.escape(message)):
        model.fit(**{"verbose": 0, **kwargs})
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert model.optimizer.iterations == steps
    for name, value in model.optimizer.state.items():
        np.testing.assert_array_equal(value, optimizer_state[name])


def test_evaluate_predict_and_train_on_batch_check_their_input() -> None:
    model = _model()
    with pytest.raises(KilnValueError, match=re.escape("x.shape=(3, 6)")):
        model.predict(np.zeros((3, 6)), verbose=0)
    with pytest.raises(KilnValueError, match="Data cardinality is ambiguous"):
        model.evaluate(X, LABELS[:5], verbose=0)
    with pytest.raises(KilnValueError, match="Expected finite values in x"):
        model.train_on_batch(_with(X, (0, 0), np.inf), LABELS)
    with pytest.raises(KilnValueError, match=re.escape("batch_size=0")):
        model.predict(X, batch_size=0)
    assert model.optimizer.iterations == 0 and not model.optimizer.built


def test_dict_and_list_structures_name_what_is_missing() -> None:
    a = layers.Input((2,), name="a")
    b = layers.Input((3,), name="b")
    out = layers.Dense(1, name="out")(layers.Dense(2)(a))
    other = layers.Dense(1, name="other")(b)
    model = models.Model(inputs=[a, b], outputs=[out, other])
    model.compile(optimizer="sgd", loss="mse")
    x = {"a": np.zeros((4, 2)), "b": np.zeros((4, 3))}
    y = [np.zeros((4, 1)), np.zeros((4, 1))]
    with pytest.raises(KilnValueError, match=re.escape("['a', 'b']. Received keys: ['a']")):
        model.fit({"a": x["a"]}, y, verbose=0)
    with pytest.raises(KilnValueError, match="a list of 3 items"):
        model.fit([x["a"], x["b"], x["b"]], y, verbose=0)
    with pytest.raises(KilnValueError, match="Received: a single array"):
        model.fit(x, np.zeros((4, 1)), verbose=0)
    with pytest.raises(KilnValueError, match=re.escape("x['b']")):
        model.fit({"a": x["a"], "b": np.zeros((4, 4))}, y, verbose=0)


def test_compile_refuses_unknown_names_and_bad_structures() -> None:
    model = models.Sequential([layers.Input((4,)), layers.Dense(3)])
    cases = [
        (dict(loss="msee"), KilnValueError, "Received: loss='msee'"),
        (dict(loss="mse", metrics=["acuracy"]), KilnValueError, "Received: metrics='acuracy'"),
        (dict(loss="mse", metrics="accuracy"), KilnTypeError,
         "Expected `metrics` argument to be a list, tuple, or dict"),
        (dict(optimizer="rmsprob", loss="mse"), KilnValueError, "Received: optimizer='rmsprob'"),
        (dict(optimizer=3, loss="mse"), KilnTypeError, "optimizer=3"),
        (dict(loss=len), KilnTypeError, "loss=<built-in function len>"),
        (dict(loss=["mse", "mae"]), KilnValueError,
         "it should have as many entries as the model has outputs"),
        (dict(loss={"nope": "mse"}), KilnValueError,
         "In the dict argument `loss`, key 'nope' does not correspond to any model output"),
        (dict(loss="mse", loss_weights="big"), KilnValueError, "loss_weights='big'"),
        (dict(loss="mse", backend="cuda"), KilnValueError, "backend='cuda'"),
        (dict(loss=losses.MeanSquaredError(reduction="sum")), KilnValueError,
         "Received: loss with reduction='sum'"),
    ]
    for kwargs, error, message in cases:
        kwargs = {"optimizer": "sgd", **kwargs}
        with pytest.raises(error, match=re.escape(message)):
            model.compile(**kwargs)
        assert not model.compiled


def test_training_needs_compile_and_a_loss() -> None:
    model = models.Sequential([layers.Input((4,)), layers.Dense(3)])
    with pytest.raises(KilnValueError, match=re.escape("You must call `compile()`")):
        model.fit(X, ONEHOT, verbose=0)
    with pytest.raises(KilnValueError, match=re.escape("You must call `compile()`")):
        model.evaluate(X, ONEHOT, verbose=0)
    assert model.predict(X, verbose=0).shape == (12, 3)  # predict needs no compile
    model.compile(optimizer="sgd")
    with pytest.raises(KilnValueError, match="No loss to compute"):
        model.fit(X, ONEHOT, verbose=0)


def test_optimizer_loss_and_callback_arguments_checked_when_given() -> None:
    from kiln import callbacks, metrics

    with pytest.raises(KilnValueError, match=re.escape("learning_rate=-0.1")):
        optimizers.SGD(learning_rate=-0.1)
    with pytest.raises(KilnValueError, match=re.escape("momentum=2")):
        optimizers.SGD(momentum=2)
    with pytest.raises(KilnTypeError, match="unrecognized keyword argument 'decay_rate'"):
        optimizers.Adam(decay_rate=0.1)
    with pytest.raises(KilnValueError, match=re.escape("reduction='avg'")):
        losses.MeanSquaredError(reduction="avg")
    with pytest.raises(KilnValueError, match=re.escape("label_smoothing=2")):
        losses.BinaryCrossentropy(label_smoothing=2)
    with pytest.raises(KilnValueError, match=re.escape("threshold='x'")):
        metrics.BinaryAccuracy(threshold="x")
    with pytest.raises(KilnValueError, match=re.escape("factor >= 1.0. Received factor=2")):
        callbacks.ReduceLROnPlateau(factor=2)
    with pytest.raises(KilnValueError, match=re.escape("mode='best'")):
        callbacks.EarlyStopping(mode="best")
    with pytest.raises(KilnTypeError, match="callbacks"):
        _model().fit(X, LABELS, verbose=0, callbacks=[print])


def test_errors_are_kiln_errors_and_python_builtins() -> None:
    model = _model()
    with pytest.raises(ValueError):
        model.fit(X, LABELS, batch_size=0)
    with pytest.raises(KilnError):
        model.fit(X, LABELS, batch_size=0)
