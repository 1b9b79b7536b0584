"""compile / fit / evaluate / predict against Keras 3's documented behaviour: the book's first
model learns, History and logs have Keras's keys, one SGD step equals the update computed by
hand in NumPy from Keras's formulas, and the loop's batching, shuffling, validation,
multi-input/multi-output and sample weights follow Keras."""

from __future__ import annotations

import numpy as np
import pytest

from kiln import callbacks, layers, losses, metrics, models, optimizers, utils
from kiln.ir import KilnValueError


def _classification(samples: int = 64, features: int = 6, classes: int = 3, seed: int = 0):
    rs = np.random.default_rng(seed)
    x = rs.standard_normal((samples, features)).astype(np.float32)
    labels = np.argmax(x @ rs.standard_normal((features, classes)), axis=1)
    return x, labels, np.eye(classes, dtype=np.float32)[labels]


def _mlp(features: int = 6, classes: int = 3, activation: str = "softmax") -> models.Sequential:
    return models.Sequential([layers.Input((features,)), layers.Dense(8, activation="relu"),
                              layers.Dense(classes, activation=activation)])


def _twin(model: models.Model, build) -> models.Model:  # noqa: ANN001
    """A second model of the same architecture with the same weights."""
    other = build()
    other.set_weights(model.get_weights())
    return other


def test_book_example_learns() -> None:
    """Section 3.2: Dense(32, relu, input 784) -> Dense(10, softmax), RMSprop(lr=0.001), mse,
    accuracy, fit(batch_size=128, epochs=10) on 10 classes from a hidden linear map."""
    utils.set_random_seed(1)
    rs = np.random.default_rng(0)
    x = rs.standard_normal((1024, 784)).astype(np.float32)
    y = np.eye(10, dtype=np.float32)[np.argmax(x @ rs.standard_normal((784, 10)), axis=1)]
    model = models.Sequential()
    model.add(layers.Dense(32, activation="relu", input_shape=(784,)))
    model.add(layers.Dense(10, activation="softmax"))
    model.compile(optimizer=optimizers.RMSprop(lr=0.001), loss="mse", metrics=["accuracy"])
    history = model.fit(x, y, batch_size=128, epochs=10, verbose=0)
    acc = history.history["accuracy"]
    assert list(history.history) == ["accuracy", "loss"]
    assert len(acc) == 10 and history.epoch == list(range(10))
    assert history.params == {"verbose": 0, "epochs": 10, "steps": 8}
    assert acc[-1] > acc[0] + 0.3
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert model.optimizer.iterations == 80
    assert model.history is history


def test_one_sgd_step_matches_keras_formulas() -> None:
    """Keras: loss = mean over the batch of mean over the last axis of (y_pred - y)^2
    ("sum_over_batch_size"); SGD: w <- w - lr * dloss/dw."""
    rs = np.random.default_rng(3)
    x = rs.standard_normal((5, 4)).astype(np.float32)
    y = rs.standard_normal((5, 3)).astype(np.float32)
    model = models.Sequential([layers.Input((4,)), layers.Dense(3, activation="tanh")])
    model.compile(optimizer=optimizers.SGD(learning_rate=0.1), loss="mse")
    w, b = (a.astype(np.float64) for a in model.get_weights())

    z = x @ w + b
    pred = np.tanh(z)
    loss = np.mean(np.mean((pred - y) ** 2, axis=-1))
    g_pred = 2 * (pred - y) / (5 * 3)
    g_z = g_pred * (1 - pred ** 2)
    expected_w = w - 0.1 * (x.T @ g_z)
    expected_b = b - 0.1 * g_z.sum(axis=0)

    reported = model.train_on_batch(x, y)
    np.testing.assert_allclose(reported, loss, rtol=1e-5)
    new_w, new_b = model.get_weights()
    np.testing.assert_allclose(new_w, expected_w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(new_b, expected_b, rtol=1e-5, atol=1e-6)
    assert model.optimizer.iterations == 1


def test_sgd_momentum_and_sample_weights_match_keras() -> None:
    """Weighted loss sum(l_i * w_i) / N; momentum m = 0.9*m - lr*g, w += m, over two steps."""
    rs = np.random.default_rng(4)
    x = rs.standard_normal((6, 3)).astype(np.float32)
    y = (rs.uniform(size=(6, 1)) > 0.5).astype(np.float32)
    sw = rs.uniform(0.5, 2.0, 6).astype(np.float32)
    model = models.Sequential([layers.Input((3,)), layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer=optimizers.SGD(learning_rate=0.5, momentum=0.9),
                  loss="binary_crossentropy")
    w, b = (a.astype(np.float64) for a in model.get_weights())
    m_w, m_b = np.zeros_like(w), np.zeros_like(b)
    for _ in range(2):
        p = 1 / (1 + np.exp(-(x @ w + b)))
        loss = np.sum(-(y * np.log(p) + (1 - y) * np.log(1 - p))[:, 0] * sw) / 6
        g_z = (p - y) * sw[:, None] / 6
        m_w = 0.9 * m_w - 0.5 * (x.T @ g_z)
        m_b = 0.9 * m_b - 0.5 * g_z.sum(axis=0)
        np.testing.assert_allclose(model.train_on_batch(x, y, sample_weight=sw), loss, rtol=1e-5)
        w, b = w + m_w, b + m_b
    np.testing.assert_allclose(model.get_weights()[0], w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.get_weights()[1], b, rtol=1e-5, atol=1e-6)


def test_train_on_batch_equals_one_fit_step() -> None:
    x, _, y = _classification(16)
    a = _mlp()
    b = _twin(a, _mlp)
    for model in (a, b):
        model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    logs = a.train_on_batch(x, y, return_dict=True)
    history = b.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    assert logs == pytest.approx({k: v[0] for k, v in history.history.items()}, rel=1e-6)
    assert a.optimizer.iterations == b.optimizer.iterations == 1


def test_evaluate_and_predict_shapes() -> None:
    x, labels, y = _classification(40)
    model = _mlp()
    model.compile(optimizer="rmsprop", loss="categorical_crossentropy", metrics=["accuracy"])
    pred = model.predict(x, verbose=0)
    assert pred.shape == (40, 3) and pred.dtype == np.float32
    np.testing.assert_allclose(pred.sum(axis=1), 1, rtol=1e-5)
    np.testing.assert_allclose(model.predict_on_batch(x[:7]), pred[:7], rtol=1e-6)
    loss, acc = model.evaluate(x, y, verbose=0)
    expected = np.mean(-np.log(np.clip(pred, 1e-7, 1 - 1e-7))[np.arange(40), labels])
    assert loss == pytest.approx(expected, rel=1e-5)
    assert acc == pytest.approx(np.mean(pred.argmax(1) == labels))
    assert model.evaluate(x, y, verbose=0, return_dict=True).keys() == {"accuracy", "loss"}
    assert model.test_on_batch(x, y) == pytest.approx([loss, acc], rel=1e-5)
    model.compile(optimizer="rmsprop", loss="categorical_crossentropy")
    assert isinstance(model.evaluate(x, y, verbose=0), float)


def test_accuracy_resolves_from_shapes_like_keras() -> None:
    x, labels, onehot = _classification(30)
    sparse = _mlp()
    sparse.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["acc"])
    result = sparse.evaluate(x, labels, verbose=0, return_dict=True)
    assert set(result) == {"acc", "loss"}
    assert result["acc"] == pytest.approx(np.mean(sparse.predict(x, verbose=0).argmax(1) == labels))

    binary = _mlp(classes=1, activation="sigmoid")
    binary.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy", "mae"])
    target = (labels == 0).astype(np.float32)
    result = binary.evaluate(x, target, verbose=0, return_dict=True)
    p = binary.predict(x, verbose=0)[:, 0]
    assert result["accuracy"] == pytest.approx(np.mean((p > 0.5) == target))
    assert result["mae"] == pytest.approx(np.mean(np.abs(p - target)), rel=1e-5)
    assert binary.metrics_names == ["loss", "accuracy", "mae"]

    cat = _mlp()
    cat.compile(optimizer="adam", loss="mse", metrics=[metrics.CategoricalAccuracy()])
    assert "categorical_accuracy" in cat.evaluate(x, onehot, verbose=0, return_dict=True)


def test_validation_split_and_validation_data_give_val_keys() -> None:
    x, labels, _ = _classification(50)
    model = _mlp()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x, labels, batch_size=8, epochs=2, validation_split=0.2, verbose=0)
    assert list(history.history) == ["accuracy", "loss", "val_accuracy", "val_loss"]
    assert history.params["steps"] == 5  # 40 training samples
    val = model.evaluate(x[40:], labels[40:], verbose=0, return_dict=True)
    assert history.history["val_loss"][-1] == pytest.approx(val["loss"], rel=1e-6)

    history = model.fit(x, labels, epochs=3, validation_data=(x[:10], labels[:10]), verbose=0)
    assert all(len(v) == 3 for v in history.history.values())
    assert "val_accuracy" in history.history


def test_last_short_batch_and_epoch_means() -> None:
    """10 samples in batches of 4: steps of 4, 4 and 2 through one graph; the epoch's loss is
    the batch-size weighted mean of the step losses (with lr 0 it is the full-data loss)."""
    x, _, y = _classification(10)
    model = _mlp()
    model.compile(optimizer=optimizers.SGD(learning_rate=0.0), loss="mse",
                  metrics=["accuracy"])
    sizes = []

    class Sizes(callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):  # noqa: ANN001, ANN201
            sizes.append(model.optimizer.iterations)

    history = model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0,
                        callbacks=[Sizes()])
    assert history.params["steps"] == 3 and sizes == [1, 2, 3]
    full = model.evaluate(x, y, batch_size=10, verbose=0, return_dict=True)
    assert history.history["loss"][0] == pytest.approx(full["loss"], rel=1e-6)
    assert history.history["accuracy"][0] == pytest.approx(full["accuracy"], rel=1e-6)
    parts = model.evaluate(x, y, batch_size=3, verbose=0, return_dict=True)
    assert parts["loss"] == pytest.approx(full["loss"], rel=1e-6)


def test_shuffle_off_follows_data_order_and_shuffle_on_is_seeded() -> None:
    x, _, y = _classification(12)
    base = _mlp()
    runs = {}
    for name, shuffle in (("off", False), ("on", True), ("on_again", True), ("batch", "batch")):
        model = _twin(base, _mlp)
        model.compile(optimizer=optimizers.SGD(0.1), loss="mse")
        utils.set_random_seed(7)
        model.fit(x, y, batch_size=4, epochs=2, shuffle=shuffle, verbose=0)
        runs[name] = model.get_weights()
    manual = _twin(base, _mlp)
    manual.compile(optimizer=optimizers.SGD(0.1), loss="mse")
    for _ in range(2):
        for start in range(0, 12, 4):
            manual.train_on_batch(x[start:start + 4], y[start:start + 4])
    for got, expected in zip(runs["off"], manual.get_weights()):
        np.testing.assert_array_equal(got, expected)
    for got, expected in zip(runs["on"], runs["on_again"]):
        np.testing.assert_array_equal(got, expected)
    assert not all(np.array_equal(a, b) for a, b in zip(runs["on"], runs["off"]))


def _two_in_two_out() -> models.Model:
    title = layers.Input((5,), name="title")
    body = layers.Input((3,), name="body")
    h_title = layers.Dense(4, activation="relu", name="title_dense")(title)
    h_body = layers.Dense(4, activation="relu", name="body_dense")(body)
    merged = layers.Dense(6, activation="relu", name="merged")(h_title)
    price = layers.Dense(1, name="price")(merged)
    dept = layers.Dense(3, activation="softmax", name="dept")(h_body)
    return models.Model(inputs=[title, body], outputs=[price, dept])


def test_multi_input_multi_output_with_dicts_and_loss_weights() -> None:
    rs = np.random.default_rng(5)
    n = 20
    xs = {"title": rs.standard_normal((n, 5)).astype(np.float32),
          "body": rs.standard_normal((n, 3)).astype(np.float32)}
    ys = {"price": rs.standard_normal((n, 1)).astype(np.float32),
          "dept": np.eye(3, dtype=np.float32)[rs.integers(0, 3, n)]}
    model = _two_in_two_out()
    model.compile(optimizer="rmsprop",
                  loss={"price": "mse", "dept": "categorical_crossentropy"},
                  loss_weights={"price": 1.0, "dept": 0.2},
                  metrics={"price": ["mae"], "dept": ["accuracy"]})
    history = model.fit(xs, ys, batch_size=8, epochs=2, verbose=0)
    assert set(history.history) == {"loss", "price_loss", "dept_loss", "price_mae",
                                    "dept_accuracy"}
    logs = model.evaluate(xs, ys, verbose=0, return_dict=True)
    assert logs["loss"] == pytest.approx(logs["price_loss"] + 0.2 * logs["dept_loss"], rel=1e-5)
    price, dept = model.predict(xs, verbose=0)
    assert price.shape == (n, 1) and dept.shape == (n, 3)
    assert logs["price_mae"] == pytest.approx(np.mean(np.abs(price - ys["price"])), rel=1e-5)
    assert logs["price_loss"] == pytest.approx(np.mean((price - ys["price"]) ** 2), rel=1e-5)
    # lists in output order mean the same as dicts
    same = model.evaluate([xs["title"], xs["body"]], [ys["price"], ys["dept"]], verbose=0,
                          return_dict=True)
    assert same == pytest.approx(logs)
    ordered = model.evaluate(xs, ys, verbose=0)
    assert ordered[0] == pytest.approx(logs["loss"])
    assert len(ordered) == 5


def test_dict_outputs_predict_as_dict_and_single_loss_applies_to_each_output() -> None:
    inp = layers.Input((4,), name="features")
    a = layers.Dense(2, name="a")(inp)
    b = layers.Dense(2, name="b")(inp)
    model = models.Model(inputs=inp, outputs={"first": a, "second": b})
    model.compile(optimizer="sgd", loss="mse")
    x = np.ones((3, 4), np.float32)
    out = model.predict(x, verbose=0)
    assert set(out) == {"first", "second"} and out["first"].shape == (3, 2)
    logs = model.evaluate(x, {"first": np.zeros((3, 2)), "second": np.ones((3, 2))},
                          verbose=0, return_dict=True)
    assert set(logs) == {"loss", "first_loss", "second_loss"}
    assert logs["first_loss"] == pytest.approx(np.mean(out["first"] ** 2), rel=1e-5)


def test_outputs_without_a_loss_need_no_target() -> None:
    inp = layers.Input((4,), name="features")
    a = layers.Dense(2, name="a")(inp)
    b = layers.Dense(3, activation="softmax", name="b")(inp)
    model = models.Model(inputs=inp, outputs=[a, b])
    model.compile(optimizer="sgd", loss={"a": "mse"}, metrics={"a": ["mae"]})
    x = np.ones((5, 4), np.float32)
    ya = np.zeros((5, 2), np.float32)
    logs = model.evaluate(x, {"a": ya}, verbose=0, return_dict=True)
    assert logs == pytest.approx(model.evaluate(x, [ya, None], verbose=0, return_dict=True))
    pred_a = model.predict(x, verbose=0)[0]
    assert logs["loss"] == pytest.approx(np.mean(pred_a ** 2), rel=1e-5)
    model.fit(x, {"a": ya}, epochs=1, verbose=0)


def test_class_weight_scales_each_sample_loss() -> None:
    x, labels, _ = _classification(12)
    model = _mlp()
    model.compile(optimizer=optimizers.SGD(learning_rate=0.0),
                  loss="sparse_categorical_crossentropy")
    pred = model.predict(x, verbose=0)
    per_sample = -np.log(pred[np.arange(12), labels])
    weights = np.array([2.0, 1.0, 0.5])[labels]
    loss = model.train_on_batch(x, labels, class_weight={0: 2.0, 1: 1.0, 2: 0.5})
    assert loss == pytest.approx(np.sum(per_sample * weights) / 12, rel=1e-5)


def test_unbuilt_sequential_builds_from_the_data() -> None:
    model = models.Sequential([layers.Dense(4, activation="relu"), layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    x = np.zeros((6, 7), np.float32)
    model.fit(x, np.zeros(6), epochs=1, verbose=0)
    assert [w.shape for w in model.get_weights()] == [(7, 4), (4,), (4, 1), (1,)]
    assert model.predict(x, verbose=0).shape == (6, 1)


def test_dropout_and_batch_normalization_train() -> None:
    x, labels, _ = _classification(32)
    model = models.Sequential([layers.Input((6,)), layers.Dense(8, activation="relu"),
                               layers.BatchNormalization(), layers.Dropout(0.5),
                               layers.Dense(3, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    moving_mean = model.layers[1].moving_mean.value.copy()
    model.fit(x, labels, batch_size=8, epochs=1, verbose=0)
    seed = int(model._seed)
    model.fit(x, labels, batch_size=8, epochs=2, verbose=0)
    assert int(model._seed) == seed + 8  # one key per training step
    assert not np.array_equal(model.layers[1].moving_mean.value, moving_mean)
    first = model.predict(x, verbose=0)
    np.testing.assert_array_equal(first, model.predict(x, verbose=0))  # inference: no dropout


def test_graphs_are_cached_until_recompile() -> None:
    x, _, y = _classification(8)
    model = _mlp()
    model.compile(optimizer="adam", loss="mse")
    model.fit(x, y, epochs=1, verbose=0)
    exe = model._executable
    model.fit(x, y, epochs=1, verbose=0)
    model.predict(x, verbose=0)
    model.predict(x, verbose=0)
    assert set(model._graphs) == {"train_step", "predict"}
    exe = model._executable
    model.evaluate(x, y, verbose=0)
    model.evaluate(x, y, verbose=0)
    assert model._executable is not exe and set(model._graphs) == {"train_step", "predict",
                                                                    "test_step"}
    exe = model._executable
    model.fit(x, y, epochs=1, verbose=0, validation_data=(x, y))
    assert model._executable is exe
    model.compile(optimizer="adam", loss="mse")
    assert model._graphs == {}


def test_weights_stay_in_sync_with_the_executable() -> None:
    x, _, y = _classification(8)
    model = _mlp()
    model.compile(optimizer="sgd", loss="mse")
    kernel = model.layers[0].kernel.value
    model.fit(x, y, epochs=1, verbose=0)
    assert model.layers[0].kernel.value is kernel  # updated in place, never copied
    zeros = [np.zeros_like(w) for w in model.get_weights()]
    model.set_weights(zeros)
    np.testing.assert_array_equal(model.predict(x, verbose=0), np.full((8, 3), 1 / 3, np.float32))


def test_optimizers_keras_arguments_and_state() -> None:
    assert isinstance(optimizers.get("rmsprop"), optimizers.RMSprop)
    assert optimizers.get("rmsprop").learning_rate == pytest.approx(0.001)
    assert optimizers.SGD().learning_rate == pytest.approx(0.01)
    assert optimizers.Adam(lr=0.02).learning_rate == pytest.approx(0.02)
    adagrad = optimizers.Adagrad()
    assert adagrad.get_config()["initial_accumulator_value"] == 0.1
    opt = optimizers.Adam(learning_rate=0.01)
    opt.learning_rate = 0.005
    x, _, y = _classification(8)
    model = _mlp()
    model.compile(optimizer=opt, loss="mse")
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    assert opt.iterations == 2 and opt.learning_rate == pytest.approx(0.005)
    assert opt.count_params() == 2 * sum(w.size for w in model.get_weights()) + 2
    opt.lr = 0.25  # Keras 2's name, same state
    assert float(opt.state["optimizer.learning_rate"]) == 0.25
    model.compile(optimizer=opt, loss="mse")  # same optimizer: its state carries on
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert opt.iterations == 3
    with pytest.raises(KilnValueError, match="learning_rate=-1"):
        opt.learning_rate = -1
    with pytest.raises(KilnValueError, match="use_ema"):
        optimizers.SGD(use_ema=True)


def test_losses_and_metrics_as_functions_and_objects() -> None:
    y = np.array([[0.0, 1.0], [1.0, 0.0]], np.float32)
    p = np.array([[0.2, 0.8], [0.6, 0.4]], np.float32)
    np.testing.assert_allclose(losses.mse(y, p), np.mean((y - p) ** 2, axis=-1), rtol=1e-6)
    np.testing.assert_allclose(losses.MeanAbsoluteError()(y, p), np.mean(np.abs(y - p)),
                               rtol=1e-6)
    np.testing.assert_allclose(losses.categorical_crossentropy(y, p), -np.log([0.8, 0.6]),
                               rtol=1e-6)
    np.testing.assert_allclose(losses.sparse_categorical_crossentropy(np.array([1, 0]), p),
                               -np.log([0.8, 0.6]), rtol=1e-6)
    np.testing.assert_allclose(losses.SparseCategoricalCrossentropy(from_logits=True)(
        np.array([1, 0]), np.log(p)), np.mean(-np.log([0.8, 0.6])), rtol=1e-5)
    np.testing.assert_allclose(metrics.categorical_accuracy(y, p), [1.0, 1.0])
    acc = metrics.BinaryAccuracy()
    acc.update_state([[1.0], [0.0]], [[0.7], [0.9]])
    assert acc.result() == 0.5
    assert isinstance(losses.get("binary_crossentropy"), losses.BinaryCrossentropy)
    x, _, onehot = _classification(10)
    model = _mlp()
    model.compile(optimizer="adam", loss=losses.categorical_crossentropy,
                  metrics=[metrics.mae, "mean_squared_error"])
    logs = model.evaluate(x, onehot, verbose=0, return_dict=True)
    assert set(logs) == {"loss", "mean_absolute_error", "mean_squared_error"}
    model.compile(optimizer="adam", loss=losses.CategoricalCrossentropy(label_smoothing=0.1))
    pred = model.predict(x, verbose=0)
    smoothed = onehot * 0.9 + 0.1 / 3
    expected = np.mean(-np.sum(smoothed * np.log(pred), axis=-1))
    assert model.evaluate(x, onehot, verbose=0) == pytest.approx(expected, rel=1e-5)


def test_backend_argument() -> None:
    model = _mlp()
    model.compile(optimizer="sgd", loss="mse", backend="reference")
    with pytest.raises(KilnValueError, match="backend='tpu'"):
        model.compile(optimizer="sgd", loss="mse", backend="tpu")
    assert model._backend == "reference"
