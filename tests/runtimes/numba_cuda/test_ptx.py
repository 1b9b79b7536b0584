"""Every CUDA kernel the numba-cuda backend runs compiles for a real GPU: the kernels kiln
generates for the test models' train steps, the movement kernels, and every hand-written one
(tests/runtimes/numba_cuda/kernels.py enumerates them all, with the signatures they are
launched with). cuda.compile_ptx for compute capability 9.0 needs no GPU or driver, only
numba-cuda with the CUDA toolkit wheels, and catches the typing errors the simulator lets
through (a float64 constant in a float32 kernel, an unsupported function). Read off the PTX
too: float32 kernels do no float64 arithmetic, and the uniform draws use no fused
multiply-add (their spec rounds the product and the sum separately).

compile_ptx needs numba.cuda in real mode: a process running the simulator skips this file.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from kiln.compiler.pass_manager import compile_graph
from kiln.ir.training import RMSprop
from tests.models import convnet, losses_and_metrics, lstm, mlp

if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
    pytest.skip("compile_ptx needs the real CUDA target, not the simulator",
                allow_module_level=True)
cuda = pytest.importorskip("numba.cuda")
pytest.importorskip("cuda.bindings", reason="compile_ptx needs numba-cuda's CUDA bindings")

from tests.runtimes.numba_cuda.kernels import (  # noqa: E402 - after the skips
    KernelCase,
    generated_kernels,
    library_kernels,
    library_modules,
    movement_kernels,
)

CC = (9, 0)
MODELS = {"mlp": mlp, "convnet": convnet, "lstm": lstm}
# float32 kernels that must not do float64 arithmetic (the others accumulate in float64 on
# purpose: col2im, pooling gradients, softmax's max and sum, the normal draw)
NO_F64 = ("gemm.gemm[float32]", "gemm.epilogue[float32]")


@pytest.fixture(scope="module", autouse=True)
def _compute_capability() -> Iterator[None]:
    """Without a GPU, the device functions a kernel calls are compiled for the current
    device's compute capability, which numba asks the driver for: they are told 9.0 too
    (the kernel's own target)."""
    from numba.cuda import dispatcher

    class _Device:
        compute_capability = CC

    saved = dispatcher.get_current_device
    if not cuda.is_available():
        dispatcher.get_current_device = lambda: _Device
    try:
        yield
    finally:
        dispatcher.get_current_device = saved


def _compile(case: KernelCase) -> str:
    try:
        ptx, _ = cuda.compile_ptx(case.function, case.signature, cc=CC)
    except Exception as err:
        raise AssertionError(f"{case.name} ({case.signature}) does not compile: {err}") from err
    assert ".target sm_90" in ptx and ".entry" in ptx, case.name
    return ptx


SEEN: set[str] = set()  # kernel sources compiled already (the models share many kernels)


@pytest.mark.parametrize("entry", ["train_step", "predict"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_generated_kernel_of_an_entry_compiles_to_ptx(name: str, entry: str) -> None:
    """Train steps, and the forward graphs predict runs (the convnet's a fused conv, whose
    epilogue is a kernel of its own on the GPU)."""
    model = MODELS[name]()
    source = model.train_step(RMSprop(0.01)).graph if entry == "train_step" else model.forward
    graph, _ = compile_graph(source)
    before = len(SEEN)
    cases = list(generated_kernels(graph, SEEN))
    assert len(SEEN) - before == len(cases)
    if entry == "train_step":
        assert len(list(generated_kernels(graph))) >= 5
    elif name == "convnet":  # the conv kernel's epilogue
        assert graph.nodes[0].attr["kind"] == "conv" and list(generated_kernels(graph))
    for case in cases:
        ptx = _compile(case)
        if "float32" in case.signature and "float64" not in case.signature:
            assert ".f64" not in ptx, f"{case.name}: float64 arithmetic in a float32 kernel"


def test_every_loss_and_metric_kernel_compiles_to_ptx() -> None:
    """The kernels of a train step with a head per loss and every metric (tests/models.py)."""
    graph, _ = compile_graph(losses_and_metrics()[0].graph)
    assert len(list(generated_kernels(graph))) >= 20
    for case in generated_kernels(graph, SEEN):
        _compile(case)


def test_movement_kernels_compile_to_ptx() -> None:
    for case in movement_kernels():
        _compile(case)


def test_every_hand_written_kernel_compiles_to_ptx() -> None:
    cases = library_kernels()
    names = [case.name for case in cases]
    assert len(set(names)) == len(names), "a kernel case is listed twice"
    for module in library_modules():  # every module of the library lists its kernels
        assert any(n.startswith(f"{module}.") for n in names), module
    for case in cases:
        ptx = _compile(case)
        if case.name in NO_F64:
            assert ".f64" not in ptx, f"{case.name}: float64 arithmetic in a float32 kernel"
        if case.name.startswith("random.uniform"):
            assert "fma." not in ptx, f"{case.name}: a fused multiply-add breaks the spec"


def test_the_library_modules_are_the_kernel_files() -> None:
    folder = Path(__file__).resolve().parents[3] / "kiln" / "runtimes" / "numba_cuda" / "kernels"
    files = {p.stem for p in folder.glob("*.py")} - {"__init__", "arrays"}
    assert set(library_modules()) == files


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_every_unary_elementwise_op_compiles_to_ptx(dtype: str) -> None:
    """Each unary op's CUDA expression alone, at each float dtype (the rounding ops among
    them convert through int64 on a GPU, which the simulator does not show); float32
    rounding does no float64 arithmetic. (sin and cos in float32 do: numba's math.sin and
    math.cos lower through float64 there.)"""
    from kiln.ir import GraphBuilder, TensorType
    from kiln.ir.registry import OPS

    unary = sorted(name for name, op in OPS.items() if op.family == "elementwise"
                   and "unary" in op.tags and name not in ("cast", "logical_not"))
    b = GraphBuilder("unary")
    x = b.input("x", TensorType(("N", 8), dtype))
    for k, name in enumerate(unary):
        b.output(b.op(name, x), f"y{k}")
    graph, _ = compile_graph(b.build(), 0)  # one kernel per op
    cases = list(generated_kernels(graph))
    assert {"floor", "ceil", "round"} <= {c.name.split()[0] for c in cases}
    for case in cases:
        ptx = _compile(case)
        if dtype == "float32" and case.name.split()[0] in ("floor", "ceil", "round"):
            assert ".f64" not in ptx, f"{case.name}: float64 arithmetic in a float32 kernel"
