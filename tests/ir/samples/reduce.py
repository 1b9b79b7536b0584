import numpy as np

from tests.ir.samples import Sample, rng

r = rng(2)


def distinct(*shape: int) -> np.ndarray:
    """Values with no ties, so max/min/arg* have one winner and a gradient."""
    return r.permutation(int(np.prod(shape))).reshape(shape) * 0.1 + r.uniform(0, 0.01, shape)


SAMPLES = [
    Sample("sum", [r.standard_normal((3, 4, 2))], {"axes": (0, 2)}),
    Sample("sum", [r.standard_normal((3, 4))], {"axes": None, "keepdims": True}, name="all"),
    Sample("mean", [r.standard_normal((3, 4, 2))], {"axes": (1,)}),
    Sample("mean", [r.standard_normal((3, 4))], {"axes": (-1,), "keepdims": True}, name="keep"),
    Sample("max", [distinct(3, 4, 2)], {"axes": (1,)}),
    Sample("max", [np.array([[1.0, 3.0, 3.0], [2.0, 0.5, 1.0]])], {"axes": (1,)}, grad=False,
           name="ties"),
    Sample("min", [distinct(3, 4)], {"axes": None, "keepdims": True}),
    Sample("prod", [r.uniform(0.5, 1.5, (3, 4))], {"axes": (0,)}),
    Sample("argmax", [distinct(3, 4)], {"axis": 1}, grad=False),
    Sample("argmin", [distinct(3, 4)], {"axis": 0, "keepdims": True}, grad=False),
]
