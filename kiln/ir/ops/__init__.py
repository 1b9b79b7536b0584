"""Op families; importing this package registers every op in kiln.ir.registry.OPS."""

from kiln.ir.ops import (  # noqa: F401
    constant,
    control,
    elementwise,
    fused,
    image,
    indexing,
    linalg,
    nn,
    random,
    reduce,
    shape,
)
