import numpy as np

from tests.ir.samples import Sample

KEY = np.array(42, dtype=np.int64)

SAMPLES = [
    Sample("uniform", [KEY], {"shape": (3, 4)}, grad=False),
    Sample("uniform", [KEY], {"shape": (5,), "low": -2.0, "high": 3.0, "dtype": "float64",
                              "stream": 3}, grad=False, name="f64"),
    Sample("normal", [KEY], {"shape": (2, 3)}, grad=False),
    Sample("normal", [KEY], {"shape": (4,), "mean": 1.0, "stddev": 0.5, "dtype": "float64",
                             "stream": 1}, grad=False, name="f64"),
    Sample("bernoulli", [KEY], {"shape": (3, 4), "p": 0.3}, grad=False),
    Sample("bernoulli", [KEY], {"shape": ()}, grad=False, name="scalar"),
]
