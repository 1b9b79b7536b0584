"""Every op through its registry samples on the numba-cuda backend, against the reference
runtime: one graph (one executable) per op family, every sample of the family side by side,
once with static shapes and once with each sample's batch a symbol of its own.

Tolerances: float64 to 1e-12 and float32 to 2e-5 relative (1e-6 absolute), as the numba
backend's tests: reductions combine in a tree, and a GPU's libdevice math differs from
NumPy's by an ulp. Integer and bool results and the uniform and bernoulli draws are exact.
"""

from __future__ import annotations

import numpy as np
import pytest

from kiln.ir import OPS, GraphBuilder, KilnError, TensorType
from kiln.runtimes.numba_cuda import NumbaCudaExecutable
from kiln.runtimes.reference import run_graph
from tests.ir.gradcheck import sample_graph
from tests.ir.samples import FAMILIES, Sample, all_samples

# The simulator runs the random kernels' uint64 hashing on NumPy scalars, which warn on wrap.
pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")

F64 = {"rtol": 1e-12, "atol": 1e-12}
F32 = {"rtol": 2e-5, "atol": 1e-6}
EXACT_DRAWS = {"uniform", "bernoulli"}
SAMPLES = all_samples()


def assert_matches(got: np.ndarray, expected: np.ndarray, what: str, op: str = "") -> None:
    assert got.dtype == expected.dtype, f"{what}: dtype {got.dtype} != {expected.dtype}"
    assert got.shape == expected.shape, f"{what}: shape {got.shape} != {expected.shape}"
    if expected.dtype.kind in "biu" or op in EXACT_DRAWS:
        np.testing.assert_array_equal(got, expected, err_msg=what)
    else:
        tol = F64 if expected.dtype == np.float64 else F32
        np.testing.assert_allclose(got, expected, equal_nan=True, err_msg=what, **tol)


def family_graph(samples: list[tuple[int, Sample]], symbolic: bool):  # noqa: ANN201
    """One graph applying each sample's op to inputs of its own. With `symbolic`, each
    sample's batch (its first operand's leading dimension, on every operand sharing it) is a
    symbol N<k>; samples whose op needs that dimension static are left out."""
    b = GraphBuilder("family")
    feed = {}
    for k, sample in samples:
        if not symbolic:
            graph = sample_graph(sample)
            with b.scope(f"s{k}"):
                inputs = [b.input(f"s{k}.x{i}", v.type) for i, v in enumerate(graph.inputs)]
                outs, _ = b.call(graph, inputs)
            for j, value in enumerate(outs.values()):
                b.output(value, f"s{k}.y{j}")
            feed.update({f"s{k}.x{i}": a for i, a in enumerate(sample.inputs)})
            continue
        lead = sample.inputs[0].shape[0] if sample.inputs and sample.inputs[0].ndim else None
        trial = GraphBuilder("trial")
        try:
            for builder in (trial, b):
                operands = []
                for i, array in enumerate(sample.inputs):
                    shape = list(array.shape)
                    if shape and shape[0] == lead:
                        shape[0] = f"N{k}"
                    operands.append(builder.input(f"s{k}.x{i}", TensorType(
                        tuple(shape), str(array.dtype))))
                kwargs = dict(sample.attrs, **({"body": sample.body} if sample.body else {}))
                with builder.scope(f"s{k}"):
                    result = builder.op(sample.op, *operands, **kwargs)
        except KilnError:  # no symbolic form (found by the trial builder, before b)
            continue
        for j, value in enumerate(result if isinstance(result, tuple) else (result,)):
            b.output(value, f"s{k}.y{j}")
        feed.update({f"s{k}.x{i}": a for i, a in enumerate(sample.inputs)})
    return b.build(), feed


# nn's samples are the largest by far; their kernels take sizes from the arrays, so the
# symbolic run adds little there and costs a third of this file's time in the simulator.
CASES = [(f, s) for f in FAMILIES for s in (False, True) if not (s and f == "nn")]


@pytest.mark.parametrize("family, symbolic", CASES,
                         ids=[f"{f}-{'symbolic' if s else 'static'}" for f, s in CASES])
def test_every_sample_of_a_family_matches_the_reference(family: str, symbolic: bool) -> None:
    samples = [(k, s) for k, s in enumerate(SAMPLES) if OPS[s.op].family == family]
    graph, feed = family_graph(samples, symbolic)
    if not graph.outputs:
        pytest.skip(f"no sample of family {family} has a symbolic form")
    expected, _ = run_graph(graph, feed)
    got = NumbaCudaExecutable({"run": graph}, {}).run("run", feed)
    ops = {f"s{k}": s.op for k, s in samples}
    for name in expected:
        op = ops[name.split(".")[0]]
        assert_matches(got[name], expected[name], f"{name} ({op})", op)
