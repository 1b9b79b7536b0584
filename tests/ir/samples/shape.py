import numpy as np

from tests.ir.samples import Sample, rng

r = rng(3)


def normal(*shape: int) -> np.ndarray:
    return r.standard_normal(shape)


SAMPLES = [
    Sample("reshape", [normal(3, 4)], {"shape": (-1, 2, 2)}, name="infer"),
    Sample("reshape", [normal(2, 3, 4)], {"shape": (6, 4)}, name="static"),
    Sample("reshape", [normal(1, 1)], {"shape": ()}, name="scalar"),
    Sample("broadcast_to", [normal(3, 1)], {"shape": (3, 4)}),
    Sample("broadcast_to", [normal(4)], {"shape": (2, 3, 4)}, name="rank"),
    Sample("expand_dims", [normal(3, 4)], {"axes": (0, 2)}),
    Sample("expand_dims", [normal(3, 4)], {"axes": -1}, name="last"),
    Sample("size", [normal(3, 4)], {"axes": (1,)}, grad=False),
    Sample("size", [normal(3, 4, 2)], {"axes": None, "dtype": "int64"}, grad=False,
           name="all"),
    Sample("iota", [normal(3, 4)], {"axis": 1}, grad=False),
    Sample("iota", [normal(5, 2)], {"axis": -2, "dtype": "int64"}, grad=False, name="int64"),
    Sample("iota", [normal(2, 3)], {"axis": 1, "dtype": "float32"}, grad=False,
           name="float"),
    Sample("transpose", [normal(2, 3, 4)], {"perm": (2, 0, 1)}),
    Sample("transpose", [normal(2, 3, 4)], name="reverse"),
    Sample("squeeze", [normal(3, 1, 4, 1)], {"axes": (1,)}),
    Sample("squeeze", [normal(3, 1, 4, 1)], {"axes": None}, name="all"),
    Sample("concat", [normal(3, 2), normal(3, 4)], {"axis": 1}),
    Sample("concat", [normal(2, 3), normal(4, 3), normal(1, 3)], {"axis": 0}, name="axis0"),
    Sample("concat", [normal(3, 2)], {"axis": -1}, name="one"),
    Sample("concat", [normal(2, 3) > 0, normal(2, 1) > 0], {"axis": 1}, grad=False,
           name="bool"),
    Sample("split", [normal(3, 6)], {"axis": 1, "sizes": (1, 2, 3)}),
    Sample("split", [normal(5, 2)], {"axis": 0, "sizes": (2, 0, 3)}, name="empty_piece"),
    Sample("split", [normal(3, 4)], {"axis": -1, "sizes": (4,)}, name="one"),
    Sample("slice", [normal(4, 5)], {"begin": (None, 1), "end": (None, -1)}),
    Sample("slice", [normal(6, 7)], {"begin": (5, 1), "end": (None, None), "strides": (-2, 3)},
           name="neg_stride"),
    Sample("slice", [normal(3, 8)], {"begin": (None, 6), "end": (None, 0),
                                     "strides": (1, -1)}, name="reverse_part"),
    Sample("slice", [normal(3, 8)], {"begin": (0, 1), "end": (None, None),
                                     "strides": (1, 3)}, name="stride_trim"),
    Sample("slice", [normal(3, 8)], {"begin": (0, -1), "end": (None, None),
                                     "strides": (1, -3)}, name="neg_stride_trim"),
    Sample("slice", [normal(3, 5)], {"begin": (0, 10), "end": (None, 20)}, name="empty"),
    Sample("pad", [normal(3, 4)], {"pads": ((0, 0), (1, 2))}),
    Sample("pad", [normal(3, 4)], {"pads": ((1, 0), (2, 1)), "value": -1.5}, name="value"),
    Sample("pad", [np.arange(6, dtype=np.int64).reshape(3, 2)], {"pads": ((0, 0), (0, 2)),
                                                                 "value": 7}, grad=False,
           name="int"),
    Sample("tile", [normal(3, 2)], {"reps": (1, 3)}),
    Sample("tile", [normal(2, 3)], {"reps": (2, 2)}, name="both"),
    Sample("tile", [normal(2, 2)], {"reps": (1, 0)}, name="zero"),
]
