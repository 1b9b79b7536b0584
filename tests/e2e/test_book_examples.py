"""The book's examples with `keras` replaced by `kiln`: the seed's Sequential and functional
models (RMSprop(lr=0.001), mse, accuracy, batch 128, 10 epochs), the shapes of sections 3.4-3.6
(binary, 46-class and regression) on learnable generated data, a convnet on real digits, an
LSTM and a transformer encoder, each trained end to end through compiled graphs on every CPU
backend that compiles: numba (the default) and onnxruntime, and on numba-cuda where a GPU is
there to run them
(KILN_CUDA_TESTS=gpu, as benchmarks/gpu.sh sets; CI has none and skips them). The reference
runtime is the oracle the backends are tested against op by op; these tests are about whole
models training."""

from __future__ import annotations

import os

import numpy as np
import pytest

from kiln import layers, models, optimizers
from kiln.datasets import synthetic
from kiln.utils import pad_sequences, set_random_seed, to_categorical

ON_GPU = pytest.param("numba-cuda", marks=pytest.mark.skipif(
    os.environ.get("KILN_CUDA_TESTS") != "gpu",
    reason="numba-cuda end to end needs a GPU: KILN_CUDA_TESTS=gpu (benchmarks/gpu.sh)"))


@pytest.fixture(params=["numba", "onnxruntime", ON_GPU])
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


def _mnist_like(n: int = 2048, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """784-feature inputs whose class (one-hot, 10) comes from a hidden linear map."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 784)).astype("float32")
    return x, to_categorical(np.argmax(x @ rng.standard_normal((784, 10)), axis=1), 10)


def _compile_and_fit_the_seed_way(model: models.Model, backend: str) -> dict:
    x, y = _mnist_like()
    model.compile(optimizer=optimizers.RMSprop(lr=0.001), loss="mse", metrics=["accuracy"],
                  backend=backend)
    history = model.fit(x, y, batch_size=128, epochs=10, verbose=0)
    return history.history


def test_the_seeds_sequential_model(backend: str) -> None:
    set_random_seed(1)
    model = models.Sequential()
    model.add(layers.Dense(32, activation="relu", input_shape=(784,)))
    model.add(layers.Dense(10, activation="softmax"))
    history = _compile_and_fit_the_seed_way(model, backend)
    assert sorted(history) == ["accuracy", "loss"] and len(history["loss"]) == 10
    assert history["loss"][-1] < history["loss"][0] * 0.6
    assert history["accuracy"][-1] > 0.6


def test_the_seeds_functional_model(backend: str) -> None:
    set_random_seed(1)
    input_tensor = layers.Input(shape=(784,))
    x = layers.Dense(32, activation="relu")(input_tensor)
    output_tensor = layers.Dense(10, activation="softmax")(x)
    model = models.Model(inputs=input_tensor, outputs=output_tensor)
    history = _compile_and_fit_the_seed_way(model, backend)
    assert history["loss"][-1] < history["loss"][0] * 0.6
    assert history["accuracy"][-1] > 0.6


def test_binary_classification_section_3_4(backend: str) -> None:
    set_random_seed(2)
    (train_data, train_labels), (test_data, test_labels) = synthetic.imdb_like(
        num_samples=3000, num_words=2000, maxlen=120)
    x_train = synthetic.vectorize_sequences(train_data, 2000)
    x_test = synthetic.vectorize_sequences(test_data, 2000)
    y_train = train_labels.astype("float32")
    y_test = test_labels.astype("float32")
    model = models.Sequential()
    model.add(layers.Dense(16, activation="relu", input_shape=(2000,)))
    model.add(layers.Dense(16, activation="relu"))
    model.add(layers.Dense(1, activation="sigmoid"))
    model.compile(optimizer="rmsprop", loss="binary_crossentropy", metrics=["accuracy"],
                  backend=backend)
    history = model.fit(x_train[400:], y_train[400:], epochs=4, batch_size=128,
                        validation_data=(x_train[:400], y_train[:400]), verbose=0)
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(history.history)
    loss, accuracy = model.evaluate(x_test, y_test, verbose=0)
    assert accuracy > 0.8, accuracy
    predictions = model.predict(x_test[:5], verbose=0)
    assert predictions.shape == (5, 1) and np.all((predictions > 0) & (predictions < 1))


@pytest.mark.parametrize("labels", ["one_hot", "sparse"])
def test_multiclass_classification_section_3_5(labels: str, backend: str) -> None:
    set_random_seed(3)
    (train_data, train_labels), (test_data, test_labels) = synthetic.reuters_like(
        num_samples=3000, num_words=2000)
    x_train = synthetic.vectorize_sequences(train_data, 2000)
    x_test = synthetic.vectorize_sequences(test_data, 2000)
    if labels == "one_hot":
        y_train, y_test = to_categorical(train_labels, 46), to_categorical(test_labels, 46)
        loss = "categorical_crossentropy"
    else:
        y_train, y_test = train_labels, test_labels
        loss = "sparse_categorical_crossentropy"
    model = models.Sequential([
        layers.Dense(64, activation="relu", input_shape=(2000,)),
        layers.Dense(64, activation="relu"),
        layers.Dense(46, activation="softmax"),
    ])
    model.compile(optimizer="rmsprop", loss=loss, metrics=["accuracy"], backend=backend)
    history = model.fit(x_train, y_train, epochs=10, batch_size=128, validation_split=0.2,
                        verbose=0)
    assert history.history["val_loss"][-1] < history.history["val_loss"][0]
    _, accuracy = model.evaluate(x_test, y_test, verbose=0)
    assert accuracy > 0.5, accuracy  # 46 classes: chance is about 0.03
    assert model.predict(x_test[:3], verbose=0).sum(axis=1) == pytest.approx(1.0, rel=1e-5)


def test_regression_section_3_6(backend: str) -> None:
    set_random_seed(4)
    (train_data, train_targets), (test_data, test_targets) = synthetic.boston_like(
        num_samples=500)
    mean, std = train_data.mean(axis=0), train_data.std(axis=0)
    train_data = (train_data - mean) / std
    test_data = (test_data - mean) / std
    model = models.Sequential([
        layers.Dense(64, activation="relu", input_shape=(train_data.shape[1],)),
        layers.Dense(64, activation="relu"),
        layers.Dense(1),
    ])
    model.compile(optimizer="rmsprop", loss="mse", metrics=["mae"], backend=backend)
    history = model.fit(train_data, train_targets, epochs=40, batch_size=16, verbose=0)
    assert sorted(history.history) == ["loss", "mae"]
    _, test_mae = model.evaluate(test_data, test_targets, verbose=0)
    baseline = np.mean(np.abs(test_targets - train_targets.mean()))
    assert test_mae < 0.6 * baseline, (test_mae, baseline)


def test_a_convnet_trains_on_real_digits(backend: str) -> None:
    pytest.importorskip("sklearn")
    from kiln.datasets import digits

    set_random_seed(5)
    (x_train, y_train), (x_test, y_test) = digits.load_data()
    x_train = (x_train / 16.0).reshape(-1, 8, 8, 1)
    x_test = (x_test / 16.0).reshape(-1, 8, 8, 1)
    model = models.Sequential([
        layers.Conv2D(16, (3, 3), activation="relu", padding="same", input_shape=(8, 8, 1)),
        layers.MaxPooling2D((2, 2)),
        layers.Conv2D(32, (3, 3), activation="relu"),
        layers.Flatten(),
        layers.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"], backend=backend)
    model.fit(x_train, y_train, epochs=10, batch_size=32, verbose=0)
    _, accuracy = model.evaluate(x_test, y_test, verbose=0)
    assert accuracy > 0.9, accuracy


def _reviews() -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """The generated IMDB-like reviews, 30 words each (train and test)."""
    (x_train, y_train), (x_test, y_test) = synthetic.imdb_like(
        num_samples=1200, num_words=500, maxlen=40)
    return ((pad_sequences(x_train, maxlen=30), y_train.astype("float32")),
            (pad_sequences(x_test, maxlen=30), y_test.astype("float32")))


def _assert_learns_the_reviews(model: models.Model, backend: str, learning_rate: float) -> None:
    """Adam on the reviews for 10 epochs: the loss halves, the training accuracy passes 0.85
    and the test accuracy is above chance (the generated reviews carry a weak signal at this
    size: above chance is what it allows)."""
    (x_train, y_train), (x_test, y_test) = _reviews()
    model.compile(optimizer=optimizers.Adam(learning_rate=learning_rate),
                  loss="binary_crossentropy", metrics=["accuracy"], backend=backend)
    history = model.fit(x_train, y_train, epochs=10, batch_size=32, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0] * 0.5
    assert history.history["accuracy"][-1] > 0.85
    _, accuracy = model.evaluate(x_test, y_test, verbose=0)
    assert accuracy > 0.6, accuracy


def test_an_lstm_trains_on_sequences(backend: str) -> None:
    set_random_seed(6)
    model = models.Sequential([
        layers.Embedding(500, 16),
        layers.LSTM(16),
        layers.Dense(1, activation="sigmoid"),
    ])
    _assert_learns_the_reviews(model, backend, 0.01)


@pytest.mark.parametrize("backend", ["onnxruntime", ON_GPU])
def test_a_transformer_encoder_trains_on_sequences(backend: str) -> None:
    """The book's chapter-11 encoder in small on the generated reviews: embeddings, one
    MultiHeadAttention block with add and LayerNormalization, a feed-forward block, global
    pooling. (numba trains the same block like the reference in test_layers_attention; its
    first compile of this step, about 20 s, is left out of CI here.)"""
    set_random_seed(7)
    tokens = layers.Input(shape=(30,), dtype="int32")
    x = layers.Embedding(500, 16)(tokens)
    attention = layers.MultiHeadAttention(num_heads=2, key_dim=16)(x, x)
    x = layers.LayerNormalization()(layers.add([x, attention]))
    x = layers.LayerNormalization()(layers.add([x, layers.Dense(16)(
        layers.Dense(32, activation="relu")(x))]))
    outputs = layers.Dense(1, activation="sigmoid")(layers.GlobalMaxPooling1D()(x))
    _assert_learns_the_reviews(models.Model(tokens, outputs), backend, 0.003)
