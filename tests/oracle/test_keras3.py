"""Real Keras 3 as the oracle (optional: `pip install -e '.[oracle]'`, torch backend).

The same architecture is built in Keras and in kiln, Keras's initial weights move to kiln
through get_weights/set_weights unchanged, and predictions, the loss of one training step and
the weights after it must agree. Skipped when keras is not installed.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")

from kiln import constraints as kiln_constraints  # noqa: E402
from kiln import layers, models, optimizers  # noqa: E402
from kiln import metrics as kiln_metrics  # noqa: E402
from kiln import regularizers as kiln_regularizers  # noqa: E402
from tests.oracle.agree import assert_predicts_and_trains_alike  # noqa: E402

rng = np.random.default_rng(0)
# Keras 3.15's torch backend warns about NumPy 2's copy keyword on every conversion.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _pair(build):  # noqa: ANN001, ANN202
    """The same model built with keras's and kiln's layers, kiln given Keras's weights
    (Keras's initial weights seeded, so that a run is the same run each time)."""
    keras.utils.set_random_seed(0)
    theirs = build(keras.layers, keras.Sequential)
    ours = build(layers, models.Sequential)
    ours.set_weights(theirs.get_weights())
    return theirs, ours


ARCHITECTURES = {
    "mlp": (lambda L, S: S([L.Input(shape=(12,)), L.Dense(16, activation="relu"),
                            L.Dense(4, activation="softmax")]),
            lambda n: rng.standard_normal((n, 12)).astype("float32"), "categorical"),
    "convnet": (lambda L, S: S([L.Input(shape=(9, 9, 2)),
                                L.Conv2D(4, 3, activation="relu", padding="same"),
                                L.MaxPooling2D(2), L.Conv2D(3, 2, strides=2),
                                L.AveragePooling2D(1), L.Flatten(),
                                L.Dense(4, activation="softmax")]),
                lambda n: rng.standard_normal((n, 9, 9, 2)).astype("float32"), "categorical"),
    # No bias before batch normalization: its gradient is float noise that Adam scales to
    # full-size steps, in Keras as here, so it cannot be compared.
    "batchnorm": (lambda L, S: S([L.Input(shape=(6,)), L.Dense(8, use_bias=False),
                                  L.BatchNormalization(), L.Activation("tanh"),
                                  L.Dense(4, activation="softmax")]),
                  lambda n: rng.standard_normal((n, 6)).astype("float32") * 3, "categorical"),
    "layernorm": (lambda L, S: S([L.Input(shape=(4, 5)), L.Dense(6, use_bias=False),
                                  L.LayerNormalization(epsilon=0.01), L.Activation("tanh"),
                                  L.LayerNormalization(axis=[1, 2], center=False),
                                  L.Flatten(), L.Dense(4, activation="softmax")]),
                  lambda n: rng.standard_normal((n, 4, 5)).astype("float32") * 2,
                  "categorical"),
    "lstm": (lambda L, S: S([L.Input(shape=(5,), dtype="int32"), L.Embedding(20, 6),
                             L.LSTM(7), L.Dense(1, activation="sigmoid")]),
             lambda n: rng.integers(0, 20, (n, 5)).astype("int32"), "binary"),
    "conv1d": (lambda L, S: S([L.Input(shape=(12,), dtype="int32"), L.Embedding(20, 4),
                               L.Conv1D(5, 3, activation="relu", padding="same"),
                               L.MaxPooling1D(2),
                               L.Conv1D(4, 2, padding="causal", dilation_rate=2),
                               L.AveragePooling1D(2, strides=1, padding="same"),
                               L.Conv1D(3, 2, strides=2), L.GlobalMaxPooling1D(),
                               L.Dense(1, activation="sigmoid")]),
               lambda n: rng.integers(0, 20, (n, 12)).astype("int32"), "binary"),
    "bidirectional": (lambda L, S: S([L.Input(shape=(6,), dtype="int32"), L.Embedding(20, 4),
                                      L.Bidirectional(L.LSTM(3, return_sequences=True)),
                                      L.Bidirectional(L.GRU(2),
                                                      merge_mode="mul"),
                                      L.Dense(1, activation="sigmoid")]),
                      lambda n: rng.integers(0, 20, (n, 6)).astype("int32"), "binary"),
    "gru": (lambda L, S: S([L.Input(shape=(5, 3)), L.GRU(6, return_sequences=True),
                            L.SimpleRNN(4), L.Dense(1, activation="sigmoid")]),
            lambda n: rng.standard_normal((n, 5, 3)).astype("float32"), "binary"),
}


def _targets(kind: str, n: int) -> np.ndarray:
    if kind == "binary":
        return rng.integers(0, 2, (n, 1)).astype("float32")
    return np.eye(4, dtype="float32")[rng.integers(0, 4, n)]


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_predictions_agree(name: str) -> None:
    build, make_x, _ = ARCHITECTURES[name]
    theirs, ours = _pair(build)
    x = make_x(6)
    np.testing.assert_allclose(ours.predict(x, verbose=0), theirs.predict(x, verbose=0),
                               rtol=1e-4, atol=1e-5)


OPTIMIZERS = {
    "sgd": (lambda: keras.optimizers.SGD(0.05, momentum=0.9, nesterov=True),
            lambda: optimizers.SGD(0.05, momentum=0.9, nesterov=True)),
    "rmsprop": (lambda: keras.optimizers.RMSprop(0.01), lambda: optimizers.RMSprop(0.01)),
    "adam": (lambda: keras.optimizers.Adam(0.01), lambda: optimizers.Adam(0.01)),
    "adagrad": (lambda: keras.optimizers.Adagrad(0.1), lambda: optimizers.Adagrad(0.1)),
}


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("name", ARCHITECTURES)
def test_training_steps_agree(name: str, optimizer: str) -> None:
    build, make_x, kind = ARCHITECTURES[name]
    theirs, ours = _pair(build)
    loss = "binary_crossentropy" if kind == "binary" else "categorical_crossentropy"
    make_theirs, make_ours = OPTIMIZERS[optimizer]
    theirs.compile(optimizer=make_theirs(), loss=loss)
    ours.compile(optimizer=make_ours(), loss=loss)
    for step in range(3):
        x, y = make_x(8), _targets(kind, 8)
        their_loss = float(np.ravel(theirs.train_on_batch(x, y))[0])
        our_loss = float(np.ravel(ours.train_on_batch(x, y))[0])
        assert our_loss == pytest.approx(their_loss, rel=1e-4, abs=1e-6), f"step {step}"
    for mine, reference in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(mine, reference, rtol=1e-3, atol=1e-5)


# -- Keras 3's other losses and metrics ----------------------------------------------------
TARGETS = {
    "real": lambda n: rng.standard_normal((n, 3)).astype("float32"),
    "counts": lambda n: rng.uniform(0, 3, (n, 3)).astype("float32"),
    "onehot": lambda n: np.eye(3, dtype="float32")[rng.integers(0, 3, n)],
    "binary": lambda n: rng.integers(0, 2, (n, 3)).astype("float32"),
    "signs": lambda n: (2 * rng.integers(0, 2, (n, 3)) - 1).astype("float32"),
    "labels": lambda n: rng.integers(0, 3, (n,)).astype("int32"),
}


def _head(activation: str | None):  # noqa: ANN202
    return lambda L, S: S([L.Input(shape=(6,)), L.Dense(8, activation="tanh"),
                           L.Dense(3, activation=activation)])


LOSSES = {  # compile name -> (activation of the last layer, targets)
    "mape": (None, "real"), "msle": ("softplus", "counts"), "huber": (None, "real"),
    "Huber": (None, "real"), "log_cosh": (None, "real"), "kl_divergence": ("softmax", "onehot"),
    "kld": ("softmax", "onehot"), "poisson": ("softplus", "counts"),
    "hinge": ("tanh", "binary"), "squared_hinge": ("tanh", "signs"),
    "categorical_hinge": (None, "onehot"), "cosine_similarity": (None, "real"),
}


@pytest.mark.parametrize("loss", LOSSES)
def test_more_losses_train_like_keras(loss: str) -> None:
    activation, kind = LOSSES[loss]
    theirs, ours = _pair(_head(activation))
    theirs.compile(optimizer=keras.optimizers.Adam(0.01), loss=loss)
    ours.compile(optimizer=optimizers.Adam(0.01), loss=loss)
    for step in range(3):
        x, y = rng.standard_normal((16, 6)).astype("float32"), TARGETS[kind](16)
        their_loss = float(np.ravel(theirs.train_on_batch(x, y))[0])
        our_loss = float(np.ravel(ours.train_on_batch(x, y))[0])
        assert our_loss == pytest.approx(their_loss, rel=1e-4, abs=1e-6), f"step {step}"
    for mine, reference in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(mine, reference, rtol=1e-3, atol=1e-5)


METRICS = {  # a name, or a factory taking keras.metrics / kiln.metrics -> targets
    "mape": "real", "msle": "counts", "log_cosh_error": "real", "LogCoshError": "real",
    "cosine_similarity": "real", "kl_divergence": "onehot", "poisson": "counts",
    "hinge": "binary", "squared_hinge": "signs", "categorical_hinge": "onehot",
    "binary_crossentropy": "binary", "bce": "binary", "categorical_crossentropy": "onehot",
    "sparse_categorical_crossentropy": "labels", "pearson_correlation": "real",
    "concordance_correlation": "real", "ACC": "onehot", "Accuracy": "labels",
    "exact": ("binary", lambda m: m.Accuracy(name="exact")),
    "top2": ("onehot", lambda m: m.TopKCategoricalAccuracy(k=2, name="top2")),
    "sparse_top1": ("labels", lambda m: m.SparseTopKCategoricalAccuracy(k=1,
                                                                        name="sparse_top1")),
    "bce_logits": ("binary", lambda m: m.BinaryCrossentropy(
        name="bce_logits", from_logits=True, label_smoothing=0.1)),
}


@pytest.mark.parametrize("metric", METRICS)
def test_more_metrics_fit_like_keras(metric: str) -> None:
    spec = METRICS[metric]
    kind, make = (spec, None) if isinstance(spec, str) else spec
    theirs, ours = _pair(_head("softmax"))
    loss = "sparse_categorical_crossentropy" if kind == "labels" else "mse"
    theirs.compile(optimizer="rmsprop", loss=loss,
                   metrics=[make(keras.metrics) if make else metric])
    ours.compile(optimizer="rmsprop", loss=loss,
                 metrics=[make(kiln_metrics) if make else metric])
    _fits_agree(theirs, ours, kind)


def _fits_agree(theirs, ours, kind: str, validation: bool = True,  # noqa: ANN001
                x: np.ndarray | None = None) -> None:
    """Two epochs of `fit` give the same history: every loss and metric, a metric of several
    thresholds or classes value by value (on 50 samples of x, default 6 normal features)."""
    x = rng.standard_normal((50, 6)).astype("float32") if x is None else x
    y = TARGETS[kind](50)
    kwargs = dict(batch_size=16, epochs=2, shuffle=False, verbose=0,
                  validation_split=0.2 if validation else 0.0)
    their_history = theirs.fit(x, y, **kwargs).history
    our_history = ours.fit(x, y, **kwargs).history
    assert sorted(our_history) == sorted(their_history)
    for key, values in their_history.items():
        np.testing.assert_allclose(np.asarray(our_history[key], np.float64),
                                   np.asarray(values, np.float64), rtol=1e-4, atol=1e-5,
                                   err_msg=key)


# -- metrics of summed statistics ----------------------------------------------------------
SUMMED = {  # name -> (head activation, targets, factory taking keras.metrics / kiln.metrics)
    "auc": ("sigmoid", "binary", lambda m: m.AUC()),
    "auc_pr": ("sigmoid", "binary", lambda m: m.AUC(curve="PR", name="auc_pr")),
    "auc_multi": ("sigmoid", "binary", lambda m: m.AUC(
        num_thresholds=30, summation_method="majoring", multi_label=True,
        label_weights=[1.0, 0.5, 2.0], name="auc_multi")),
    "auc_logits": (None, "binary", lambda m: m.AUC(
        thresholds=[0.2, 0.45, 0.5, 0.9], from_logits=True, name="auc_logits")),
    "auc_prgain": ("sigmoid", "binary", lambda m: m.AUC(curve="PRGAIN", name="auc_prgain")),
    "precision": ("sigmoid", "binary", lambda m: m.Precision(thresholds=[0.3, 0.6])),
    "recall_top": ("softmax", "onehot", lambda m: m.Recall(top_k=2, name="recall_top")),
    "precision_class": ("sigmoid", "binary", lambda m: m.Precision(
        class_id=1, name="precision_class")),
    "at_recall": ("sigmoid", "binary", lambda m: m.PrecisionAtRecall(0.6, name="at_recall")),
    "at_specificity": ("sigmoid", "binary", lambda m: m.SensitivityAtSpecificity(
        0.5, num_thresholds=50, name="at_specificity")),
    "f1": ("softmax", "onehot", lambda m: m.F1Score(average="macro", name="f1")),
    "fbeta": ("sigmoid", "binary", lambda m: m.FBetaScore(
        average="weighted", beta=2.0, threshold=0.5, name="fbeta")),
    "r2": (None, "real", lambda m: m.R2Score(class_aggregation="variance_weighted_average",
                                             name="r2")),
    "rmse": (None, "real", lambda m: m.RootMeanSquaredError(name="rmse")),
    "precision_by_name": ("sigmoid", "binary", "precision"),
    "mean_iou": ("softmax", "labels", lambda m: m.MeanIoU(3, sparse_y_pred=False)),
    "onehot_iou": ("softmax", "onehot", lambda m: m.OneHotIoU(3, [0, 2], ignore_class=1,
                                                             name="onehot_iou")),
    "binary_iou": ("sigmoid", "binary", lambda m: m.BinaryIoU(threshold=0.4)),
}


@pytest.mark.parametrize("metric", SUMMED)
def test_summed_metrics_fit_like_keras(metric: str) -> None:
    activation, kind, make = SUMMED[metric]
    theirs, ours = _pair(_head(activation))
    loss = "sparse_categorical_crossentropy" if kind == "labels" else "mse"
    theirs.compile(optimizer="rmsprop", loss=loss,
                   metrics=[make if isinstance(make, str) else make(keras.metrics)])
    ours.compile(optimizer="rmsprop", loss=loss,
                 metrics=[make if isinstance(make, str) else make(kiln_metrics)])
    _fits_agree(theirs, ours, kind)


@pytest.mark.parametrize("cls", ["TruePositives", "FalsePositives", "TrueNegatives",
                                 "FalseNegatives"])
def test_confusion_counts_fit_like_keras(cls: str) -> None:
    # Without validation: Keras on torch returns a count as a view of its accumulator, which
    # the validation run then resets and refills, so its training value would be the
    # validation one.
    theirs, ours = _pair(_head("sigmoid"))
    theirs.compile(optimizer="rmsprop", loss="mse",
                   metrics=[getattr(keras.metrics, cls)(thresholds=[0.3, 0.5])])
    ours.compile(optimizer="rmsprop", loss="mse",
                 metrics=[getattr(kiln_metrics, cls)(thresholds=[0.3, 0.5])])
    _fits_agree(theirs, ours, "binary", validation=False)


# -- regularizers and constraints ----------------------------------------------------------
PENALIZED = {  # name -> (build(L, R, C, S), inputs of n samples, targets)
    "dense": (lambda L, R, C, S: S([
        L.Input(shape=(6,)),
        L.Dense(8, activation="tanh", kernel_regularizer=R.L2(0.05), bias_regularizer="l1",
                activity_regularizer=R.L1L2(l1=0.01, l2=0.02),
                kernel_constraint=C.MaxNorm(1.0)),
        L.Dense(3, activation="softmax",
                kernel_regularizer=R.OrthogonalRegularizer(0.1, mode="columns"),
                bias_constraint=C.NonNeg())]),
        lambda n: rng.standard_normal((n, 6)).astype("float32"), "onehot"),
    "conv_batchnorm": (lambda L, R, C, S: S([
        L.Input(shape=(7, 7, 2)),
        L.Conv2D(4, 3, kernel_regularizer=R.L1L2(0.01, 0.01), activity_regularizer="l2",
                 kernel_constraint=C.MaxNorm(0.8, axis=[0, 1, 2]), use_bias=False),
        L.BatchNormalization(gamma_regularizer="l2", beta_regularizer=R.L1(0.1),
                             gamma_constraint=C.MinMaxNorm(0.5, 1.5, rate=0.5)),
        L.Flatten(), L.Dense(3, activation="softmax", kernel_constraint=C.UnitNorm())]),
        lambda n: rng.standard_normal((n, 7, 7, 2)).astype("float32"), "onehot"),
    "embedding_lstm": (lambda L, R, C, S: S([
        L.Input(shape=(5,), dtype="int32"),
        L.Embedding(20, 4, embeddings_regularizer=R.L2(0.1),
                    embeddings_constraint=C.UnitNorm(axis=1)),
        L.LSTM(5, kernel_regularizer="l2", recurrent_regularizer=R.L1(0.02),
               bias_regularizer="l2", activity_regularizer="l1",
               recurrent_constraint=C.MaxNorm(1.0)),
        L.Dense(3, activation="softmax")]),
        lambda n: rng.integers(0, 20, (n, 5)).astype("int32"), "onehot"),
}


@pytest.mark.parametrize("name", PENALIZED)
def test_regularized_and_constrained_fit_like_keras(name: str) -> None:
    build, make_x, kind = PENALIZED[name]
    theirs = build(keras.layers, keras.regularizers, keras.constraints, keras.Sequential)
    ours = build(layers, kiln_regularizers, kiln_constraints, models.Sequential)
    ours.set_weights(theirs.get_weights())
    theirs.compile(optimizer=keras.optimizers.Adam(0.01), loss="categorical_crossentropy",
                   metrics=["accuracy"])
    ours.compile(optimizer=optimizers.Adam(0.01), loss="categorical_crossentropy",
                 metrics=["accuracy"])
    _fits_agree(theirs, ours, kind, x=make_x(50))
    for mine, reference in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(mine, reference, rtol=1e-3, atol=1e-5)


# -- more optimizers, weight decay and gradient clipping -----------------------------------
MORE_OPTIMIZERS = {  # name -> factory taking keras.optimizers / kiln.optimizers
    "adamw": lambda m: m.AdamW(0.01),
    "adamw_exclude_bias": lambda m: m.AdamW(0.05, weight_decay=0.1),
    "adamax": lambda m: m.Adamax(0.02),
    "lion": lambda m: m.Lion(0.003),
    "adadelta": lambda m: m.Adadelta(1.0),
    "sgd_decay_clipnorm": lambda m: m.SGD(0.1, momentum=0.9, weight_decay=0.01, clipnorm=0.05),
    "adam_global_clipnorm": lambda m: m.Adam(0.01, global_clipnorm=0.1),
    "rmsprop_clipvalue": lambda m: m.RMSprop(0.01, clipvalue=0.01),
    "nadam": lambda m: m.Nadam(0.02),
    "nadam_decay": lambda m: m.Nadam(0.01, beta_1=0.8, weight_decay=0.1),
}


@pytest.mark.parametrize("name", MORE_OPTIMIZERS)
def test_more_optimizers_train_like_keras(name: str) -> None:
    theirs, ours = _pair(_head("softmax"))
    their_opt, our_opt = (MORE_OPTIMIZERS[name](m) for m in (keras.optimizers, optimizers))
    if name == "adamw_exclude_bias":
        their_opt.exclude_from_weight_decay(var_names=["bias"])
        our_opt.exclude_from_weight_decay(var_names=["bias"])
    theirs.compile(optimizer=their_opt, loss="categorical_crossentropy")
    ours.compile(optimizer=our_opt, loss="categorical_crossentropy")
    for step in range(4):
        x, y = rng.standard_normal((16, 6)).astype("float32"), TARGETS["onehot"](16)
        their_loss = float(np.ravel(theirs.train_on_batch(x, y))[0])
        our_loss = float(np.ravel(ours.train_on_batch(x, y))[0])
        assert our_loss == pytest.approx(their_loss, rel=1e-4, abs=1e-6), f"step {step}"
    for mine, reference in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(mine, reference, rtol=1e-3, atol=1e-5)


# -- activation, merge, reshaping and transposed-convolution layers ------------------------
def _seq(L):  # noqa: ANN001, ANN202
    return L.Input(shape=(6, 4))


def _img(L):  # noqa: ANN001, ANN202
    return L.Input(shape=(5, 6, 3))


LAYER_CASES = {  # name -> (build(L) -> (inputs, outputs), input shapes without the batch)
    "activations": (lambda L: (lambda x: ([x], L.Concatenate()([
        L.ReLU(max_value=1.5, negative_slope=0.1, threshold=0.2)(x), L.LeakyReLU()(x),
        L.LeakyReLU(negative_slope=0.05)(x), L.ELU(alpha=0.7)(x), L.Softmax(axis=1)(x),
        L.Softmax(axis=[1, 2])(x), L.PReLU(alpha_initializer="random_uniform",
                                           shared_axes=[1])(x),
        L.Activation("gelu")(x), L.Activation("mish")(x)])))(_seq(L)), [(6, 4)]),
    "merges": (lambda L: (lambda a, b, c: ([a, b, c], L.Concatenate()([
        L.Subtract()([a, b]), L.Average()([a, b, c]), L.Maximum()([a, b, c]),
        L.Minimum()([a, c]), L.Dot(axes=(2, 2))([a, b]),
        L.Dot(axes=1, normalize=True)([a, c])])))(
            L.Input(shape=(6, 6)), L.Input(shape=(6, 6)), L.Input(shape=(6, 6))),
        [(6, 6)] * 3),
    "dot_shapes": (lambda L: (lambda a, b: ([a, b], L.Concatenate()([
        L.Flatten()(L.Dot(axes=(1, 2))([a, b])),
        L.Dot(axes=(1, 1))([L.GlobalAveragePooling1D()(b), a])])))(
            L.Input(shape=(3, 4)), L.Input(shape=(4, 3))), [(3, 4), (4, 3)]),
    "reshaping": (lambda L: (lambda x: ([x], L.Concatenate()([
        L.Flatten()(L.Cropping1D((1, 2))(L.ZeroPadding1D((2, 1))(x))),
        L.Flatten()(L.UpSampling1D(3)(x)), L.Flatten()(L.Permute((2, 1))(x)),
        L.Flatten()(L.RepeatVector(2)(L.Flatten()(x)))])))(_seq(L)), [(6, 4)]),
    "images": (lambda L: (lambda x: ([x], L.Concatenate()([
        L.Flatten()(L.Cropping2D(((1, 0), (2, 1)))(L.ZeroPadding2D(((1, 2), (0, 1)))(x))),
        L.Flatten()(L.UpSampling2D((2, 3))(x)),
        L.Flatten()(L.UpSampling2D(2, interpolation="bilinear")(x)),
        L.Flatten()(L.Conv2D(2, 3)(L.UpSampling2D((3, 2), interpolation="bilinear")(x)))])))(
            _img(L)), [(5, 6, 3)]),
    "conv_transpose": (lambda L: (lambda x: ([x], L.Concatenate()([
        L.Flatten()(L.Conv2DTranspose(2, 3, strides=2, padding="same", activation="relu")(x)),
        L.Flatten()(L.Conv2DTranspose(3, (2, 3), strides=(1, 2))(x)),
        L.Flatten()(L.Conv2DTranspose(2, 4, strides=2, padding="same")(x)),
        L.Flatten()(L.Conv2DTranspose(2, 3, strides=2, output_padding=1)(x)),
        L.Flatten()(L.Conv2DTranspose(2, 3, strides=3, padding="same",
                                      output_padding=(2, 1))(x)),
        L.Flatten()(L.Conv2DTranspose(2, 2, strides=3)(x)),
        L.Flatten()(L.Conv2DTranspose(2, 3, dilation_rate=2, padding="same")(x))])))(
            _img(L)), [(5, 6, 3)]),
    "separable": (lambda L: (lambda x: ([x], L.Concatenate()([
        L.Flatten()(L.DepthwiseConv2D(3, padding="same", depth_multiplier=2,
                                      activation="relu")(x)),
        L.Flatten()(L.DepthwiseConv2D((2, 3), strides=2)(x)),
        L.Flatten()(L.DepthwiseConv2D(2, dilation_rate=2, use_bias=False)(x)),
        L.Flatten()(L.SeparableConv2D(4, 3, padding="same", strides=(2, 1))(x)),
        L.Flatten()(L.SeparableConv2D(2, (3, 2), depth_multiplier=3, dilation_rate=(1, 2))(x)),
        L.Flatten()(L.SeparableConv1D(3, 3, strides=2, padding="same")(L.Reshape((15, 6))(x))),
        L.Flatten()(L.DepthwiseConv1D(2, depth_multiplier=2)(L.Reshape((15, 6))(x)))])))(
            _img(L)), [(5, 6, 3)]),
    "conv1d_transpose": (lambda L: (lambda x: ([x], L.Concatenate()([
        L.Flatten()(L.Conv1DTranspose(3, 3, strides=2, padding="same")(x)),
        L.Flatten()(L.Conv1DTranspose(2, 4, strides=3, output_padding=2)(x)),
        L.Flatten()(L.Conv1DTranspose(2, 5, padding="same")(x))])))(_seq(L)), [(6, 4)]),
    "attention": (lambda L: (lambda q, v: ([q, v], L.Concatenate()([
        L.Flatten()(L.MultiHeadAttention(2, 3)(q, q, use_causal_mask=True)),
        L.Flatten()(L.MultiHeadAttention(2, 2, value_dim=3, output_shape=4, use_gate=True)(
            q, v, key=L.Dense(3)(v))),
        L.Flatten()(L.MultiHeadAttention(1, 2, sliding_window=2, use_bias=False)(q, q)),
        L.Flatten()(L.EinsumDense("abc,cde->abde", (None, 2, 3), bias_axes="de",
                                  activation="relu")(q)),
        L.Flatten()(L.EinsumDense("...c,cd->...d", 2, bias_axes="d")(v))])))(
            L.Input(shape=(4, 3)), L.Input(shape=(5, 2))), [(4, 3), (5, 2)]),
    "dot_attention": (lambda L: (lambda q, v: ([q, v], L.Concatenate()([
        L.Attention()([q, v]), L.Attention(use_scale=True, score_mode="concat")([q, v, q]),
        L.AdditiveAttention()([q, v], use_causal_mask=True),
        L.AdditiveAttention(use_scale=False)([v, q])])))(
            L.Input(shape=(4, 3)), L.Input(shape=(4, 3))), [(4, 3), (4, 3)]),
    "attention_2d": (lambda L: (lambda x: ([x], L.Flatten()(
        L.MultiHeadAttention(2, 2, attention_axes=(1, 2))(x, x))))(_img(L)), [(5, 6, 3)]),
}


def _layer_pair(name: str):  # noqa: ANN202
    build, _ = LAYER_CASES[name]
    theirs = keras.Model(*build(keras.layers))
    ours = models.Model(*build(layers))
    ours.set_weights(theirs.get_weights())
    return theirs, ours


@pytest.mark.parametrize("name", LAYER_CASES)
def test_more_layers_predict_and_train_like_keras(name: str) -> None:
    theirs, ours = _layer_pair(name)
    shapes = LAYER_CASES[name][1]
    xs = [rng.standard_normal((4, *s)).astype("float32") for s in shapes]
    assert_predicts_and_trains_alike(theirs, ours, xs, rng, keras, optimizers)


@pytest.mark.parametrize("scores", [False, True])
def test_attention_masks_like_keras(scores: bool) -> None:
    """An attention mask of zeros and ones (Keras casts it to bool), with padded key
    positions; Keras's fused path (no scores: torch's scaled_dot_product_attention) and its
    softmax path (scores returned). A query row masked whole gets zero probabilities on the
    softmax path, and on the fused path (-1e9 added to every score of the row) the mean of
    the values, in both as kiln computes it."""
    def build(L):  # noqa: ANN001, ANN202, N803
        q, m = L.Input(shape=(4, 3)), L.Input(shape=(4, 4))
        out = L.MultiHeadAttention(2, 3, name="mha")(q, q, attention_mask=m,
                                                     return_attention_scores=scores)
        return [q, m], (list(out) if scores else out)

    theirs, ours = keras.Model(*build(keras.layers)), models.Model(*build(layers))
    ours.set_weights(theirs.get_weights())
    x = rng.standard_normal((3, 4, 3)).astype("float32")
    keep = (np.arange(4)[None] < np.array([4, 3, 1])[:, None]).astype("float32")
    mask = np.repeat(keep[:, None, :], 4, axis=1)  # every query sees the unpadded keys
    mask[2, 1] = 0  # but one that may attend nowhere
    got, want = ours.predict([x, mask], verbose=0), theirs.predict([x, mask], verbose=0)
    for a, b in zip(got if scores else [got], want if scores else [want], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", ["dot", "concat", "additive"])
def test_attention_layer_masks_like_keras(kind: str) -> None:
    """Attention / AdditiveAttention with a query mask and a value mask of zeros and ones,
    and a causal mask, returning the weights too."""
    def build(L):  # noqa: ANN001, ANN202, N803
        q, v, qm, vm = (L.Input(shape=(4, 3)), L.Input(shape=(4, 2)), L.Input(shape=(4,)),
                        L.Input(shape=(4,)))
        layer = (L.AdditiveAttention() if kind == "additive"
                 else L.Attention(use_scale=True, score_mode=kind))
        out = layer([q, v, q], mask=[qm, vm], return_attention_scores=True,
                    use_causal_mask=True)
        return [q, v, qm, vm], list(out)

    theirs, ours = keras.Model(*build(keras.layers)), models.Model(*build(layers))
    weights = [rng.standard_normal(np.shape(w)).astype("float32") for w in theirs.get_weights()]
    theirs.set_weights(weights)
    ours.set_weights(weights)
    xs = [rng.standard_normal((3, 4, 3)).astype("float32"),
          rng.standard_normal((3, 4, 2)).astype("float32"),
          *((rng.random((3, 4)) < 0.7).astype("float32") for _ in range(2))]
    for a, b in zip(ours.predict(xs, verbose=0), theirs.predict(xs, verbose=0), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
