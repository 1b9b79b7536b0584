"""Subclassed models, as the book's chapter 7 writes them: layers made in __init__, a `call`
using them. Built on the first data they see (a call on arrays, fit, predict, build, or a
call on symbolic tensors), they compute what their layers compute, train, save and load,
run inside functional models and on every CPU backend."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kiln import layers, models, optimizers
from kiln.ir import KilnError, KilnValueError
from tests.book_models import customer_ticket_model
from tests.frontends.keras.steps import assert_trains_like_the_reference

RNG = np.random.default_rng(31)
TOL = {"rtol": 2e-5, "atol": 1e-6}


CustomerTicketModel = customer_ticket_model(layers, models)  # chapter 7, as written


class Regressor(models.Model):
    def __init__(self, units: int = 8, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.units = units
        self.hidden = layers.Dense(units, activation="tanh")
        self.drop = layers.Dropout(0.5)
        self.head = layers.Dense(1)

    def call(self, inputs: Any, training: Any = None) -> Any:
        return self.head(self.drop(self.hidden(inputs), training=training))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "units": self.units}


def ticket_data(n: int = 16) -> tuple[dict, list]:
    x = {"title": RNG.integers(0, 2, (n, 20)), "text_body": RNG.integers(0, 2, (n, 20)),
         "tags": RNG.integers(0, 2, (n, 5))}
    return x, [RNG.random((n, 1)), RNG.integers(0, 2, (n, 4)).astype(np.float32)]


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-z))


def test_the_books_subclassed_model_computes_trains_and_names_its_layers() -> None:
    model = CustomerTicketModel(num_departments=4)
    x, y = ticket_data()
    priority, department = model(x)  # called on arrays first, as the book does
    assert priority.shape == (16, 1) and department.shape == (16, 4)
    assert [layer.name for layer in model.layers] == [
        f"{model.name}/concat_layer", f"{model.name}/mixing_layer",
        f"{model.name}/priority_scorer", f"{model.name}/department_classifier"]
    assert [v.path for v in model.weights][:2] == [f"{model.name}/mixing_layer/kernel",
                                                   f"{model.name}/mixing_layer/bias"]
    k1, b1, k2, b2, k3, b3 = model.get_weights()
    features = np.maximum(np.concatenate([x["title"], x["text_body"], x["tags"]], 1) @ k1
                          + b1, 0)
    np.testing.assert_allclose(priority, _sigmoid(features @ k2 + b2), rtol=1e-5, atol=1e-6)
    logits = features @ k3 + b3
    np.testing.assert_allclose(department, np.exp(logits) / np.exp(logits).sum(1, keepdims=True),
                               rtol=1e-5, atol=1e-6)
    model.compile(optimizer="rmsprop", loss=["mean_squared_error", "categorical_crossentropy"],
                  metrics=[["mean_absolute_error"], ["accuracy"]], backend="reference")
    history = model.fit(x, y, epochs=3, verbose=0).history
    assert history["loss"][-1] < history["loss"][0]
    assert {"output_0_loss", "output_1_accuracy"} <= set(history)
    predicted = model.predict(x, verbose=0)
    assert [p.shape for p in predicted] == [(16, 1), (16, 4)]


def test_a_subclassed_model_saves_and_loads_from_custom_objects(tmp_path: Path) -> None:
    model = CustomerTicketModel(num_departments=4)
    x, y = ticket_data()
    model.compile(optimizer="adam", loss=["mse", "categorical_crossentropy"],
                  backend="reference")
    model.fit(x, y, epochs=1, verbose=0)
    model.save(tmp_path / "m.kiln")
    for _ in range(2):  # other layers and models made first move the automatic names on
        CustomerTicketModel(3), layers.Dense(2)
    with pytest.raises(KilnError, match="custom_objects"):
        models.load_model(tmp_path / "m.kiln")
    loaded = models.load_model(tmp_path / "m.kiln",
                               custom_objects={"CustomerTicketModel": CustomerTicketModel})
    assert type(loaded) is CustomerTicketModel and loaded.name == model.name
    for mine, theirs in zip(loaded.predict(x, verbose=0), model.predict(x, verbose=0)):
        np.testing.assert_allclose(mine, theirs, **TOL)
    np.testing.assert_allclose(loaded.train_on_batch(x, y), model.train_on_batch(x, y),
                               rtol=1e-5)


def test_without_get_config_the_arguments_it_was_made_with_save_it(tmp_path: Path) -> None:
    class Plain(models.Model):  # as the book writes it: no get_config, no **kwargs
        def __init__(self, units: int, activation: str = "tanh") -> None:
            super().__init__()
            self.dense = layers.Dense(units, activation=activation)

        def call(self, inputs: Any) -> Any:
            return self.dense(inputs)

    class Scale(layers.Layer):
        def __init__(self, factor: float, names: tuple = ("a", "b")) -> None:
            super().__init__()
            self.factor = factor

        def call(self, inputs: Any) -> Any:
            return inputs * self.factor

    model = Plain(3, activation="relu")
    assert model.get_config() == {"name": model.name, "trainable": True, "dtype": "float32",
                                  "units": 3, "activation": "relu"}
    x = RNG.standard_normal((4, 2)).astype(np.float32)
    inputs = layers.Input((2,))
    outer = models.Model(inputs, Scale(0.5)(model(inputs)))
    outer.save(tmp_path / "p.kiln")
    loaded = models.load_model(tmp_path / "p.kiln", custom_objects={"Plain": Plain,
                                                                     "Scale": Scale})
    np.testing.assert_allclose(loaded.predict(x, verbose=0), outer.predict(x, verbose=0),
                               **TOL)
    assert loaded.layers[1].name == model.name and loaded.layers[1].dense.activation


def test_build_summary_and_the_training_flag() -> None:
    model = Regressor(name="regressor")
    model.build((None, 3))
    assert [v.path for v in model.weights] == ["regressor/hidden/kernel", "regressor/hidden/bias",
                                               "regressor/head/kernel", "regressor/head/bias"]
    text = []
    model.summary(print_fn=text.append)
    table = "\n".join(text)
    assert "regressor/hidden (Dense)" in table and "Connected to" not in table
    model.compile(optimizer=optimizers.SGD(0.0), loss="mse", backend="reference")
    x = RNG.standard_normal((64, 3)).astype(np.float32)
    inference = model.predict(x, verbose=0)
    # In training the call's Dropout drops: the loss against inference's outputs is not 0.
    assert float(model.train_on_batch(x, inference)) > 1e-4
    assert float(model.test_on_batch(x, inference)) == pytest.approx(0.0, abs=1e-10)


def test_a_subclassed_model_is_a_layer_of_a_functional_model(tmp_path: Path) -> None:
    inner = Regressor(units=4)
    x = layers.Input((3,))
    outer = models.Model(x, layers.Dense(2)(inner(x)))
    assert len(outer.weights) == 6 and inner.built
    outer.compile(optimizer=optimizers.SGD(0.1), loss="mse", backend="reference")
    data = RNG.standard_normal((8, 3)).astype(np.float32)
    before = inner.get_weights()
    outer.train_on_batch(data, RNG.standard_normal((8, 2)).astype(np.float32))
    assert not np.allclose(before[0], inner.get_weights()[0])
    outer.save(tmp_path / "o.kiln")
    loaded = models.load_model(tmp_path / "o.kiln", custom_objects={"Regressor": Regressor})
    np.testing.assert_allclose(loaded.predict(data, verbose=0), outer.predict(data, verbose=0),
                               **TOL)


@pytest.mark.parametrize("backend", ["numba", "onnxruntime"])
def test_a_subclassed_model_trains_on_every_backend(backend: str) -> None:
    def build(name: str) -> models.Model:
        model = CustomerTicketModel(num_departments=4)
        model.build({"title": (None, 20), "text_body": (None, 20), "tags": (None, 5)})
        model.compile(optimizer=optimizers.SGD(0.1), loss=["mse", "categorical_crossentropy"],
                      backend=name)
        return model

    x, y = ticket_data(8)
    assert_trains_like_the_reference(build, backend, x, y)


def test_any_model_called_on_arrays_returns_its_outputs() -> None:
    model = models.Sequential([layers.Dense(3, activation="relu"), layers.Dense(2)])
    x = RNG.standard_normal((5, 4)).astype(np.float32)
    out = model(x)  # builds the Sequential from x, as Keras does
    assert isinstance(out, np.ndarray)
    np.testing.assert_allclose(out, model.predict(x, verbose=0), **TOL)


def test_errors_say_what_a_subclassed_model_needs(tmp_path: Path) -> None:
    class NoConfig(models.Model):  # its argument is a layer: no automatic config
        def __init__(self, head: layers.Layer) -> None:
            super().__init__()
            self.dense = head

        def call(self, inputs: Any) -> Any:
            return self.dense(inputs)

    model = NoConfig(layers.Dense(2))
    with pytest.raises(KilnValueError, match="has not been built"):
        model.save(tmp_path / "n.kiln")
    model.build((None, 3))
    model.save(tmp_path / "n.kiln")
    with pytest.raises(KilnError, match="Give NoConfig.get_config the arguments"):
        models.load_model(tmp_path / "n.kiln", custom_objects={"NoConfig": NoConfig})
    with pytest.raises(KilnValueError, match="in inference"):
        model(np.zeros((1, 3)), training=True)
