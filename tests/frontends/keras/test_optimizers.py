"""The Keras-facing optimizers beyond the update rules (tests/ir/training/test_optimizers.py
checks those against Keras 3's formulas): names, configs and save/load of AdamW, Adamax,
Lion, Adadelta and Nadam; weight decay with Keras's exclusions; gradient clipping; every backend
computing the same steps as the reference runtime."""

from __future__ import annotations

import numpy as np
import pytest

from kiln import layers, models, optimizers
from kiln.ir import KilnValueError
from tests.frontends.keras.steps import assert_steps_agree


def _data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rs = np.random.default_rng(seed)
    return (rs.standard_normal((16, 5)).astype(np.float32),
            np.eye(3, dtype=np.float32)[rs.integers(0, 3, 16)])


def _model(optimizer: optimizers.Optimizer, backend: str = "reference") -> models.Model:
    model = models.Sequential([layers.Input((5,)), layers.Dense(4, activation="tanh"),
                               layers.Dense(3, activation="softmax")])
    model.set_weights([np.random.default_rng(1).standard_normal(w.shape).astype(np.float32)
                       for w in model.get_weights()])
    model.compile(optimizer=optimizer, loss="categorical_crossentropy", backend=backend)
    return model


@pytest.mark.parametrize("name, cls", [("adamw", optimizers.AdamW),
                                       ("Adamax", optimizers.Adamax),
                                       ("lion", optimizers.Lion),
                                       ("adadelta", optimizers.Adadelta),
                                       ("nadam", optimizers.Nadam)])
def test_names_defaults_and_config(name: str, cls: type) -> None:
    opt = optimizers.get(name)
    assert type(opt) is cls and opt.name == name.lower()
    config = opt.get_config()
    assert {"weight_decay", "clipnorm", "clipvalue", "global_clipnorm"} <= set(config)
    assert type(opt).from_config(config).get_config() == config
    assert optimizers.AdamW().weight_decay == 0.004


MAKERS = {
    "adamw_global_clipnorm": lambda: optimizers.AdamW(0.01, weight_decay=0.1,
                                                      global_clipnorm=0.5),
    "lion_clipvalue": lambda: optimizers.Lion(0.003, clipvalue=0.01),
    "adamax_clipnorm": lambda: optimizers.Adamax(0.02, clipnorm=0.1),
    "adadelta_decay": lambda: optimizers.Adadelta(1.0, weight_decay=0.05),
    "nadam": lambda: optimizers.Nadam(0.02),
}


@pytest.mark.parametrize("backend", ["numba", "onnxruntime"])
def test_every_backend_steps_like_the_reference(backend: str) -> None:
    x, y = _data()
    # numba: the clipping, the decay and the shared scalar, in two compiles (each rule's
    # arithmetic is elementwise IR, checked against Keras's formulas on the reference).
    chosen = ("adamw_global_clipnorm", "nadam") if backend == "numba" else MAKERS
    for name in chosen:
        make = MAKERS[name]
        assert_steps_agree(_model(make(), backend), _model(make()), x, y, what=name)


def test_weight_decay_exclusions() -> None:
    """SGD(lr) with weight decay: an excluded weight moves by the gradient step only
    (w0 - lr g), the others start from w0 (1 - wd lr), so end wd lr w0 lower."""
    x, y = _data()
    lr, wd = 0.1, 0.5

    def trained(exclude: dict) -> list[np.ndarray]:
        opt = optimizers.SGD(lr, weight_decay=wd)
        model = _model(opt)
        if exclude:
            names = exclude.get("var_names")
            var_list = [model.layers[0].kernel] if exclude.get("first_kernel") else None
            opt.exclude_from_weight_decay(var_list=var_list, var_names=names)
        model.train_on_batch(x, y)
        return model.get_weights()

    plain = _model(optimizers.SGD(lr))
    start = plain.get_weights()
    plain.train_on_batch(x, y)
    undecayed = plain.get_weights()
    for exclude, kept in (({}, set()), ({"var_names": ["bias"]}, {1, 3}),
                          ({"first_kernel": True}, {0})):
        for i, (got, w0, w1) in enumerate(zip(trained(exclude), start, undecayed)):
            want = w1 if i in kept else w1 - w0 * wd * lr
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6,
                                       err_msg=f"{exclude} weight {i}")


def test_clipnorm_bounds_the_sgd_step() -> None:
    x, y = _data()
    model = _model(optimizers.SGD(1.0, clipnorm=0.01))
    before = model.get_weights()
    model.train_on_batch(x, y)
    for a, b in zip(model.get_weights(), before):
        assert np.linalg.norm(a - b) <= 0.01 + 1e-6


@pytest.mark.parametrize("make", [
    lambda: optimizers.AdamW(0.01, weight_decay=0.2, clipvalue=0.3),
    lambda: optimizers.Nadam(0.01),  # its shared u_product scalar is saved too
])
def test_save_and_load_continue_training(make, tmp_path) -> None:  # noqa: ANN001
    x, y = _data()
    model = _model(make())
    model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    model.save(tmp_path / "m.kiln")
    loaded = models.load_model(tmp_path / "m.kiln", backend="reference")
    assert type(loaded.optimizer) is type(model.optimizer)
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    assert float(loaded.train_on_batch(x, y)) == pytest.approx(float(model.train_on_batch(x, y)),
                                                               rel=1e-6)
    for a, b in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6)


@pytest.mark.parametrize("make, match", [
    (lambda: optimizers.AdamW(weight_decay=None), "weight_decay"),
    (lambda: optimizers.SGD(clipnorm=1.0, global_clipnorm=2.0), "only one of"),
    (lambda: optimizers.Adam(weight_decay=-1.0), "weight_decay"),
    (lambda: optimizers.Lion(beta_1=1.5), "beta_1"),
    (lambda: optimizers.get("ftrl"), "'ftrl'"),
])
def test_bad_arguments(make, match) -> None:  # noqa: ANN001
    with pytest.raises(KilnValueError, match=match):
        make()
