"""Each update rule against Keras 3's formulas, written out in NumPy, over several steps."""

from __future__ import annotations

import numpy as np
import pytest

from kiln.ir import GraphBuilder, KilnValueError, f64, parse
from kiln.ir.training import (
    SGD,
    Adadelta,
    Adagrad,
    Adam,
    Adamax,
    Lion,
    LossSpec,
    Nadam,
    RMSprop,
    build_train_step,
)
from kiln.runtimes.reference import ReferenceExecutable


def keras_sgd(w, g, s, t, lr=0.01, momentum=0.0, nesterov=False):  # noqa: ANN001, ANN201
    if not momentum:
        return w - lr * g
    m = momentum * s.get("m", 0.0) - lr * g
    s["m"] = m
    return w + momentum * m - lr * g if nesterov else w + m


def keras_rmsprop(w, g, s, t, lr=0.001, rho=0.9, momentum=0.0, epsilon=1e-7,  # noqa: ANN001, ANN201
                  centered=False):
    v = rho * s.get("v", 0.0) + (1 - rho) * g * g
    s["v"] = v
    denominator = v
    if centered:
        a = rho * s.get("a", 0.0) + (1 - rho) * g
        s["a"] = a
        denominator = v - a * a
    increment = lr * g / np.sqrt(denominator + epsilon)
    if momentum:
        s["m"] = momentum * s.get("m", 0.0) + increment
        return w - s["m"]
    return w - increment


def keras_adam(w, g, s, t, lr=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7,  # noqa: ANN001, ANN201
               amsgrad=False):
    alpha = lr * np.sqrt(1 - beta_2 ** t) / (1 - beta_1 ** t)
    m = s.get("m", 0.0) + (g - s.get("m", 0.0)) * (1 - beta_1)
    v = s.get("v", 0.0) + (g * g - s.get("v", 0.0)) * (1 - beta_2)
    s["m"], s["v"] = m, v
    if amsgrad:
        v = np.maximum(s.get("vh", 0.0), v)
        s["vh"] = v
    return w - alpha * m / (np.sqrt(v) + epsilon)


def keras_adagrad(w, g, s, t, lr=0.001, initial_accumulator_value=0.1,  # noqa: ANN001, ANN201
                  epsilon=1e-7):
    acc = s.get("acc", initial_accumulator_value) + g * g
    s["acc"] = acc
    return w - lr * g / np.sqrt(acc + epsilon)


def keras_adamax(w, g, s, t, lr=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7):  # noqa: ANN001, ANN201
    m = s.get("m", 0.0) + (g - s.get("m", 0.0)) * (1 - beta_1)
    u = np.maximum(beta_2 * s.get("u", 0.0), np.abs(g))
    s["m"], s["u"] = m, u
    return w - lr * m / ((1 - beta_1 ** t) * (u + epsilon))


def keras_lion(w, g, s, t, lr=0.001, beta_1=0.9, beta_2=0.99):  # noqa: ANN001, ANN201
    m = s.get("m", 0.0)
    s["m"] = beta_2 * m + (1 - beta_2) * g
    return w - lr * np.sign(beta_1 * m + (1 - beta_1) * g)


def keras_adadelta(w, g, s, t, lr=0.001, rho=0.95, epsilon=1e-7):  # noqa: ANN001, ANN201
    acc = rho * s.get("acc", 0.0) + (1 - rho) * g * g
    delta = -np.sqrt(s.get("delta", 0.0) + epsilon) * g / np.sqrt(acc + epsilon)
    s["acc"], s["delta"] = acc, rho * s.get("delta", 0.0) + (1 - rho) * delta * delta
    return w + lr * delta


def keras_nadam(w, g, s, t, lr=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7):  # noqa: ANN001, ANN201
    u_t = beta_1 * (1 - 0.5 * 0.96 ** t)
    u_t_1 = beta_1 * (1 - 0.5 * 0.96 ** (t + 1))
    u_product_t = s.get("u_product", 1.0) * u_t
    s["u_product"] = u_product_t
    m = beta_1 * s.get("m", 0.0) + (1 - beta_1) * g
    v = beta_2 * s.get("v", 0.0) + (1 - beta_2) * g * g
    s["m"], s["v"] = m, v
    m_hat = m * u_t_1 / (1 - u_product_t * u_t_1) + g * (1 - u_t) / (1 - u_product_t)
    return w - lr * m_hat / (np.sqrt(v / (1 - beta_2 ** t)) + epsilon)


def with_options(rule, weight_decay=None, clipnorm=None, clipvalue=None):  # noqa: ANN001, ANN201
    """Keras 3's apply around a rule: clip the gradient, decay the weight, then the rule."""
    def apply(w, g, s, t, **kwargs):  # noqa: ANN001, ANN202
        if clipnorm:
            g = g * clipnorm / max(np.sqrt(np.sum(g * g)), clipnorm)
        if clipvalue:
            g = np.clip(g, -clipvalue, clipvalue)
        if weight_decay:
            w = w * (1 - weight_decay * kwargs.get("lr", 0.001))
        return rule(w, g, s, t, **kwargs)
    return apply


CASES = [
    (SGD(), keras_sgd, {}),
    (SGD(0.1, momentum=0.9), keras_sgd, {"lr": 0.1, "momentum": 0.9}),
    (SGD(0.1, momentum=0.5, nesterov=True), keras_sgd,
     {"lr": 0.1, "momentum": 0.5, "nesterov": True}),
    (RMSprop(), keras_rmsprop, {}),
    (RMSprop(0.01, rho=0.8, momentum=0.5, centered=True), keras_rmsprop,
     {"lr": 0.01, "rho": 0.8, "momentum": 0.5, "centered": True}),
    (Adam(), keras_adam, {}),
    (Adam(0.01, beta_1=0.8, amsgrad=True), keras_adam, {"lr": 0.01, "beta_1": 0.8,
                                                       "amsgrad": True}),
    (Adagrad(), keras_adagrad, {}),
    (Adagrad(0.1, initial_accumulator_value=0.5), keras_adagrad,
     {"lr": 0.1, "initial_accumulator_value": 0.5}),
    (Adamax(), keras_adamax, {}),
    (Adamax(0.05, beta_1=0.5, beta_2=0.9, epsilon=1e-3), keras_adamax,
     {"lr": 0.05, "beta_1": 0.5, "beta_2": 0.9, "epsilon": 1e-3}),
    (Lion(), keras_lion, {}),
    (Lion(0.01, beta_1=0.5, beta_2=0.7), keras_lion, {"lr": 0.01, "beta_1": 0.5, "beta_2": 0.7}),
    (Adadelta(), keras_adadelta, {}),
    (Adadelta(1.0, rho=0.5, epsilon=1e-4), keras_adadelta,
     {"lr": 1.0, "rho": 0.5, "epsilon": 1e-4}),
    (Nadam(), keras_nadam, {}),
    (Nadam(0.05, beta_1=0.7, beta_2=0.9), keras_nadam, {"lr": 0.05, "beta_1": 0.7,
                                                        "beta_2": 0.9}),
    (Adam(0.01, weight_decay=0.5), with_options(keras_adam, weight_decay=0.5), {"lr": 0.01}),
    (SGD(0.1, momentum=0.9, weight_decay=0.2, clipnorm=0.3),
     with_options(keras_sgd, weight_decay=0.2, clipnorm=0.3), {"lr": 0.1, "momentum": 0.9}),
    (RMSprop(0.01, clipvalue=0.05), with_options(keras_rmsprop, clipvalue=0.05),
     {"lr": 0.01}),
]


def _linear_model() -> object:
    b = GraphBuilder("forward")
    x = b.input("x", f64["N", 3])
    w = b.state("w", f64[3])
    b.output(b.sum(b.mul(x, w), axes=(1,), keepdims=True), "out")
    return b.build()


def _sq_loss(b, y_true, y_pred):  # noqa: ANN001, ANN202
    return b.mean(b.square(b.sub(y_pred, y_true)), axes=(-1,))


@pytest.mark.parametrize("rule,numpy_rule,kwargs", CASES,
                         ids=[f"{type(c[0]).__name__}-{i}" for i, c in enumerate(CASES)])
def test_update_rule_matches_keras_formula(rule, numpy_rule, kwargs) -> None:  # noqa: ANN001
    step = build_train_step(_linear_model(), [LossSpec("out", _sq_loss)], rule)
    assert parse(str(step.graph)) == step.graph
    w0 = np.array([0.5, -1.0, 2.0])
    state = {"w": w0.copy(), **step.initial_state}
    ex = ReferenceExecutable({"train": step.graph}, state)
    rng = np.random.default_rng(0)
    w, slots = w0.copy(), {}
    for t in range(1, 6):
        x = rng.standard_normal((8, 3))
        y = rng.standard_normal((8, 1))
        g = 2 * x.T @ (x @ w[:, None] - y)[:, 0] / 8  # d mean((xw - y)^2) / dw
        w = numpy_rule(w, g, slots, t, **kwargs)
        ex.run("train", {"x": x, "y": y})
        np.testing.assert_allclose(ex.state["w"], w, rtol=1e-5, atol=1e-7,
                                   err_msg=f"step {t}")
    assert int(ex.state["optimizer.iterations"]) == 5


def test_learning_rate_is_state_and_changes_the_step() -> None:
    step = build_train_step(_linear_model(), [LossSpec("out", _sq_loss)], SGD(0.1))
    x, y = np.ones((4, 3)), np.zeros((4, 1))
    runs = {}
    for lr in (0.1, 0.0):
        state = {"w": np.ones(3), **step.initial_state}
        state["optimizer.learning_rate"] = np.array(lr, np.float32)
        ex = ReferenceExecutable({"train": step.graph}, state)
        ex.run("train", {"x": x, "y": y})
        runs[lr] = ex.state["w"]
    np.testing.assert_array_equal(runs[0.0], np.ones(3))
    assert np.all(runs[0.1] < 1)


def _two_weight_model() -> object:
    b = GraphBuilder("forward")
    x = b.input("x", f64["N", 3])
    w, v = b.state("w", f64[3]), b.state("v", f64[2])
    b.output(b.add(b.sum(b.mul(x, w), axes=(1,), keepdims=True), b.sum(v)), "out")
    return b.build()


@pytest.mark.parametrize("decayed", [None, ["v"]])
def test_global_clipnorm_scales_all_gradients_together_and_decay_picks_weights(
        decayed) -> None:  # noqa: ANN001
    """global_clipnorm: every gradient times c * min(1 / ||all||, 1 / c); weight decay only
    on `decayed` (default every trainable weight). SGD, so the step is lr * gradient."""
    lr, c, wd = 0.1, 0.5, 0.3
    step = build_train_step(_two_weight_model(), [LossSpec("out", _sq_loss)],
                            SGD(lr, global_clipnorm=c, weight_decay=wd), decayed=decayed)
    w, v = np.array([0.5, -1.0, 2.0]), np.array([0.3, -0.2])
    ex = ReferenceExecutable({"train": step.graph}, {"w": w.copy(), "v": v.copy(),
                                                     **step.initial_state})
    x = np.random.default_rng(1).standard_normal((8, 3))
    y = np.zeros((8, 1))
    r = 2 * ((x @ w)[:, None] + v.sum() - y)[:, 0] / 8
    gw, gv = x.T @ r, np.full(2, r.sum())
    norm = np.sqrt(np.sum(gw * gw) + np.sum(gv * gv))
    assert norm > c
    scale = c * min(1 / norm, 1 / c)
    ex.run("train", {"x": x, "y": y})
    decay_w = 1.0 if decayed else 1 - wd * lr
    np.testing.assert_allclose(ex.state["w"], w * decay_w - lr * scale * gw, rtol=1e-6)
    np.testing.assert_allclose(ex.state["v"], v * (1 - wd * lr) - lr * scale * gv, rtol=1e-6)


@pytest.mark.parametrize("make", [lambda: SGD(-1.0), lambda: SGD(momentum=2.0),
                                  lambda: RMSprop(rho=1.0), lambda: Adam(beta_2=1.5),
                                  lambda: Adagrad(epsilon=0.0), lambda: Lion(beta_1=0.0),
                                  lambda: Adamax(beta_1=1.0), lambda: Adadelta(rho=-0.1),
                                  lambda: Nadam(beta_2=1.0),
                                  lambda: Adam(weight_decay=-0.1),
                                  lambda: SGD(clipnorm=1.0, clipvalue=1.0),
                                  lambda: RMSprop(global_clipnorm=-1.0)])
def test_bad_hyperparameters_are_refused(make) -> None:  # noqa: ANN001
    with pytest.raises(KilnValueError, match="Received"):
        make()
