"""Lambda: a function of kiln.ops as a layer, as keras.layers.Lambda."""

from __future__ import annotations

from typing import Any

import numpy as np

from kiln.frontends.keras import ops
from kiln.frontends.keras.layer import Layer
from kiln.ir import KilnTypeError, KilnValueError


class Lambda(Layer):
    """Applies `function` to its input (a tensor, or the list it is called on), written with
    kiln.ops and the tensors' operators: `Lambda(lambda x: x ** 2)`.

    Args: function (its first argument the input; a `mask` parameter gets the input's mask,
    a `training` parameter the mode); output_shape=None (the output's shape without the
    batch, a tuple, or a function of the input shape: checked against the shape the function
    gives); mask=None (None: the output has no mask; a function f(inputs, mask) of kiln.ops
    giving it; or an array, the mask of every call); arguments=None (keyword arguments for
    the function).
    Saving: the config names the function; loading takes it from `custom_objects` by that
    name, never from code in the file, so a lambda (which has no name) cannot be saved.
    """

    loads_with_custom_objects = True

    def __init__(self, function: Any, output_shape: Any = None, mask: Any = None,
                 arguments: dict[str, Any] | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        if not callable(function):
            raise KilnTypeError(f"layer {self.name!r}: Lambda expects a function. "
                                f"Received: function={function!r}")
        self.function = function
        self.arguments = dict(arguments or {})
        self.mask = mask
        self.supports_masking = mask is not None
        self._output_shape = output_shape
        self.takes_mask = "mask" in ops.parameters(function)

    def __call__(self, inputs: Any, **kwargs: Any) -> Any:
        self.multi_input = isinstance(inputs, (list, tuple))
        out = super().__call__(inputs, **kwargs)
        self._check_output_shape(inputs, out)
        return out

    def _check_output_shape(self, inputs: Any, out: Any) -> None:
        if self._output_shape is None:
            return
        outs = out if isinstance(out, list) else [out]
        given = inputs if isinstance(inputs, (list, tuple)) else [inputs]
        if callable(self._output_shape):
            arg = [t.shape for t in given] if self.multi_input else given[0].shape
            expected = self._output_shape(arg)
        else:
            expected = (given[0].shape[0], *self._output_shape)
        got = outs[0].shape
        if len(got) != len(expected) or any(e is not None and g is not None and e != g
                                            for e, g in zip(got, expected)):
            raise KilnValueError(f"layer {self.name!r} (Lambda): output_shape says "
                                 f"{tuple(expected)}, but the function gives {got}")

    def lower(self, b, inputs, ctx, keras_mask=None, **kwargs):  # noqa: ANN001, ANN201
        mask = None
        if keras_mask is not None:
            mask = keras_mask if self.multi_input else keras_mask[0]
        call = {**self.arguments, **kwargs}
        return ops.run(self.function, b, ctx, inputs, call, mask,
                       f"layer {self.name!r} (Lambda)")

    def lower_mask(self, b, inputs, masks, ctx, **kwargs):  # noqa: ANN001, ANN201
        if not callable(self.mask):
            return [b.constant(np.asarray(self.mask, dtype=bool))]
        return ops.run_mask(self.mask, self, b, ctx, inputs, masks,
                            f"layer {self.name!r} (Lambda) mask")

    def get_config(self) -> dict[str, Any]:
        config = {**super().get_config(), "function": _function_name(self.function, self.name),
                  "arguments": self.arguments}
        if self._output_shape is not None:
            config["output_shape"] = (_function_name(self._output_shape, self.name)
                                      if callable(self._output_shape)
                                      else list(self._output_shape))
        if self.mask is not None:
            config["mask"] = (_function_name(self.mask, self.name) if callable(self.mask)
                              else np.asarray(self.mask, dtype=bool).tolist())
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any], custom_objects: Any = None) -> Lambda:
        config = dict(config)
        custom = dict(custom_objects or {})
        for key in ("function", "output_shape", "mask"):
            value = config.get(key)
            if isinstance(value, dict) and "function" in value:
                name = value["function"]
                if name not in custom:
                    raise KilnValueError(
                        f"layer {config.get('name')!r} (Lambda): its {key} is the function "
                        f"{name!r}, which kiln does not load from the file; pass "
                        f"custom_objects={{{name!r}: {name}}} to load_model")
                config[key] = custom[name]
        if isinstance(config.get("output_shape"), list):
            config["output_shape"] = tuple(config["output_shape"])
        return cls(**config)


def _function_name(fn: Any, layer: str) -> dict[str, str]:
    name = getattr(fn, "__name__", None)
    if not name or name == "<lambda>" or not name.isidentifier():
        raise KilnValueError(f"layer {layer!r} (Lambda): a lambda cannot be saved: kiln "
                             f"never stores code. Give Lambda a named function, and pass it "
                             f"as custom_objects={{name: function}} when loading")
    return {"function": name}
