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
    """Base of the update rules; subclasses define `name`, `slots` and `apply`."""

    learning_rate: float

    name = "optimizer"

    def slots(self) -> dict[str, SlotInit]:
        return {}

    def apply(self, b: Any, param: Value, grad: Value, slots: Mapping[str, Value],
              lr: Value, step: Value) -> tuple[Value, dict[str, Value]]:
        """Emit one update; `lr` has the parameter's dtype, `step` is 1 on the first call."""
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class SGD(UpdateRule):
    """w -= lr*g; with momentum m = momentum*m - lr*g, w += m (Nesterov: w += momentum*m - lr*g)."""

    learning_rate: float = 0.01
    momentum: float = 0.0
    nesterov: bool = False

    name = "sgd"

    def __post_init__(self) -> None:
        _positive("learning_rate", self.learning_rate, "SGD", allow_zero=True)
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
        _positive("learning_rate", self.learning_rate, "RMSprop", allow_zero=True)
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
        _positive("learning_rate", self.learning_rate, "Adam", allow_zero=True)
        _positive("epsilon", self.epsilon, "Adam")
        for key in ("beta_1", "beta_2"):
            if not 0 <= getattr(self, key) < 1:
                raise KilnValueError(f"Adam: expected {key} in [0, 1). "
                                     f"Received: {key}={getattr(self, key)!r}")

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
        _positive("learning_rate", self.learning_rate, "Adagrad", allow_zero=True)
        _positive("epsilon", self.epsilon, "Adagrad")
        _positive("initial_accumulator_value", self.initial_accumulator_value, "Adagrad",
                  allow_zero=True)

    def slots(self) -> dict[str, SlotInit]:
        return {"accumulator": self.initial_accumulator_value}

    def apply(self, b, param, grad, slots, lr, step):  # noqa: ANN001, ANN201
        acc = b.add(slots["accumulator"], b.square(grad))
        update = b.div(b.mul(lr, grad), b.sqrt(b.add(acc, self.epsilon)))
        return b.sub(param, update), {"accumulator": acc}


RULES: dict[str, type[UpdateRule]] = {"sgd": SGD, "rmsprop": RMSprop, "adam": Adam,
                                      "adagrad": Adagrad}
