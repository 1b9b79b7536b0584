import numpy as np

from tests.ir.samples import Sample, rng

r = rng(7)

# Repeated indices, so gather's gradient (a scatter_add) must accumulate.
TOKENS = np.array([[0, 3, 3, 1], [4, 0, 2, 3]], dtype=np.int64)

SAMPLES = [
    Sample("gather", [r.standard_normal((5, 3)), TOKENS], name="embedding"),
    Sample("gather", [r.standard_normal((3, 4, 2)), np.array([3, 1, 1], dtype=np.int32)],
           {"axis": 1}, name="axis1"),
    Sample("gather", [r.standard_normal((3, 4)), np.array(2, dtype=np.int64)], {"axis": -1},
           name="scalar_index"),
    Sample("scatter_add", [r.standard_normal((2, 4, 3)), TOKENS], {"axis": 0, "size": 5}),
    Sample("scatter_add", [r.standard_normal((2, 3, 2)), np.array([3, 1, 1], dtype=np.int32)],
           {"axis": 1, "size": 4}, name="axis1"),
    Sample("one_hot", [np.array([[0, 2, 5], [1, -1, 3]], dtype=np.int64)], {"depth": 4},
           name="out_of_range"),
    Sample("one_hot", [np.array([2, 0, 1], dtype=np.int32)],
           {"depth": 3, "axis": 0, "dtype": "int32"}, name="axis0"),
]
