"""The numba backend against the reference runtime: every op through its registry samples,
the train steps of the test models over several steps, a symbolic batch, the on-disk cache
in a new process, and clear errors for bad inputs.

Numba's compile time dominates, so the samples are batched: one graph (one driver) per op
family, every sample of the family side by side. Compiled drivers are cached on disk
(kiln.runtimes.numba.cache), so a second run of this file compiles nothing.

Tolerances: float64 results must match the reference to 1e-12 (relative); float32 ones to
2e-5 relative and 1e-6 absolute, since reductions accumulate in another order (in float64
here, pairwise in float32 in NumPy) and libm's exp/log differ from NumPy's by an ulp.
Integer and bool results, and the uniform and bernoulli draws, must match exactly.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kiln.compiler.codegen.numba import MISSING
from kiln.ir import Graph, GraphBuilder, KilnError, KilnTypeError, KilnValueError, TensorType
from kiln.ir.training import RMSprop
from kiln.runtimes.numba import NumbaExecutable
from kiln.runtimes.numba import cache as cache_module
from kiln.runtimes.reference import ReferenceExecutable, run_graph
from tests.ir.gradcheck import sample_graph
from tests.ir.samples import FAMILIES, Sample, all_samples
from tests.models import convnet, lstm, mlp

ROOT = Path(__file__).resolve().parents[3]

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


# -- every op through its samples ------------------------------------------------------------
def family_graph(samples: list[tuple[int, Sample]]):  # noqa: ANN201
    """One graph applying each sample's op (sample_graph inlined) to its own inputs."""
    b = GraphBuilder("family")
    feed = {}
    for k, sample in samples:
        graph = sample_graph(sample)
        with b.scope(f"s{k}"):
            inputs = []
            for i, (v, array) in enumerate(zip(graph.inputs, sample.inputs, strict=True)):
                inputs.append(b.input(f"s{k}.x{i}", v.type))
                feed[f"s{k}.x{i}"] = array
            outs, _ = b.call(graph, inputs)
        for name, value in outs.items():
            b.output(value, f"s{k}.{name}")
    return b.build(), feed


def symbolic_family_graph(samples: list[tuple[int, Sample]]):  # noqa: ANN201
    """As family_graph, with each sample's batch (its first operand's leading dimension, on
    every operand that shares it, as sample_graph(symbolic_batch=True) does) a symbol of
    its own, N<k>; samples whose op needs that dimension static are left out."""
    b = GraphBuilder("family")
    feed = {}
    for k, sample in samples:
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


def _family_of(sample: Sample) -> str:
    from kiln.ir import OPS

    return OPS[sample.op].family


@pytest.mark.parametrize("family", FAMILIES)
def test_every_sample_of_a_family_matches_the_reference(family: str) -> None:
    samples = [(k, s) for k, s in enumerate(SAMPLES) if _family_of(s) == family]
    graph, feed = family_graph(samples)
    expected, _ = run_graph(graph, feed)
    exe = NumbaExecutable({"run": graph}, {})
    got = exe.run("run", feed)
    ops = {f"s{k}": s.op for k, s in samples}
    for name in expected:
        op = ops[name.split(".")[0]]
        assert_matches(got[name], expected[name], f"{name} ({op})", op)


@pytest.mark.parametrize("family", FAMILIES)
def test_every_sample_of_a_family_with_a_symbolic_batch(family: str) -> None:
    samples = [(k, s) for k, s in enumerate(SAMPLES) if _family_of(s) == family]
    graph, feed = symbolic_family_graph(samples)
    if not graph.outputs:
        pytest.skip(f"no sample of family {family} has a symbolic form")
    expected, _ = run_graph(graph, feed)
    got = NumbaExecutable({"run": graph}, {}).run("run", feed)
    ops = {f"s{k}": s.op for k, s in samples}
    for name in expected:
        op = ops[name.split(".")[0]]
        assert_matches(got[name], expected[name], f"{name} ({op})", op)


def test_no_op_is_missing() -> None:
    assert MISSING == []


def test_symbolic_batch_of_a_family() -> None:
    """Shape ops and reductions with N symbolic, at two batch sizes through one executable."""
    b = GraphBuilder("batch")
    x = b.input("x", TensorType(("N", 3, 4), "float32"))
    flat = b.reshape(x, shape=("N", -1))
    b.output(b.sum(b.tanh(flat), axes=(1,)), "rows")
    b.output(b.max(b.transpose(x, perm=(0, 2, 1)), axes=(0,)), "cols")
    b.output(b.mean(x), "all")
    graph = b.build()
    exe = NumbaExecutable({"run": graph}, {})
    rng = np.random.default_rng(0)
    for n in (5, 2, 5):
        feed = {"x": rng.standard_normal((n, 3, 4)).astype(np.float32)}
        expected, _ = run_graph(graph, feed)
        got = exe.run("run", feed)
        for name in expected:
            assert_matches(got[name], expected[name], name)
    assert len(exe.entries["run"].arenas) == 2


def test_nested_scans_are_inlined_into_one_driver() -> None:
    """A scan whose body runs a reverse scan: both loops in the driver, body in body."""
    f64 = TensorType((3,), "float64")
    ib = GraphBuilder("inner")
    c, x = ib.input("c", f64), ib.input("x", f64)
    t = ib.add(ib.mul(c, 0.5), ib.tanh(x))
    ib.output(t, "c")
    ib.output(ib.square(t), "y")
    ob = GraphBuilder("outer")
    c, xs = ob.input("c", f64), ob.input("xs", TensorType((4, 3), "float64"))
    last, ys = ob.op("scan", c, xs, num_carry=1, num_seq=1, body=ib.build(), reverse=True)
    ob.output(ob.add(c, last), "c")
    ob.output(ys, "ys")
    b = GraphBuilder("nested")
    c0, seq = b.input("c0", f64), b.input("seq", TensorType(("T", 4, 3), "float64"))
    final, stacked = b.op("scan", c0, seq, num_carry=1, num_seq=1, body=ob.build())
    b.output(final, "final")
    b.output(stacked, "ys")
    graph = b.build()
    exe = NumbaExecutable({"run": graph}, {})
    assert exe.source("run").count("for step") == 2
    rng = np.random.default_rng(0)
    for steps in (5, 0):
        feed = {"c0": rng.standard_normal(3), "seq": rng.standard_normal((steps, 4, 3))}
        expected, _ = run_graph(graph, feed)
        got = exe.run("run", feed)
        for name in expected:
            assert_matches(got[name], expected[name], name)


def test_the_source_is_commented_ir_and_array_constants_are_arguments() -> None:
    table = np.arange(1000, dtype=np.float32) * 0.25
    b = GraphBuilder("lookup")
    x = b.input("x", TensorType(("N", 1000), "float32"))
    with b.scope("scale"):
        b.output(b.relu(b.mul(x, b.constant(table))), "y")
    graph = b.build()
    exe = NumbaExecutable({"run": graph}, {})
    source = exe.source("run")
    assert "# %scale.relu = relu(%scale.mul) : f32[N,1000]" in source
    assert "249.75" not in source and "const_" in source.splitlines()[2]
    x = np.random.default_rng(0).standard_normal((3, 1000)).astype(np.float32)
    np.testing.assert_array_equal(exe.run("run", {"x": x})["y"], np.maximum(x * table, 0))


def test_a_cheap_kernel_hides_its_short_inner_extent_and_vectorizes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bias add and relu over 32 channels reads its inner extent from a constant argument,
    so LLVM keeps the loop and vectorizes it (a visible extent of 32 was unrolled into scalar
    code); a kernel of many ops keeps its literal extent. Results as the reference's."""
    b = GraphBuilder("cheap")
    x = b.input("x", TensorType(("N", 5, 5, 32), "float32"))
    bias = b.input("bias", TensorType((32,), "float32"))
    b.output(b.relu(b.add(x, bias)), "y")
    b.output(b.tanh(b.mul(b.sigmoid(b.sub(x, bias)), b.exp(b.neg(x)))), "z")
    graph = b.build()
    exe = NumbaExecutable({"run": graph}, {})
    source = exe.source("run")
    loops = [line.strip() for line in source.splitlines() if line.strip().startswith("for i")]
    assert any(line.endswith("in range(const_extent_32[0]):") for line in loops), loops
    assert any(line.endswith("in range(32):") for line in loops), loops  # the 5-op kernel
    rng = np.random.default_rng(0)
    feed = {"x": rng.standard_normal((3, 5, 5, 32)).astype(np.float32),
            "bias": rng.standard_normal(32).astype(np.float32)}
    got = exe.run("run", feed)
    expected, _ = run_graph(graph, feed)
    np.testing.assert_array_equal(got["y"], expected["y"])
    np.testing.assert_allclose(got["z"], expected["z"], **F32)
    alone = GraphBuilder("relu_alone")
    xa = alone.input("x", TensorType(("N", 5, 5, 32), "float32"))
    alone.output(alone.relu(alone.add(xa, alone.input("bias", TensorType((32,), "float32")))),
                 "y")
    monkeypatch.setenv("KILN_CACHE_DIR", str(tmp_path))  # compiled here: its code readable
    relu = NumbaExecutable({"run": alone.build()}, {})
    np.testing.assert_array_equal(relu.run("run", feed)["y"], expected["y"])
    asm = "".join(relu.entries["run"].function.inspect_asm().values())
    assert "maxps" in asm  # the relu as a vector max (maxss when unrolled to scalars)


# -- train steps of the test models ------------------------------------------------------------
# float32 state after several steps: the per-step differences of reductions (see the module
# docstring) compound through the optimizer, hence a looser tolerance than one op's.
STEP_TOL = {"rtol": 1e-4, "atol": 1e-5}
STEPS = 4


def _model_step(name: str):  # noqa: ANN202
    model = {"mlp": mlp, "convnet": convnet, "lstm": lstm}[name]()
    optimizer = RMSprop(0.01)
    return model, model.train_step(optimizer).graph, model.initial_state(optimizer)


@pytest.mark.parametrize("name", ["mlp", "convnet", "lstm"])
def test_train_steps_match_the_reference(name: str) -> None:
    model, graph, state = _model_step(name)
    ref_state = {k: v.copy() for k, v in state.items()}
    nb_state = {k: v.copy() for k, v in state.items()}
    arrays = dict(nb_state)  # the very arrays the executable must update in place
    ref = ReferenceExecutable({"train_step": graph}, ref_state)
    exe = NumbaExecutable({"train_step": graph}, nb_state)
    for step in range(STEPS):
        batch = {"x": model.x[16 * step:16 * step + 16], "y": model.y[16 * step:16 * step + 16]}
        expected, got = ref.run("train_step", batch), exe.run("train_step", batch)
        for key in expected:
            np.testing.assert_allclose(got[key], expected[key], err_msg=f"step {step}: {key}",
                                       **STEP_TOL)
        for key in ref_state:
            assert nb_state[key] is arrays[key]
            np.testing.assert_allclose(nb_state[key], ref_state[key],
                                       err_msg=f"step {step}: state {key}", **STEP_TOL)
    assert nb_state["optimizer.iterations"] == STEPS


def test_a_bad_token_in_a_train_step_changes_no_state() -> None:
    """Index inputs are checked before any node runs: the embedding's gradient comes late in
    the step, after other parameters' in-place updates could have run."""
    model, graph, state = _model_step("lstm")
    exe = NumbaExecutable({"train_step": graph}, state)
    before = {k: v.copy() for k, v in state.items()}
    x = model.x[:16].copy()
    x[3, 5] = 12  # the vocabulary has 12 words
    # (the simplifier gathers the rows straight into the LSTM's time-major order: the
    # gather is named after the transpose it replaced)
    with pytest.raises(KilnValueError, match=r"gather \(%lstm[\w.]*\): expected "
                                             r"indices in \[0, 12\)"):
        exe.run("train_step", {"x": x, "y": model.y[:16]})
    for key, array in before.items():
        np.testing.assert_array_equal(state[key], array, err_msg=key)


def test_one_executable_serves_every_batch_size_and_a_last_short_batch() -> None:
    model, graph, state = _model_step("mlp")
    ref_state = {k: v.copy() for k, v in state.items()}
    nb_state = {k: v.copy() for k, v in state.items()}
    ref = ReferenceExecutable({"train_step": graph}, ref_state)
    exe = NumbaExecutable({"train_step": graph}, nb_state)
    start = 0
    for size in (32, 32, 7, 32, 1):
        batch = {"x": model.x[start:start + size], "y": model.y[start:start + size]}
        start += size
        expected, got = ref.run("train_step", batch), exe.run("train_step", batch)
        for key in expected:
            np.testing.assert_allclose(got[key], expected[key], **STEP_TOL)
        for key in ref_state:
            np.testing.assert_allclose(nb_state[key], ref_state[key], err_msg=key, **STEP_TOL)
    entry = exe.entries["train_step"]
    assert len(entry.arenas) == 3  # one arena per batch size seen
    assert len(entry.function.signatures) == 1  # one compiled driver for every size


# -- the cache, across processes ---------------------------------------------------------------
CACHE_SCRIPT = """
import sys, time
start = time.perf_counter()
import numpy as np
from kiln.ir.training import RMSprop
from kiln.runtimes.numba import NumbaExecutable
from tests.models import mlp
model = mlp()
optimizer = RMSprop(0.01)
state = model.initial_state(optimizer)
exe = NumbaExecutable({"train_step": model.train_step(optimizer).graph}, state)
out = exe.run("train_step", {"x": model.x[:16], "y": model.y[:16]})
seconds = time.perf_counter() - start
np.savez(sys.argv[1], loss=out["loss"], **{k.replace("/", "|"): v for k, v in state.items()})
print(seconds)
"""


def _run_in_new_process(script: Path, result: Path, cache: Path) -> float:
    env = {**os.environ, "KILN_CACHE_DIR": str(cache),
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    env.pop("NUMBA_CACHE_DIR", None)  # numba would put its index there, not beside the module
    done = subprocess.run([sys.executable, str(script), str(result)], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return float(done.stdout.strip().splitlines()[-1])


def test_a_new_process_loads_the_compiled_driver_from_the_cache(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script = tmp_path / "step.py"
    script.write_text(CACHE_SCRIPT)
    cache = tmp_path / "cache"
    cold = _run_in_new_process(script, tmp_path / "cold.npz", cache)
    compiled = sorted(p.name for p in (cache / "numba").glob("kiln_*.py"))
    assert len(compiled) == 1
    assert list((cache / "numba" / "__pycache__").glob("*.nbc"))
    warm = _run_in_new_process(script, tmp_path / "warm.npz", cache)
    print(f"\nMLP train step in a new process: {cold:.2f} s with a cold cache (compile), "
          f"{warm:.2f} s with it warm")
    with np.load(tmp_path / "cold.npz") as a, np.load(tmp_path / "warm.npz") as b:
        assert sorted(a.files) == sorted(b.files)
        for key in a.files:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    monkeypatch.setenv("KILN_CACHE_DIR", str(cache))
    assert cache_module.clear() == 1
    assert not (cache / "numba").exists()


# -- errors --------------------------------------------------------------------------------------
def _tiny() -> Graph:
    """An embedding lookup plus an input, a state update: small, for the error tests."""
    b = GraphBuilder("tiny")
    ids = b.input("ids", TensorType(("N",), "int64"))
    x = b.input("x", TensorType(("N", 3), "float32"))
    w = b.state("w", TensorType((5, 3), "float32"))
    with b.scope("embedding"):
        rows = b.gather(w, ids, axis=0)
    b.output(b.sum(b.add(rows, x), axes=(1,)), "y")
    b.update(w, b.mul(w, 0.5))
    return b.build()


@pytest.fixture(scope="module")
def tiny() -> NumbaExecutable:
    return NumbaExecutable({"tiny": _tiny()}, {"w": np.ones((5, 3), np.float32)})


GOOD = {"ids": np.array([0, 4], np.int64), "x": np.zeros((2, 3), np.float32)}


@pytest.mark.parametrize("inputs, error, message", [
    ({**GOOD, "x": np.zeros((2, 3))}, KilnTypeError,
     r"%x expected dtype float32. Received: float64"),
    ({**GOOD, "x": np.zeros((2, 4), np.float32)}, KilnValueError,
     r"%x expected shape f32\[N,3\] \(with \{'N': 2\}\). Received: shape \(2, 4\)"),
    ({**GOOD, "x": np.zeros((3, 3), np.float32)}, KilnValueError, r"%x expected shape"),
    ({"ids": GOOD["ids"]}, KilnValueError, r"no value given for input %x"),
    ({**GOOD, "z": GOOD["x"]}, KilnValueError, r"unknown input 'z'"),
    ({**GOOD, "ids": np.array([0, 5], np.int64)}, KilnValueError,
     r"@tiny .*gather \(%embedding.gather\): expected indices in \[0, 5\)"),
])
def test_bad_inputs_give_clear_errors(tiny: NumbaExecutable, inputs: dict, error: type,
                                      message: str) -> None:
    before = tiny.state["w"].copy()
    with pytest.raises(error, match=message):
        tiny.run("tiny", inputs)
    np.testing.assert_array_equal(tiny.state["w"], before)  # no half-updated state


def test_unknown_entry_point(tiny: NumbaExecutable) -> None:
    with pytest.raises(KilnValueError, match=r"no entry point 'predict'; expected one of"):
        tiny.run("predict", GOOD)


def test_state_is_updated_in_place_even_when_not_contiguous() -> None:
    storage = np.ones((5, 6), np.float32)
    w = storage[:, ::2]  # a strided view: the executable must write through it
    exe = NumbaExecutable({"tiny": _tiny()}, {"w": w})
    out = exe.run("tiny", GOOD)
    np.testing.assert_allclose(out["y"], [3.0, 3.0])
    assert exe.state["w"] is w
    np.testing.assert_array_equal(storage[:, ::2], 0.5)
    np.testing.assert_array_equal(storage[:, 1::2], 1.0)
    with pytest.raises(KilnValueError, match=r"state %w is updated in place, but its array is "
                                             r"read-only"):
        w.flags.writeable = False
        exe.run("tiny", GOOD)


# -- the fast path of run ----------------------------------------------------------------------
def test_the_fast_path_sees_replaced_state_and_odd_inputs() -> None:
    """run checks inputs in full only when its fast path declines: a state array replaced
    between calls, or one made read-only, and inputs that are strided, read-only, lists or
    of another dtype must behave as on the first call."""
    exe = NumbaExecutable({"tiny": _tiny()}, {"w": np.ones((5, 3), np.float32)})
    ref = ReferenceExecutable({"tiny": _tiny()}, {"w": np.ones((5, 3), np.float32)})
    for _ in range(2):  # the second call takes the fast path
        np.testing.assert_allclose(exe.run("tiny", GOOD)["y"], ref.run("tiny", GOOD)["y"])
    replaced = np.full((5, 3), 2.0, np.float32)
    exe.state["w"], ref.state["w"] = replaced, replaced.copy()
    np.testing.assert_allclose(exe.run("tiny", GOOD)["y"], ref.run("tiny", GOOD)["y"])
    np.testing.assert_array_equal(replaced, ref.state["w"])  # updated in place
    storage = np.arange(12, dtype=np.float32).reshape(2, 6)
    frozen = GOOD["ids"].copy()
    frozen.flags.writeable = False
    for feed in ({"ids": frozen, "x": storage[:, ::2]}, {"ids": [0, 4], "x": GOOD["x"]}):
        np.testing.assert_allclose(exe.run("tiny", feed)["y"], ref.run("tiny", feed)["y"])
    with pytest.raises(KilnTypeError, match=r"%x expected dtype float32"):
        exe.run("tiny", {**GOOD, "x": np.zeros((2, 3))})
    exe.state["w"].flags.writeable = False
    with pytest.raises(KilnValueError, match=r"state %w is updated in place"):
        exe.run("tiny", GOOD)


def test_a_batch_of_transposed_matrices_read_by_a_matmul_is_a_view() -> None:
    """transpose(x, (0, 2, 1)) into a batched matmul: each matrix goes to BLAS as a
    transposed view of x's storage (the LSTM's input-weight gradient), no copy."""
    b = GraphBuilder("g")
    x = b.input("x", TensorType((3, "N", 4), "float32"))
    w = b.input("w", TensorType((3, "N", 5), "float32"))
    t = b.transpose(b.tanh(x), perm=(0, 2, 1))
    b.output(b.matmul(t, b.exp(b.exp(w))), "y")
    graph = b.build()
    exe = NumbaExecutable({"run": graph}, {})
    source = exe.source("run")
    start = source.index("= transpose(")
    assert "for " not in source[start:source.index("\n    # %", start)]
    assert ".reshape((d_N, 4)).T" in source
    rng = np.random.default_rng(0)
    for n in (6, 1):
        feed = {"x": rng.standard_normal((3, n, 4)).astype(np.float32),
                "w": rng.standard_normal((3, n, 5)).astype(np.float32) * 0.1}
        expected, _ = run_graph(graph, feed)
        assert_matches(exe.run("run", feed)["y"], expected["y"], "y")


def test_a_transpose_read_by_matmuls_is_a_view_even_when_its_slot_is_shared() -> None:
    """The plan may give a transpose the slot of a later value that turns out a view (the
    input's transpose in an MLP's gradient): generated twice, the driver knows it is one."""
    model, graph, state = _model_step("mlp")
    exe = NumbaExecutable({"train_step": graph}, state)
    source = exe.source("train_step")
    start = source.index("= transpose(%dense.relu)")
    end = source.index("\n    # %", start)
    assert "for " not in source[start:end]  # no copy loop after the transpose's IR line
