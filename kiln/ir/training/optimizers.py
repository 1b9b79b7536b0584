"""Optimizer update rules as IR builders, with Keras 3's update rules and defaults.

An `UpdateRule` says which slots each parameter needs (with their initial values) and emits
the IR of one update. The learning rate and the step counter are state of the training graph
(`optimizer.learning_rate`, `optimizer.iterations`), so callbacks can change the rate without
recompiling and the count survives a save.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kiln.ir.errors import KilnValueError
from kiln.ir.graph import Value

SlotInit = float  # every slot starts as a tensor filled with this value


def _positive(name: str, value: float, opt: str, allow_zero: bool = False) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or \
            value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise KilnValueError(f"{opt}: expected {name} {bound}. Received: {name}={value!r}")
    return float(value)


@dataclass(frozen=True)
class UpdateRule:
    """Base of the update rules; subclasses define `name`, `slots` and `apply`.

    The options every Keras 3 optimizer takes are applied by the training step around
    `apply`, in Keras's order: the gradients clipped (`clipnorm`: each to that L2 norm;
    `global_clipnorm`: all together; `clipvalue`: each element; at most one of the three),
    then each decayed weight multiplied by (1 - weight_decay * lr), then `apply`."""

    learning_rate: float
    weight_decay: float | None = None
    clipnorm: float | None = None
    clipvalue: float | None = None
    global_clipnorm: float | None = None

    name = "optimizer"

    def __post_init__(self) -> None:
        opt = type(self).__name__
        _positive("learning_rate", self.learning_rate, opt, allow_zero=True)
        for key in ("weight_decay", "clipnorm", "clipvalue", "global_clipnorm"):
            if getattr(self, key) is not None:
                _positive(key, getattr(self, key), opt, allow_zero=True)
        clips = [k for k in ("clipnorm", "clipvalue", "global_clipnorm") if getattr(self, k)]
        if len(clips) > 1:
            raise KilnValueError(f"{opt}: only one of `clipnorm`, `clipvalue` and "
                                 f"`global_clipnorm` can be set. Received: "
                                 + ", ".join(f"{k}={getattr(self, k)!r}" for k in clips))

    def slots(self) -> dict[str, SlotInit]:
        return {}

    def shared(self) -> dict[str, SlotInit]:
        """Float32 scalars the rule keeps once for all parameters (Nadam's product of
        momentum factors), by name, with their initial values. `apply` sees their values
        before this step among its `slots`; `update_shared` gives their new values."""
        return {}

    def update_shared(self, b: Any, shared: Mapping[str, Value],
                      step: Value) -> dict[str, Value]:
        """The shared scalars after this step (`step`: float32, 1 on the first call)."""
        return {}

    def apply(self, b: Any, param: Value, grad: Value, slots: Mapping[str, Value],
              lr: Value, step: Value) -> tuple[Value, dict[str, Value]]:
        """Emit one update; `lr` has the parameter's dtype, `step` is 1 on the first call."""
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _betas(rule: UpdateRule, *keys: str) -> None:
    for key in keys:
        if not 0 <= getattr(rule, key) < 1:
            raise KilnValueError(f"{type(rule).__name__}: expected {key} in [0, 1). "
                                 f"Received: {key}={getattr(rule, key)!r}")


@dataclass(frozen=True)
class SGD(UpdateRule):
    """w -= lr*g; with momentum m = momentum*m - lr*g, w += m (Nesterov: w += momentum*m - lr*g)."""

    learning_rate: float = 0.01
    momentum: float = 0.0
    nesterov: bool = False

    name = "sgd"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 <= self.momentum <= 1:
            raise KilnValueError(
                f"SGD: expected momentum in [0, 1]. Received: momentum={self.momentum!r}"
            )

    def slots(self) -> dict[str, SlotInit]:
        return {"momentum": 0.0} if self.momentum else {}

    def apply(self, b, param, grad, slots, lr, step):  # noqa: ANN001, ANN201
        step_size = b.mul(lr, grad)
        if not self.momentum:
            return b.sub(param, step_size), {}
        m = b.sub(b.mul(slots["momentum"], self.momentum), step_size)
        if self.nesterov:
            return b.sub(b.add(param, b.mul(m, self.momentum)), step_size), {"momentum": m}
        return b.add(param, m), {"momentum": m}


@dataclass(frozen=True)
class RMSprop(UpdateRule):
    """v = rho*v + (1-rho)*g^2; w -= lr*g/sqrt(v + epsilon) (Keras 3: epsilon inside the root)."""

    learning_rate: float = 0.001
    rho: float = 0.9
    momentum: float = 0.0
    epsilon: float = 1e-7
    centered: bool = False

    name = "rmsprop"

    def __post_init__(self) -> None:
        super().__post_init__()
        _positive("epsilon", self.epsilon, "RMSprop")
        if not 0 <= self.rho < 1:
            raise KilnValueError(f"RMSprop: expected rho in [0, 1). Received: rho={self.rho!r}")

    def slots(self) -> dict[str, SlotInit]:
        slots = {"velocity": 0.0}
        if self.centered:
            slots["average_gradient"] = 0.0
        if self.momentum:
            slots["momentum"] = 0.0
        return slots

    def apply(self, b, param, grad, slots, lr, step):  # noqa: ANN001, ANN201
        new: dict[str, Value] = {}
        v = b.add(b.mul(slots["velocity"], self.rho), b.mul(b.square(grad), 1 - self.rho))
        new["velocity"] = v
        denominator = v
        if self.centered:
            avg = b.add(b.mul(slots["average_gradient"], self.rho), b.mul(grad, 1 - self.rho))
            new["average_gradient"] = avg
            denominator = b.sub(v, b.square(avg))
        increment = b.div(b.mul(lr, grad), b.sqrt(b.add(denominator, self.epsilon)))
        if self.momentum:
            m = b.add(b.mul(slots["momentum"], self.momentum), increment)
            new["momentum"] = m
            return b.sub(param, m), new
        return b.sub(param, increment), new


@dataclass(frozen=True)
class Adam(UpdateRule):
    """Keras 3 Adam: bias correction folded into the rate, epsilon outside the root."""

    learning_rate: float = 0.001
    beta_1: float = 0.9
    beta_2: float = 0.999
    epsilon: float = 1e-7
    amsgrad: bool = False

    name = "adam"

    def __post_init__(self) -> None:
        super().__post_init__()
        _positive("epsilon", self.epsilon, "Adam")
        _betas(self, "beta_1", "beta_2")

    def slots(self) -> dict[str, SlotInit]:
        slots = {"momentum": 0.0, "velocity": 0.0}
        if self.amsgrad:
            slots["velocity_hat"] = 0.0
        return slots

    def apply(self, b, param, grad, slots, lr, step):  # noqa: ANN001, ANN201
        beta_1_power = b.pow(b.constant(self.beta_1, step.dtype), step)
        beta_2_power = b.pow(b.constant(self.beta_2, step.dtype), step)
        alpha = b.div(b.mul(lr, b.sqrt(b.sub(1.0, beta_2_power))), b.sub(1.0, beta_1_power))
        m = b.add(slots["momentum"], b.mul(b.sub(grad, slots["momentum"]), 1 - self.beta_1))
        v = b.add(slots["velocity"],
                  b.mul(b.sub(b.square(grad), slots["velocity"]), 1 - self.beta_2))
        new = {"momentum": m, "velocity": v}
        if self.amsgrad:
            v = b.maximum(slots["velocity_hat"], v)
            new["velocity_hat"] = v
        update = b.div(b.mul(alpha, m), b.add(b.sqrt(v), self.epsilon))
        return b.sub(param, update), new


@dataclass(frozen=True)
class Adagrad(UpdateRule):
    """accumulator += g^2; w -= lr*g/sqrt(accumulator + epsilon)."""

    learning_rate: float = 0.001
    initial_accumulator_value: float = 0.1
    epsilon: float = 1e-7

    name = "adagrad"

    def __post_init__(self) -> None:
        super().__post_init__()
        _positive("epsilon", self.epsilon, "Adagrad")
        _positive("initial_accumulator_value", self.initial_accumulator_value, "Adagrad",
                  allow_zero=True)

    def slots(self) -> dict[str, SlotInit]:
        return {"accumulator": self.initial_accumulator_value}

    def apply(self, b, param, grad, slots, lr, step):  # noqa: ANN001, ANN201
        acc = b.add(slots["accumulator"], b.square(grad))
        update = b.div(b.mul(lr, grad), b.sqrt(b.add(acc, self.epsilon)))
        return b.sub(param, update), {"accumulator": acc}


@dataclass(frozen=True)
class Adamax(UpdateRule):
    """Keras 3 Adamax: m += (g - m)(1 - beta_1); u = max(beta_2 u, |g|);
    w -= lr m / ((1 - beta_1^t)(u + epsilon))."""

    learning_rate: float = 0.001
    beta_1: float = 0.9
    beta_2: float = 0.999
    epsilon: float = 1e-7

    name = "adamax"

    def __post_init__(self) -> None:
        super().__post_init__()
        _positive("epsilon", self.epsilon, "Adamax")
        _betas(self, "beta_1", "beta_2")

    def slots(self) -> dict[str, SlotInit]:
        return {"momentum": 0.0, "norm": 0.0}

    def apply(self, b, param, grad, slots, lr, step):  # noqa: ANN001, ANN201
        beta_1_power = b.pow(b.constant(self.beta_1, step.dtype), step)
        m = b.add(slots["momentum"], b.mul(b.sub(grad, slots["momentum"]), 1 - self.beta_1))
        u = b.maximum(b.mul(slots["norm"], self.beta_2), b.abs(grad))
        update = b.div(b.mul(lr, m), b.mul(b.sub(1.0, beta_1_power), b.add(u, self.epsilon)))
        return b.sub(param, update), {"momentum": m, "norm": u}


@dataclass(frozen=True)
class Lion(UpdateRule):
    """Keras 3 Lion: w -= lr sign(beta_1 m + (1 - beta_1) g); m = beta_2 m + (1 - beta_2) g."""

    learning_rate: float = 0.001
    beta_1: float = 0.9
    beta_2: float = 0.99

    name = "lion"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 < self.beta_1 <= 1:
            raise KilnValueError(f"Lion: expected beta_1 in (0, 1]. "
                                 f"Received: beta_1={self.beta_1!r}")
        _betas(self, "beta_2")

    def slots(self) -> dict[str, SlotInit]:
        return {"momentum": 0.0}

    def apply(self, b, param, grad, slots, lr, step):  # noqa: ANN001, ANN201
        m = slots["momentum"]
        direction = b.sign(b.add(b.mul(m, self.beta_1), b.mul(grad, 1.0 - self.beta_1)))
        new_m = b.add(b.mul(m, self.beta_2), b.mul(grad, 1.0 - self.beta_2))
        return b.sub(param, b.mul(lr, direction)), {"momentum": new_m}


@dataclass(frozen=True)
class Adadelta(UpdateRule):
    """Keras 3 Adadelta: a = rho a + (1 - rho) g^2; d = -sqrt(D + eps) g / sqrt(a + eps);
    D = rho D + (1 - rho) d^2; w += lr d."""

    learning_rate: float = 0.001
    rho: float = 0.95
    epsilon: float = 1e-7

    name = "adadelta"

    def __post_init__(self) -> None:
        super().__post_init__()
        _positive("epsilon", self.epsilon, "Adadelta")
        _betas(self, "rho")

    def slots(self) -> dict[str, SlotInit]:
        return {"accumulated_grad": 0.0, "accumulated_delta_var": 0.0}

    def apply(self, b, param, grad, slots, lr, step):  # noqa: ANN001, ANN201
        rho = self.rho
        acc = b.add(b.mul(slots["accumulated_grad"], rho), b.mul(b.square(grad), 1 - rho))
        delta = b.neg(b.div(b.mul(b.sqrt(b.add(slots["accumulated_delta_var"], self.epsilon)),
                                  grad), b.sqrt(b.add(acc, self.epsilon))))
        acc_delta = b.add(b.mul(slots["accumulated_delta_var"], rho),
                          b.mul(b.square(delta), 1 - rho))
        return b.add(param, b.mul(lr, delta)), {"accumulated_grad": acc,
                                                "accumulated_delta_var": acc_delta}


@dataclass(frozen=True)
class Nadam(UpdateRule):
    """Keras 3 Nadam: Adam with Nesterov momentum and the momentum schedule
    u_t = beta_1 (1 - 0.5 * 0.96^t), whose running product is one shared scalar."""

    learning_rate: float = 0.001
    beta_1: float = 0.9
    beta_2: float = 0.999
    epsilon: float = 1e-7

    name = "nadam"

    def __post_init__(self) -> None:
        super().__post_init__()
        _positive("epsilon", self.epsilon, "Nadam")
        _betas(self, "beta_1", "beta_2")

    def slots(self) -> dict[str, SlotInit]:
        return {"momentum": 0.0, "velocity": 0.0}

    def shared(self) -> dict[str, SlotInit]:
        return {"u_product": 1.0}

    def _u(self, b: Any, step: Value, ahead: bool) -> Value:
        """u at this step, or (ahead) at the next."""
        decay = b.pow(b.constant(0.96, step.type.dtype), b.add(step, 1.0) if ahead else step)
        return b.mul(b.sub(1.0, b.mul(decay, 0.5)), self.beta_1)

    def update_shared(self, b, shared, step):  # noqa: ANN001, ANN201
        return {"u_product": b.mul(shared["u_product"], self._u(b, step, False))}

    def apply(self, b, param, grad, slots, lr, step):  # noqa: ANN001, ANN201
        u_t, u_t_1 = self._u(b, step, False), self._u(b, step, True)
        u_product = slots["u_product"]
        if u_product.type.dtype != step.type.dtype:
            u_product = b.cast(u_product, dtype=step.type.dtype)
        u_product_t = b.mul(u_product, u_t)
        u_product_t_1 = b.mul(u_product_t, u_t_1)
        beta_2_power = b.pow(b.constant(self.beta_2, step.type.dtype), step)
        m = b.add(b.mul(slots["momentum"], self.beta_1), b.mul(grad, 1 - self.beta_1))
        v = b.add(b.mul(slots["velocity"], self.beta_2), b.mul(b.square(grad), 1 - self.beta_2))
        m_hat = b.add(b.div(b.mul(m, u_t_1), b.sub(1.0, u_product_t_1)),
                      b.div(b.mul(grad, b.sub(1.0, u_t)), b.sub(1.0, u_product_t)))
        v_hat = b.div(v, b.sub(1.0, beta_2_power))
        update = b.div(b.mul(m_hat, lr), b.add(b.sqrt(v_hat), self.epsilon))
        return b.sub(param, update), {"momentum": m, "velocity": v}


def clip_gradients(b: Any, rule: UpdateRule, grads: list[Value | None]) -> list[Value | None]:
    """Keras 3's _clip_gradients: by each gradient's norm, by their global norm, or by
    value (missing gradients stay missing)."""
    if rule.clipnorm:
        c = rule.clipnorm
        clipped = []
        for g in grads:
            if g is None:
                clipped.append(g)
                continue
            l2sum = b.sum(b.square(g), keepdims=True)
            positive = b.greater(l2sum, 0.0)
            l2norm = b.where(positive, b.sqrt(b.where(positive, l2sum, 1.0)), l2sum)
            clipped.append(b.div(b.mul(g, c), b.maximum(l2norm, c)))
        return clipped
    if rule.global_clipnorm:
        c = rule.global_clipnorm
        present = [g for g in grads if g is not None]
        if not present:
            return grads
        total = b.sum(b.square(present[0]))
        for g in present[1:]:
            total = b.add(total, b.sum(b.square(g)))
        norm = b.sqrt(total, name="global_norm")
        # c * min(1/norm, 1/c), NaN where the norm is not finite (norm - norm), as Keras.
        scale = b.add(b.mul(b.minimum(b.reciprocal(norm), 1.0 / c), c), b.sub(norm, norm))
        return [None if g is None else b.mul(g, b.cast(scale, dtype=g.type.dtype)
                                             if g.type.dtype != scale.type.dtype else scale)
                for g in grads]
    if rule.clipvalue:
        v = rule.clipvalue
        return [None if g is None else b.clip(g, min=-v, max=v) for g in grads]
    return grads


RULES: dict[str, type[UpdateRule]] = {"sgd": SGD, "rmsprop": RMSprop, "adam": Adam,
                                      "adagrad": Adagrad, "adamax": Adamax, "lion": Lion,
                                      "adadelta": Adadelta, "nadam": Nadam}
