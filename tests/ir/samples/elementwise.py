import numpy as np

from tests.ir.samples import Sample, rng

r = rng(1)


def normal(*shape: int) -> np.ndarray:
    return r.standard_normal(shape)


def positive(*shape: int) -> np.ndarray:
    return r.uniform(0.5, 2.0, shape)


def away_from_zero(*shape: int) -> np.ndarray:
    return r.uniform(0.2, 1.5, shape) * r.choice([-1.0, 1.0], shape)


SAMPLES = [
    Sample("neg", [normal(3, 4)]),
    Sample("abs", [away_from_zero(3, 4)]),
    Sample("exp", [normal(3, 4)]),
    Sample("log", [positive(3, 4)]),
    Sample("log1p", [positive(3, 4)]),
    Sample("sqrt", [positive(3, 4)]),
    Sample("rsqrt", [positive(3, 4)]),
    Sample("square", [normal(3, 4)]),
    Sample("tanh", [normal(3, 4)]),
    Sample("sin", [r.uniform(-7.0, 7.0, (3, 4))]),
    Sample("cos", [r.uniform(-7.0, 7.0, (3, 4))]),
    Sample("sigmoid", [normal(3, 4) * 3]),
    Sample("relu", [away_from_zero(3, 4)]),
    Sample("elu", [away_from_zero(3, 4)], {"alpha": 0.7}),
    Sample("selu", [away_from_zero(3, 4)]),
    Sample("softplus", [normal(3, 4) * 3]),
    Sample("sign", [away_from_zero(3, 4)], grad=False),
    # halves (to even), values near integers from both sides, and big ones
    Sample("floor", [np.array([[-2.5, -0.5, 0.5, 1.5], [2.999, -1.001, 3e8, -7.0]])],
           grad=False),
    Sample("ceil", [np.array([[-2.5, -0.5, 0.5, 1.5], [2.001, -1.999, 3e8, -7.0]])],
           grad=False),
    Sample("round", [np.array([[-2.5, -0.5, 0.5, 1.5], [2.5, -1.4999, 3e8 + 0.5, 7.51]])],
           grad=False),
    Sample("reciprocal", [away_from_zero(3, 4)]),
    Sample("clip", [np.array([[-2.0, -0.3, 0.1], [0.45, 0.8, 3.0]])], {"min": -0.5, "max": 0.5}),
    Sample("add", [normal(3, 4), normal(4)], name="broadcast"),
    Sample("add", [normal(2, 1, 4), normal(3, 1)], name="both"),
    Sample("sub", [normal(3, 1), normal(1, 4)]),
    Sample("mul", [normal(3, 4), normal(3, 4)]),
    Sample("mul", [normal(3, 4), normal()], name="scalar"),
    Sample("div", [normal(3, 4), away_from_zero(4)]),
    Sample("pow", [positive(3, 4), normal(3, 4)]),
    Sample("maximum", [normal(3, 4), normal(3, 4)]),
    Sample("minimum", [normal(3, 4), normal(4)]),
    Sample("equal", [np.array([1.0, 2.0, 3.0]), np.array([1.0, 0.0, 3.0])], grad=False),
    Sample("less", [normal(3, 4), normal(4)], grad=False),
    Sample("greater", [normal(3, 4), normal(3, 1)], grad=False),
    Sample("logical_and", [normal(3, 4) > 0, normal(4) > 0], grad=False),
    Sample("logical_or", [normal(3, 4) > 0, normal(3, 4) > 0], grad=False),
    Sample("logical_not", [normal(3, 4) > 0], grad=False),
    Sample("where", [normal(3, 4) > 0, normal(3, 4), normal(4)]),
    Sample("cast", [normal(3, 4)], {"dtype": "float32"}, grad=False, name="to_f32"),
    Sample("cast", [normal(3, 4)], {"dtype": "float64"}, name="f64"),
    Sample("cast", [np.arange(6, dtype=np.int64)], {"dtype": "float32"}, grad=False,
           name="int"),
]
