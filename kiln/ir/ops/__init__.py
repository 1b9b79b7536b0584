"""Op families; importing this package registers every op in kiln.ir.registry.OPS."""

from kiln.ir.ops import constant, elementwise, reduce, shape  # noqa: F401
