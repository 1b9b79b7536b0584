"""Custom layers made of layers, as Keras composes them: sublayers kept in attributes (alone,
in lists or dicts) and called inside `call`. Their weights are the layer's, in Keras's order,
under names of where the layer keeps them; freezing reaches them; masks and the training
flag pass into them; the book's TransformerEncoder and PositionalEmbedding train, save and
load; gradients match finite differences; the CPU backends match the reference."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kiln import layers, models, ops, optimizers
from kiln.ir import KilnTypeError, KilnValueError
from tests.book_models import text_classifier_layers
from tests.frontends.keras.steps import (
    assert_gradient_matches_finite_differences,
    assert_trains_like_the_reference,
)

RNG = np.random.default_rng(12)
# The book's encoder drops its input's mask, with Keras's warning (checked once below).
pytestmark = pytest.mark.filterwarnings("ignore:.*does not support masking")
TOL = {"rtol": 2e-5, "atol": 1e-6}


TransformerEncoder, PositionalEmbedding = text_classifier_layers(layers, ops, models)


CUSTOM = {"TransformerEncoder": TransformerEncoder, "PositionalEmbedding": PositionalEmbedding}


def transformer(length: int = 6, vocab: int = 20, dim: int = 4,
                steps: int | None = -1) -> models.Model:
    """The book's text classifier; steps=None: sequences of any length up to `length`,
    as the book's Input(shape=(None,))."""
    ids = layers.Input((length if steps == -1 else steps,), dtype="int32")
    x = PositionalEmbedding(length, vocab, dim)(ids)
    x = TransformerEncoder(dim, 8, 2)(x)
    x = layers.GlobalMaxPooling1D()(x)
    return models.Model(ids, layers.Dense(1)(x))


def token_ids(n: int, length: int = 6, vocab: int = 20, pad_from: int = 4) -> np.ndarray:
    x = RNG.integers(1, vocab, (n, length))
    x[: n // 2, pad_from:] = 0  # half the rows padded
    return x


class Scaled(layers.Layer):
    """A weight of its own and a sublayer: tanh(proj(x)) * scale."""

    def __init__(self, units: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.proj = layers.Dense(units)

    def build(self, input_shape: tuple) -> None:
        self.scale = self.add_weight(shape=(self.proj.units,), initializer="random_normal",
                                     name="scale")

    def call(self, inputs: Any) -> Any:
        return ops.tanh(self.proj(inputs)) * self.scale


class Stack(layers.Layer):
    """Sublayers in a list and a dict, a batch normalization, a dropout that takes the
    call's training flag."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.blocks = [layers.Dense(3, activation="relu"), layers.Dense(3)]
        self.parts = {"norm": layers.BatchNormalization(), "drop": layers.Dropout(0.5)}

    def call(self, inputs: Any, training: Any = None) -> Any:
        h = inputs
        for block in self.blocks:
            h = block(h)
        return self.parts["drop"](self.parts["norm"](h), training=training)


# -- weights, names, freezing --------------------------------------------------------------
def test_a_layers_weights_are_its_own_then_its_sublayers_in_keras_order() -> None:
    layer = Scaled(2, name="scaled")
    x = layers.Input((3,))
    model = models.Model(x, layer(x))
    assert [v.path for v in layer.weights] == ["scaled/scale", "scaled/proj/kernel",
                                               "scaled/proj/bias"]
    assert layer.sublayers() == [layer.proj] and layer.proj.name == "scaled/proj"
    assert [v.path for v in model.weights] == [v.path for v in layer.weights]
    assert layer.count_params() == model.count_params() == 2 + 3 * 2 + 2
    stack = Stack(name="stack")
    stack(layers.Input((4,)))
    assert [v.path for v in stack.weights] == [
        "stack/blocks/0/kernel", "stack/blocks/0/bias", "stack/blocks/1/kernel",
        "stack/blocks/1/bias", "stack/parts/norm/gamma", "stack/parts/norm/beta",
        "stack/parts/norm/moving_mean", "stack/parts/norm/moving_variance"]
    assert [v.path for v in stack.non_trainable_weights] == [
        "stack/parts/norm/moving_mean", "stack/parts/norm/moving_variance"]


def test_a_layer_computes_what_its_sublayers_compute() -> None:
    layer = Scaled(2)
    x = layers.Input((3,))
    model = models.Model(x, layer(x))
    model.compile(loss="mse", backend="reference")
    scale, kernel, bias = layer.get_weights()
    data = RNG.standard_normal((5, 3)).astype(np.float32)
    np.testing.assert_allclose(model.predict(data, verbose=0),
                               np.tanh(data @ kernel + bias) * scale, **TOL)


def test_sublayers_appended_after_init_are_tracked_and_named_where_they_are_kept() -> None:
    class Grown(layers.Layer):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.blocks: list = []
            for _ in range(2):
                self.blocks.append(layers.Dense(2))

        def call(self, inputs: Any) -> Any:
            return self.blocks[1](self.blocks[0](inputs))

    layer = Grown(name="grown")
    model = models.Model(x := layers.Input((2,)), layer(x))
    assert [b.name for b in layer.blocks] == ["grown/blocks/0", "grown/blocks/1"]
    assert len(model.trainable_weights) == 4


def test_freezing_a_model_or_a_layer_freezes_what_it_is_made_of() -> None:
    base = models.Sequential([layers.Input((4,)), layers.Dense(3)])
    base.trainable = False  # the book's conv_base.trainable = False
    model = models.Sequential([layers.Input((4,)), base, layers.Dense(1)])
    assert (len(model.trainable_weights), len(model.non_trainable_weights)) == (2, 2)
    assert not base.layers[0].trainable
    model.compile(optimizer=optimizers.SGD(0.1), loss="mse", backend="reference")
    before = base.get_weights()
    model.train_on_batch(RNG.standard_normal((4, 4)), RNG.standard_normal((4, 1)))
    for a, b in zip(before, base.get_weights()):
        np.testing.assert_array_equal(a, b)
    base.trainable = True
    assert len(model.trainable_weights) == 4
    layer = Scaled(2)
    layer(layers.Input((3,)))
    layer.trainable = False
    assert not layer.proj.trainable and layer.trainable_weights == []
    assert len(layer.non_trainable_weights) == 3


# -- masks and the training flag ------------------------------------------------------------
class Encode(layers.Layer):
    """Returns its LSTM's output: the mask it carries comes out with it."""

    def __init__(self, explicit: bool, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.explicit = explicit
        self.rnn = layers.LSTM(3, return_sequences=True)

    def call(self, inputs: Any) -> Any:
        if self.explicit:  # Masking(0.0)'s mask, passed by hand
            return self.rnn(inputs, mask=ops.any(ops.not_equal(inputs, 0.0), axis=-1))
        return self.rnn(inputs)


@pytest.mark.parametrize("explicit", [False, True])
def test_masks_pass_into_sublayers_and_out_with_their_outputs(explicit: bool) -> None:
    def build(custom: bool) -> models.Model:
        x = layers.Input((5, 2))
        h = x if explicit else layers.Masking(0.0)(x)
        h = Encode(explicit)(h) if custom else layers.LSTM(3, return_sequences=True)(
            layers.Masking(0.0)(h) if explicit else h)
        return models.Model(x, layers.GlobalAveragePooling1D()(h))

    ours, plain = build(True), build(False)
    plain.set_weights(ours.get_weights())
    for m in (ours, plain):
        m.compile(loss="mse", backend="reference")
    data = RNG.standard_normal((4, 5, 2)).astype(np.float32)
    data[:2, 3:] = 0.0
    np.testing.assert_allclose(ours.predict(data, verbose=0), plain.predict(data, verbose=0),
                               **TOL)
    unmasked = RNG.standard_normal((4, 5, 2)).astype(np.float32)
    assert not np.allclose(ours.predict(data, verbose=0)[:2],
                           ours.predict(np.where(data == 0, unmasked, data), verbose=0)[:2])


def test_the_training_flag_reaches_sublayers_and_a_given_one_holds_inside() -> None:
    def train_loss(training: Any) -> float:
        x = layers.Input((50,))
        model = models.Model(x, Stack()(x, training=training) if training is not None
                             else Stack()(x))
        model.compile(optimizer=optimizers.SGD(0.0), loss="mse", backend="reference")
        data = RNG.standard_normal((8, 50)).astype(np.float32)
        model.set_weights([np.eye(50, 3, dtype=np.float32), np.zeros(3, np.float32),
                           np.eye(3, dtype=np.float32), np.zeros(3, np.float32),
                           np.ones(3, np.float32), np.zeros(3, np.float32),
                           np.zeros(3, np.float32), np.ones(3, np.float32)])
        inference = model.predict(data, verbose=0)
        return float(model.train_on_batch(data, inference)), model, data

    forced, model, data = train_loss(False)
    assert forced == pytest.approx(0.0, abs=1e-6)  # no dropout; moving statistics as given
    dropped, model, data = train_loss(None)
    assert dropped > 1e-3  # in training, Dropout drops and BatchNormalization normalizes
    moving_mean = model.weights[6].numpy()
    h = np.maximum(data[:, :3], 0)
    np.testing.assert_allclose(moving_mean, 0.01 * h.mean(0), rtol=1e-4, atol=1e-6)


# -- the book's transformer ------------------------------------------------------------------
@pytest.mark.filterwarnings("default")
def test_the_books_transformer_encoder_trains_saves_and_loads(tmp_path: Path) -> None:
    with pytest.warns(UserWarning, match="type TransformerEncoder.*does not support masking"):
        model = transformer()  # as Keras warns: its call takes the mask, gives none
    encoder = model.layers[2]
    assert isinstance(encoder, TransformerEncoder)
    assert [s.name for s in encoder.sublayers()] == [
        f"{encoder.name}/attention", f"{encoder.name}/dense_proj",
        f"{encoder.name}/layernorm_1", f"{encoder.name}/layernorm_2"]
    assert len(model.weights) == 2 + 8 + 4 + 4 + 2
    model.compile(optimizer="rmsprop", loss="mse", backend="reference")
    x, y = token_ids(8), RNG.standard_normal((8, 1)).astype(np.float32)
    losses = model.fit(x, y, epochs=3, batch_size=4, verbose=0).history["loss"]
    assert losses[-1] < losses[0]
    model.save(tmp_path / "t.kiln")
    for _ in range(3):  # other layers made first: automatic names move on, the saved don't
        layers.Dense(1), layers.LayerNormalization(), layers.Embedding(2, 2)
    loaded = models.load_model(tmp_path / "t.kiln", custom_objects=CUSTOM)
    assert [v.path for v in loaded.weights] == [v.path for v in model.weights]
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0),
                               **TOL)
    assert float(loaded.train_on_batch(x, y)) == pytest.approx(
        float(model.train_on_batch(x, y)), rel=1e-5)


def test_the_transformers_gradient_matches_finite_differences_with_padding() -> None:
    # Keras 3 (torch) differs here: its gradient for a fully masked query row does not match
    # its own forward's finite differences; kiln's does.
    def build() -> models.Model:
        model = transformer(length=5, vocab=10, dim=2)
        model.compile(optimizer=optimizers.SGD(1.0), loss="mse", backend="reference")
        return model

    weights = [RNG.standard_normal(w.shape).astype(np.float32) * 0.5
               for w in build().get_weights()]
    x = token_ids(4, length=5, vocab=10, pad_from=3)
    y = RNG.standard_normal((4, 1)).astype(np.float32)
    paths = [v.path for v in build().weights]
    value_bias = next(i for i, p in enumerate(paths) if p.endswith("attention/value/bias"))
    for index in (0, value_bias):
        assert_gradient_matches_finite_differences(build, weights, x, y, index=index,
                                                   h=1e-2, tolerance=5e-3)


def test_the_transformer_takes_sequences_of_any_length() -> None:
    # The CPU backends run it in test_layers_of_layers_train_on_every_backend (and iota in
    # every op's samples): one compile of the numba graph in CI instead of two.
    model = transformer(length=8, steps=None)  # positions: ops.arange over a run-time length
    model.compile(optimizer=optimizers.SGD(0.05), loss="mse", backend="reference")
    fixed = transformer(length=8)
    fixed.set_weights(model.get_weights())
    fixed.compile(loss="mse", backend="reference")
    x = token_ids(4, length=8, pad_from=5)
    np.testing.assert_allclose(model.predict(x, verbose=0), fixed.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-6)
    short = x[:, :5]  # the first five positions: the same model, a shorter graph input
    _, pe, encoder = fixed.layers[:3]
    reference = models.Model(i := layers.Input((5,), dtype="int32"), fixed.layers[-1](
        fixed.layers[-2](encoder(pe(i)))))
    reference.compile(loss="mse", backend="reference")
    np.testing.assert_allclose(model.predict(short, verbose=0),
                               reference.predict(short, verbose=0), rtol=1e-5, atol=1e-6)
    y = RNG.standard_normal((4, 1)).astype(np.float32)
    assert np.isfinite(float(model.train_on_batch(short, y)))


@pytest.mark.parametrize("backend", ["numba", "onnxruntime"])
def test_layers_of_layers_train_on_every_backend(backend: str) -> None:
    def build(name: str) -> models.Model:
        ids = layers.Input((None,), dtype="int32")  # any length: positions from iota
        h = PositionalEmbedding(6, 20, 4)(ids)
        h = TransformerEncoder(4, 8, 2)(h)
        h = Stack()(layers.GlobalAveragePooling1D()(h), training=False)
        model = models.Model(ids, layers.Dense(1)(Scaled(2)(h)))
        model.compile(optimizer=optimizers.SGD(0.05), loss="mse", backend=name)
        return model

    assert_trains_like_the_reference(build, backend, token_ids(8),
                                     RNG.standard_normal((8, 1)).astype(np.float32))


def test_time_distributed_runs_a_layer_of_layers_on_each_step() -> None:
    layer = Scaled(2)
    x = layers.Input((4, 3))
    model = models.Model(x, layers.TimeDistributed(layer)(x))
    model.compile(loss="mse", backend="reference")
    assert len(model.weights) == 3
    scale, kernel, bias = layer.get_weights()
    data = RNG.standard_normal((2, 4, 3)).astype(np.float32)
    np.testing.assert_allclose(model.predict(data, verbose=0),
                               np.tanh(data @ kernel + bias) * scale, **TOL)


# -- errors ----------------------------------------------------------------------------------
def test_a_layer_made_inside_call_is_refused_with_what_to_do() -> None:
    class Fresh(layers.Layer):
        def call(self, inputs: Any) -> Any:
            return layers.Dense(2)(inputs)  # new weights on every call

    x = layers.Input((3,))
    model = models.Model(x, Fresh()(x))
    with pytest.raises(KilnValueError, match="make a layer's sublayers in __init__"):
        model.compile(loss="mse", backend="reference")
        model.predict(np.zeros((1, 3), np.float32), verbose=0)


def test_a_symbolic_tensor_from_outside_a_call_is_refused_inside_it() -> None:
    outer = layers.Input((3,))

    class Leaks(layers.Layer):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.dense = layers.Dense(3)

        def call(self, inputs: Any) -> Any:
            return inputs + self.dense(outer)

    with pytest.raises(KilnTypeError, match="from outside this call"):
        Leaks()(layers.Input((3,)))
