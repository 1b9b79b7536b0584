"""kiln's side of the benchmarks: the models built with kiln's Keras layers, compiled
for a backend, timed three ways per training step and two ways per prediction.

- `train_on_batch` / `predict_on_batch`: the public API (input checks, feed building, the
  executable's run, the loss as a float or a copied output).
- `exe.run`: the executable's run call with the feed `train_on_batch` builds, built once.
- `driver` (numba only): the generated @njit driver called with its argument tuple prepared
  once: the compiled code alone, without the executable's Python.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from benchmarks.models import (
    A_CONVS,
    A_ROTATION,
    A_ZOOM,
    EMBED,
    LEARNING_RATE,
    SEPARABLE,
    SEPARABLE_POOLS,
    SPECS,
    T_DENSE,
    T_EMBED,
    T_HEADS,
    T_VOCAB,
    UNITS,
    VOCAB,
)


def build(name: str, backend: str, weights: list[np.ndarray]) -> Any:
    """The model `name` with these (Keras-layout) weights, compiled with RMSprop for `backend`."""
    from kiln import layers, models

    if name == "mlp":
        stack = [layers.Input(shape=(784,)), layers.Dense(512, activation="relu"),
                 layers.Dense(10, activation="softmax")]
    elif name == "convnet":
        stack = [layers.Input(shape=(28, 28, 1)), layers.Conv2D(32, 3, activation="relu"),
                 layers.MaxPooling2D(2), layers.Conv2D(64, 3, activation="relu"),
                 layers.MaxPooling2D(2), layers.Flatten(), layers.Dense(10, activation="softmax")]
    elif name == "separable":
        stack = [layers.Input(shape=(64, 64, 3))]
        for k, (_, cout) in enumerate(SEPARABLE):
            stack.append(layers.SeparableConv2D(cout, 3, activation="relu"))
            if k in SEPARABLE_POOLS:
                stack.append(layers.MaxPooling2D(2))
        stack += [layers.GlobalAveragePooling2D(), layers.Dense(32, activation="relu"),
                  layers.Dense(10, activation="softmax")]
    elif name == "transformer":
        return _compiled(_transformer(), weights, name, backend)
    elif name == "augmented":
        return _compiled(_augmented(), weights, name, backend)
    else:
        stack = [layers.Input(shape=(100,), dtype="int32"), layers.Embedding(VOCAB, EMBED),
                 layers.LSTM(UNITS), layers.Dense(1, activation="sigmoid")]
    return _compiled(models.Sequential(stack), weights, name, backend)


def _transformer() -> Any:
    """The book's TransformerEncoder classifier, as its functional code writes it."""
    from kiln import layers, models

    tokens = layers.Input(shape=SPECS["transformer"].x_shape, dtype="int32")
    x = layers.Embedding(T_VOCAB, T_EMBED)(tokens)
    attention = layers.MultiHeadAttention(num_heads=T_HEADS, key_dim=T_EMBED)(x, x)
    x = layers.LayerNormalization()(layers.add([x, attention]))
    projected = layers.Dense(T_EMBED)(layers.Dense(T_DENSE, activation="relu")(x))
    x = layers.LayerNormalization()(layers.add([x, projected]))
    outputs = layers.Dense(1, activation="sigmoid")(layers.GlobalMaxPooling1D()(x))
    return models.Model(tokens, outputs)


def _augmented() -> Any:
    """The book's chapter-8 convnet with its data augmentation (fixed factors: (f, f) draws
    exactly f), as its functional code writes it; train_on_batch augments, predict does not."""
    from kiln import layers, models

    inputs = layers.Input(shape=SPECS["augmented"].x_shape)
    x = layers.RandomRotation((A_ROTATION, A_ROTATION), fill_mode="reflect",
                              interpolation="bilinear")(inputs)
    x = layers.RandomZoom((A_ZOOM, A_ZOOM), fill_mode="reflect", interpolation="bilinear")(x)
    x = layers.Rescaling(1.0 / 255)(x)
    for filters in A_CONVS:
        x = layers.MaxPooling2D(2)(layers.Conv2D(filters, 3, activation="relu")(x))
    outputs = layers.Dense(1, activation="sigmoid")(layers.Flatten()(x))
    return models.Model(inputs, outputs)


def _compiled(model: Any, weights: list[np.ndarray], name: str, backend: str) -> Any:
    from kiln import optimizers

    model.set_weights(weights)
    model.compile(optimizer=optimizers.RMSprop(LEARNING_RATE), loss=SPECS[name].loss,
                  backend=backend)
    return model


class KilnPeer:
    """One kiln model on one backend, with every entry point built before timing starts."""

    def __init__(self, name: str, backend: str, weights: list[np.ndarray], x: np.ndarray,
                 y: np.ndarray, predict_batches: tuple[np.ndarray, ...] = ()):
        self.name, self.backend = name, backend
        self.model = build(name, backend, weights)
        self.x, self.y = x, y
        self.train_data = self.model._dataset(x, y)
        # Every entry built at once (predict's graph depends on the sample shape only): a
        # later _runtime call with a new entry would replace the executable and leave the
        # callables below running on the old one.
        sample = predict_batches[0] if predict_batches else x[:1]
        wanted = {"train_step": self.train_data,
                  "predict": self.model._dataset(sample, targets=False)}
        self.exe = self.model._runtime(wanted)

    # -- training ------------------------------------------------------------------------
    def train_api(self) -> Callable[[], object]:
        model, x, y = self.model, self.x, self.y
        return lambda: model.train_on_batch(x, y)

    def train_exe(self) -> Callable[[], object]:
        exe, feed = self.exe, self.train_data.feed
        return lambda: exe.run("train_step", feed)

    def train_driver(self) -> Callable[[], object]:
        """The numba driver alone; relies on NumbaExecutable's internals (entries, arena), so
        it raises when those change and the caller reports that as a note."""
        return driver_call(self.exe, "train_step", self.train_data.feed)

    def profile(self, repeats: int, warmup: int) -> object:
        """kiln's own per-node profile of the training step (kiln.runtimes.profiling)."""
        return self.exe.profile("train_step", self.train_data.feed, repeats=repeats,
                                warmup=warmup)

    def loss(self) -> float:
        """The loss of one training step on the timing batch (for the correctness check)."""
        return float(self.model.train_on_batch(self.x, self.y))

    # -- inference -----------------------------------------------------------------------
    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.model.predict_on_batch(x))

    def predict_api(self, x: np.ndarray) -> Callable[[], object]:
        model = self.model
        return lambda: model.predict_on_batch(x)

    def predict_exe(self, x: np.ndarray) -> Callable[[], object]:
        exe, feed = self.exe, self.model._dataset(x, targets=False).feed
        return lambda: exe.run("predict", feed)

    def predict_driver(self, x: np.ndarray) -> Callable[[], object]:
        return driver_call(self.exe, "predict", self.model._dataset(x, targets=False).feed)

    # -- fit -----------------------------------------------------------------------------
    def fit(self, x: np.ndarray, y: np.ndarray, batch_size: int) -> Callable[[], object]:
        model = self.model
        return lambda: model.fit(x, y, batch_size=batch_size, epochs=1, verbose=0)


def driver_call(exe: Any, entry: str, feed: dict[str, np.ndarray]) -> Callable[[], object]:
    """A zero-argument call of the numba executable's generated driver for `entry` with the
    very arguments `exe.run` passes it: one run is made with the entry's compiled function
    wrapped to record them (so this follows however run assembles them)."""
    if exe.backend != "numba":
        raise TypeError(f"the driver alone exists for the numba backend only. "
                        f"Received: backend={exe.backend!r}")
    e = exe.entries[entry]
    function = e.function
    captured: list[tuple] = []

    def recording(*args: Any) -> Any:
        captured.append(args)
        return function(*args)

    e.function = recording
    try:
        exe.run(entry, feed)
    finally:
        e.function = function
    if len(captured) != 1:
        raise TypeError(f"exe.run called the driver {len(captured)} times, expected once")
    args = captured[0]
    return lambda: function(*args)


def imported_onnx_call(data: bytes, x: np.ndarray) -> tuple[Callable[[], object], str]:
    """kiln's numba executable of an ONNX model (the torch export onnxruntime runs),
    imported by kiln.frontends.onnx: (one exe.run on x in the export's layout, the name of
    the output in the dict it returns)."""
    import onnx

    from kiln.frontends.onnx import import_onnx

    model = import_onnx(onnx.load_from_string(data), backend="numba")
    exe, feed = model.executable(), {model.input_names[0]: x}
    return (lambda: exe.run("predict", feed)), model.output_names[0]
