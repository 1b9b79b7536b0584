import numpy as np

from tests.ir.samples import Sample

SAMPLES = [
    Sample("constant", [], {"value": 2.5, "dtype": "float32", "shape": (2, 3)}, grad=False,
           name="fill"),
    Sample("constant", [], {"value": np.arange(6, dtype=np.int64).reshape(2, 3),
                            "dtype": "int64", "shape": (2, 3)}, grad=False, name="array"),
]
