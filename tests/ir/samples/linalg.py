import numpy as np

from tests.ir.samples import Sample, rng

r = rng(3)


def normal(*shape: int) -> np.ndarray:
    return r.standard_normal(shape)


SAMPLES = [
    Sample("matmul", [normal(3, 4), normal(4, 5)]),
    Sample("matmul", [normal(2, 3, 4), normal(4, 5)], name="batched_x"),
    Sample("matmul", [normal(3, 4), normal(2, 4, 5)], name="batched_y"),
    Sample("matmul", [normal(2, 3, 4), normal(2, 4, 5)], name="batched_both"),
    Sample("matmul", [normal(2, 1, 3, 4), normal(3, 4, 2)], name="broadcast_batch"),
    Sample("matmul", [normal(3, 4).astype(np.float32), normal(4, 2).astype(np.float32)],
           grad=False, name="f32"),
]
