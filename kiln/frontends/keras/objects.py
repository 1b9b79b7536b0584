"""Lookup and serialization shared by the Keras objects a layer argument names: regularizers
and constraints (a name, a class, an instance, a serialized dict, or a plain callable)."""

from __future__ import annotations

from typing import Any

from kiln.ir import KilnValueError


class Configurable:
    """What the named objects share: a config of their constructor's arguments, rebuilt by
    from_config, and a repr that shows it."""

    def get_config(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Any:
        return cls(**config)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


def serialize(obj: Any, base: type) -> Any:
    """What a layer's get_config holds: None, {"class_name": ..., "config": ...} for an
    instance of `base`, other callables as they are (a saved model refuses them, naming the
    layer)."""
    if isinstance(obj, base):
        return {"class_name": type(obj).__name__, "config": obj.get_config()}
    return obj


def get(identifier: Any, base: type, classes: dict[str, type], names: dict[str, type],
        kind: str, what: str) -> Any:
    """None, or the object `identifier` names: a key of `names`, a subclass of `base`
    (instantiated), an instance, {"class_name": a key of `classes`, "config": {...}}, or any
    callable. `kind` ("regularizer") and `what` (the argument) go into the errors."""
    if identifier is None:
        return None
    if isinstance(identifier, dict) and isinstance(identifier.get("class_name"), str):
        cls = classes.get(identifier["class_name"])
        if cls is None:
            raise KilnValueError(f"Unknown {kind} class {identifier['class_name']!r}; expected "
                                 f"one of {sorted(classes)}. Received: {what}={identifier!r}")
        return cls.from_config(dict(identifier.get("config") or {}))
    if isinstance(identifier, str):
        cls = names.get(identifier)
        if cls is None:
            raise KilnValueError(f"Could not interpret {kind} identifier {identifier!r}; "
                                 f"expected one of {sorted(names)}. "
                                 f"Received: {what}={identifier!r}")
        return cls()
    if isinstance(identifier, type) and issubclass(identifier, base):
        return identifier()
    if callable(identifier):
        return identifier
    raise KilnValueError(f"Could not interpret {kind} identifier: expected a name, a "
                         f"kiln.{kind}s object or a callable f(builder, value). "
                         f"Received: {what}={identifier!r}")
