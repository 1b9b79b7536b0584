"""Keras-facing optimizers: SGD, RMSprop, Adam, Adagrad with Keras 3's arguments and defaults.

An optimizer holds its configuration and, once a model has built its training step, the
arrays of its state (`optimizer.iterations`, `optimizer.learning_rate`, one slot per parameter
and kind). The compiled step updates those very arrays in place, so `learning_rate` written
here (by a callback, say) takes effect on the next step without a recompile.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import numpy as np

from kiln.ir import KilnTypeError, KilnValueError
from kiln.ir.training import ITERATIONS, LEARNING_RATE
from kiln.ir.training import optimizers as rules
from kiln.runtimes import residency

# Keras arguments kiln's update rules do not implement yet, with their Keras defaults: any
# other value is refused.
_UNSUPPORTED = {"use_ema": False, "ema_momentum": 0.99, "ema_overwrite_frequency": None,
                "loss_scale_factor": None, "gradient_accumulation_steps": None}
#: The arguments every optimizer takes (kiln.ir.training.UpdateRule applies them).
_COMMON = ("weight_decay", "clipnorm", "clipvalue", "global_clipnorm")


def _learning_rate(value: Any, owner: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) \
            or not np.isfinite(value) or value < 0:
        raise KilnValueError(f"{owner}: expected learning_rate to be a non-negative float. "
                             f"Received: learning_rate={value!r}")
    return float(value)


class Optimizer:
    """Base of the Keras-facing optimizers; subclasses name their update rule and its fields."""

    rule_class: type[rules.UpdateRule] = rules.UpdateRule
    fields: tuple[str, ...] = ()
    default_name: str | None = None  # else the rule's name

    def __init__(self, learning_rate: float, name: str | None = None, lr: float | None = None,
                 weight_decay: float | None = None, clipnorm: float | None = None,
                 clipvalue: float | None = None, global_clipnorm: float | None = None,
                 **kwargs: Any):
        cls = type(self).__name__
        self.weight_decay, self.clipnorm = weight_decay, clipnorm
        self.clipvalue, self.global_clipnorm = clipvalue, global_clipnorm
        self._exclude_ids: set[int] = set()
        self._exclude_names: tuple[str, ...] = ()
        for key, value in kwargs.items():
            if key in _UNSUPPORTED:
                if value != _UNSUPPORTED[key]:
                    raise KilnValueError(f"{cls}: {key} is not supported by kiln yet. "
                                         f"Received: {key}={value!r}")
            else:
                raise KilnTypeError(f"{cls}: unrecognized keyword argument {key!r}. "
                                    f"Received: {key}={value!r}")
        if lr is not None:  # Keras 2's spelling, as in the book
            learning_rate = lr
        self.name = name or self.default_name or self.rule_class.name
        self._learning_rate = _learning_rate(learning_rate, cls)
        self._state: dict[str, np.ndarray] = {}
        self.rule()  # check the arguments now, not at the first fit

    # -- the update rule and its state ---------------------------------------------------
    def rule(self) -> rules.UpdateRule:
        """The IR update rule with this optimizer's current settings."""
        config = {key: getattr(self, key) for key in (*self.fields, *_COMMON)}
        return self.rule_class(learning_rate=self._learning_rate, **config)

    def exclude_from_weight_decay(self, var_list: Any = None, var_names: Any = None) -> None:
        """Keras's exclusions from weight decay: these variables, and every variable whose
        name ("kernel", "bias", ...) contains one of `var_names`."""
        self._exclude_ids = {id(v) for v in var_list or ()}
        self._exclude_names = tuple(str(n) for n in var_names or ())

    def _use_weight_decay(self, variable: Any) -> bool:
        return id(variable) not in self._exclude_ids and not any(
            n in variable.name for n in self._exclude_names)

    def bind_state(self, initial: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Take ownership of the state a training step needs: arrays already held under the
        same name, shape and dtype are kept (a recompile continues where training stopped),
        the others start from `initial`. Returns the arrays to hand to the executable."""
        state = {}
        for name, array in initial.items():
            held = self._state.get(name)
            if held is not None and held.shape == array.shape and held.dtype == array.dtype:
                state[name] = held
            else:
                state[name] = np.array(array, copy=True)
        state[LEARNING_RATE][...] = self._learning_rate
        self._state = state
        return state

    def restore_state(self, arrays: dict[str, np.ndarray]) -> None:
        """Take saved state arrays (a loaded model's): the next training step's bind_state
        keeps them, so training continues where it stopped, learning rate included."""
        self._state = {name: np.array(array, copy=True) for name, array in arrays.items()}
        if LEARNING_RATE in self._state:
            self._learning_rate = float(self._state[LEARNING_RATE])

    @property
    def state(self) -> dict[str, np.ndarray]:
        """The state arrays by their graph state name (empty until a model trains), up to
        date with a device that holds newer values (kiln.runtimes.residency)."""
        residency.touch()
        return {name: residency.fetch(array) for name, array in self._state.items()}

    @property
    def storage(self) -> Mapping[str, np.ndarray]:
        """The state arrays as the host holds them, without fetching a device's newer values
        (for the frontend's own bookkeeping), read-only."""
        return MappingProxyType(self._state)

    @property
    def built(self) -> bool:
        return bool(self._state)

    @property
    def variables(self) -> list[np.ndarray]:
        """The state arrays: iterations, learning_rate, then the slots (Keras 3's order)."""
        return list(self.state.values())

    def count_params(self) -> int:
        return int(sum(array.size for array in self._state.values()))

    @property
    def iterations(self) -> int:
        """How many steps this optimizer has applied."""
        array = self._state.get(ITERATIONS)
        return 0 if array is None else int(residency.fetch(array))

    @property
    def learning_rate(self) -> float:
        array = self._state.get(LEARNING_RATE)
        return self._learning_rate if array is None else float(array)

    @learning_rate.setter
    def learning_rate(self, value: float) -> None:
        self._learning_rate = _learning_rate(value, type(self).__name__)
        array = self._state.get(LEARNING_RATE)
        if array is not None:  # graph state: the next step reads it, no recompile
            array[...] = self._learning_rate

    # Keras 2's attribute name.
    lr = learning_rate

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "learning_rate": self.learning_rate,
                **{key: getattr(self, key) for key in (*self.fields, *_COMMON)}}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Optimizer:
        return cls(**config)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} learning_rate={self.learning_rate}>"


class SGD(Optimizer):
    """Gradient descent with optional momentum and Nesterov momentum (Keras 3's rule:
    `m = momentum*m - lr*g; w += m`)."""

    rule_class = rules.SGD
    fields = ("momentum", "nesterov")

    def __init__(self, learning_rate: float = 0.01, momentum: float = 0.0,
                 nesterov: bool = False, name: str | None = None, **kwargs: Any):
        self.momentum = momentum
        self.nesterov = nesterov
        super().__init__(learning_rate, name, **kwargs)


class RMSprop(Optimizer):
    """`v = rho*v + (1-rho)*g^2; w -= lr*g/sqrt(v + epsilon)` (Keras 3: epsilon inside the
    root), with optional momentum and centering."""

    rule_class = rules.RMSprop
    fields = ("rho", "momentum", "epsilon", "centered")

    def __init__(self, learning_rate: float = 0.001, rho: float = 0.9, momentum: float = 0.0,
                 epsilon: float = 1e-7, centered: bool = False, name: str | None = None,
                 **kwargs: Any):
        self.rho, self.momentum, self.epsilon, self.centered = rho, momentum, epsilon, centered
        super().__init__(learning_rate, name, **kwargs)


class Adam(Optimizer):
    """Keras 3's Adam: bias correction folded into the rate, epsilon outside the root."""

    rule_class = rules.Adam
    fields = ("beta_1", "beta_2", "epsilon", "amsgrad")

    def __init__(self, learning_rate: float = 0.001, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-7, amsgrad: bool = False, name: str | None = None,
                 **kwargs: Any):
        self.beta_1, self.beta_2, self.epsilon, self.amsgrad = beta_1, beta_2, epsilon, amsgrad
        super().__init__(learning_rate, name, **kwargs)


class Adagrad(Optimizer):
    """`acc += g^2; w -= lr*g/sqrt(acc + epsilon)`, accumulators starting at 0.1."""

    rule_class = rules.Adagrad
    fields = ("initial_accumulator_value", "epsilon")

    def __init__(self, learning_rate: float = 0.001, initial_accumulator_value: float = 0.1,
                 epsilon: float = 1e-7, name: str | None = None, **kwargs: Any):
        self.initial_accumulator_value = initial_accumulator_value
        self.epsilon = epsilon
        super().__init__(learning_rate, name, **kwargs)


class AdamW(Adam):
    """Adam with decoupled weight decay (Keras 3: Adam whose weight_decay defaults to
    0.004): each weight is multiplied by (1 - weight_decay * lr) before the Adam update."""

    default_name = "adamw"

    def __init__(self, learning_rate: float = 0.001, weight_decay: float = 0.004,
                 beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-7,
                 amsgrad: bool = False, name: str | None = None, **kwargs: Any):
        if weight_decay is None:
            raise KilnValueError("AdamW: argument `weight_decay` must be a float. "
                                 "Received: weight_decay=None")
        super().__init__(learning_rate, beta_1, beta_2, epsilon, amsgrad, name,
                         weight_decay=weight_decay, **kwargs)


class Adamax(Optimizer):
    """Keras 3's Adamax: Adam with the infinity norm, `u = max(beta_2 u, |g|)`."""

    rule_class = rules.Adamax
    fields = ("beta_1", "beta_2", "epsilon")

    def __init__(self, learning_rate: float = 0.001, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-7, name: str | None = None, **kwargs: Any):
        self.beta_1, self.beta_2, self.epsilon = beta_1, beta_2, epsilon
        super().__init__(learning_rate, name, **kwargs)


class Nadam(Optimizer):
    """Keras 3's Nadam: Adam with Nesterov momentum and Keras's momentum schedule."""

    rule_class = rules.Nadam
    fields = ("beta_1", "beta_2", "epsilon")

    def __init__(self, learning_rate: float = 0.001, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-7, name: str | None = None, **kwargs: Any):
        self.beta_1, self.beta_2, self.epsilon = beta_1, beta_2, epsilon
        super().__init__(learning_rate, name, **kwargs)


class Lion(Optimizer):
    """Keras 3's Lion: a step of lr in the sign of beta_1 m + (1 - beta_1) g."""

    rule_class = rules.Lion
    fields = ("beta_1", "beta_2")

    def __init__(self, learning_rate: float = 0.001, beta_1: float = 0.9, beta_2: float = 0.99,
                 name: str | None = None, **kwargs: Any):
        self.beta_1, self.beta_2 = beta_1, beta_2
        super().__init__(learning_rate, name, **kwargs)


class Adadelta(Optimizer):
    """Keras 3's Adadelta: steps scaled by the running RMS of past updates over that of the
    gradients, times the learning rate."""

    rule_class = rules.Adadelta
    fields = ("rho", "epsilon")

    def __init__(self, learning_rate: float = 0.001, rho: float = 0.95, epsilon: float = 1e-7,
                 name: str | None = None, **kwargs: Any):
        self.rho, self.epsilon = rho, epsilon
        super().__init__(learning_rate, name, **kwargs)


_BY_NAME: dict[str, type[Optimizer]] = {"sgd": SGD, "rmsprop": RMSprop, "adam": Adam,
                                        "adagrad": Adagrad, "adamw": AdamW, "adamax": Adamax,
                                        "lion": Lion, "adadelta": Adadelta, "nadam": Nadam}


def get(identifier: Any) -> Optimizer:
    """An optimizer from its name ("rmsprop", "adam", ...; default settings) or itself."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, str) and identifier.lower() in _BY_NAME:
        return _BY_NAME[identifier.lower()]()
    if isinstance(identifier, str):
        raise KilnValueError(f"Could not interpret optimizer identifier: {identifier!r}. "
                             f"Expected one of {sorted(_BY_NAME)} or an optimizer instance. "
                             f"Received: optimizer={identifier!r}")
    raise KilnTypeError(f"Could not interpret optimizer identifier: expected a name or a "
                        f"kiln.optimizers.Optimizer. Received: optimizer={identifier!r}")


__all__ = ["SGD", "Adadelta", "Adagrad", "Adam", "AdamW", "Adamax", "Lion", "Nadam",
           "Optimizer", "RMSprop", "get"]
