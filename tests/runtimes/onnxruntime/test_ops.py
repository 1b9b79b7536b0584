"""Every op on onnxruntime against the reference runtime, through the registry's samples:
static and symbolic batch, the float64 samples also in float32 (which takes onnxruntime's
Conv and AveragePool kernels where float64 takes the explicit forms), and every emitted model
through onnx.checker with full_check.

Tolerances: float64 rtol 1e-9, atol 1e-12; float32 rtol 1e-5, atol 1e-6 (onnxruntime sums
and convolves in another order than NumPy). Integers and bools exactly; uniform and bernoulli
draws bit for bit; normal within the float tolerance (log and cos may differ by an ulp).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import given, settings

from kiln.compiler.codegen.onnx import emit_model
from kiln.runtimes.reference import run_graph
from tests.compiler.differential import random_graphs
from tests.ir.gradcheck import run_sample, sample_graph
from tests.ir.samples import Sample, all_samples

SAMPLES = all_samples()
TOLERANCE = {np.dtype(np.float64): (1e-9, 1e-12), np.dtype(np.float32): (1e-5, 1e-6)}
BIT_EXACT = {"uniform", "bernoulli"}


def as_float32(sample: Sample) -> Sample:
    inputs = [a.astype(np.float32) if a.dtype == np.float64 else a for a in sample.inputs]
    return dataclasses.replace(sample, inputs=inputs, name=f"{sample.name}-f32".lstrip("-"))


F32_SAMPLES = [as_float32(s) for s in SAMPLES
               if s.body is None and any(a.dtype == np.float64 for a in s.inputs)]


def run_onnx(model: onnx.ModelProto, feeds: dict[str, np.ndarray],
             names: list[str]) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(names, feeds)


def assert_matches(got: np.ndarray, want: np.ndarray, op: str, what: str) -> None:
    assert got.dtype == want.dtype and got.shape == want.shape, (
        f"{what}: {got.dtype}{got.shape} where the reference gives {want.dtype}{want.shape}")
    if want.dtype.kind != "f" or op in BIT_EXACT:
        np.testing.assert_array_equal(got, want, err_msg=what)
    else:
        rtol, atol = TOLERANCE[want.dtype]
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, err_msg=what)


def check_sample(sample: Sample, symbolic: bool) -> None:
    try:
        graph = sample_graph(sample, symbolic_batch=symbolic)
    except Exception as err:  # some ops need a static leading dimension
        pytest.skip(f"no symbolic form: {err}")
    emitted = emit_model(graph)
    onnx.checker.check_model(emitted.model, full_check=True)
    if symbolic and graph.inputs and "N" in graph.inputs[0].type.shape:
        dim = emitted.model.graph.input[0].type.tensor_type.shape.dim[0]
        assert dim.dim_param == "N"
    names = [emitted.outputs[f"y{k}"] for k in range(len(graph.outputs))]
    got = run_onnx(emitted.model, {f"x{i}": a for i, a in enumerate(sample.inputs)}, names)
    for k, (g, w) in enumerate(zip(got, run_sample(sample), strict=True)):
        assert_matches(g, w, sample.op, f"{sample.id}: y{k}")


@pytest.mark.parametrize("symbolic", [False, True], ids=["static", "symbolic"])
@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: s.id)
def test_op_matches_the_reference(sample: Sample, symbolic: bool) -> None:
    check_sample(sample, symbolic)


@pytest.mark.parametrize("symbolic", [False, True], ids=["static", "symbolic"])
@pytest.mark.parametrize("sample", F32_SAMPLES, ids=lambda s: s.id)
def test_op_matches_the_reference_in_float32(sample: Sample, symbolic: bool) -> None:
    check_sample(sample, symbolic)


@pytest.mark.parametrize("n", [1, 3, 7])
def test_a_symbolic_batch_runs_at_any_size(n: int) -> None:
    sample = next(s for s in SAMPLES if s.id == "conv2d-strided_same")
    rng = np.random.default_rng(n)
    inputs = [rng.standard_normal((n, *sample.inputs[0].shape[1:])), sample.inputs[1]]
    check_sample(dataclasses.replace(sample, inputs=inputs), symbolic=True)


@settings(max_examples=25, deadline=None)
@given(random_graphs())
def test_random_graphs_match_the_reference(case) -> None:  # noqa: ANN001
    emitted = emit_model(case.graph)
    feeds = {**case.inputs, **case.state}
    names = [*emitted.outputs.values(), *emitted.updates.values()]
    got = dict(zip(names, run_onnx(emitted.model, feeds, names), strict=True))
    outputs, state = run_graph(case.graph, case.inputs, dict(case.state))
    for name, want in outputs.items():
        assert_matches(got[emitted.outputs[name]], want, "", f"output {name}")
    for name, onnx_name in emitted.updates.items():
        assert_matches(got[onnx_name], state[name], "", f"state {name}")
