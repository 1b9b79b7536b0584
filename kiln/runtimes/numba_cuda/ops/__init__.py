"""The launcher table of the numba-cuda backend: op name -> Launcher (see ../context.py), one
module per op family, merged here. "fused:gemm" is the launcher of `fused` nodes of kind
gemm, which ops/control.py hands them to; tests/runtimes/test_completeness.py checks the
table against every op of the IR.
"""

from __future__ import annotations

from kiln.runtimes.numba_cuda.context import Launcher
from kiln.runtimes.numba_cuda.ops import (
    constant,
    control,
    elementwise,
    image,
    indexing,
    linalg,
    nn,
    random,
    reduce,
    shape,
)

FAMILIES = (constant, control, elementwise, reduce, shape, linalg, nn, indexing, random,
            image)

LAUNCHERS: dict[str, Launcher] = {}
for _family in FAMILIES:
    LAUNCHERS.update(_family.LAUNCHERS)

__all__ = ["FAMILIES", "LAUNCHERS"]
