"""The numba-cuda kernel launchers (ops/linalg, nn, indexing, random) against the reference
runtime: every registry sample of their ops, and the cases the samples miss (sizes that are
not multiples of the GEMM tile, transposed and broadcast operands, split-K, every fused GEMM
epilogue, 1x1 convolutions, softmax over axes that are not adjacent, out-of-range indices).

Run under the CUDA simulator (../test_simulator.py) or on a GPU (benchmarks/gpu.sh runs it
with KILN_CUDA_GEMM=kiln and =cublas); shapes stay within a few tiles.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import pytest

F64 = {"rtol": 1e-11, "atol": 1e-12}
F32 = {"rtol": 3e-5, "atol": 2e-6}
MY_OPS = ("matmul", "conv2d", "conv2d_grad_input", "conv2d_grad_filter", "max_pool2d",
          "max_pool2d_grad", "max_pool2d_select", "avg_pool2d", "avg_pool2d_grad", "softmax",
          "log_softmax", "gather", "scatter_add", "one_hot", "uniform", "normal", "bernoulli")
EXACT = {"uniform", "bernoulli", "one_hot", "gather", "max_pool2d", "max_pool2d_select"}


def _simulated() -> bool:
    from numba import cuda

    return cuda.to_device.__module__.startswith("numba.cuda.simulator")


SIM = _simulated()


# -- helpers -------------------------------------------------------------------------------
def _launchers() -> dict[str, Any]:
    from kiln.runtimes.numba_cuda.ops import indexing, linalg, nn, random

    return {**linalg.LAUNCHERS, **nn.LAUNCHERS, **indexing.LAUNCHERS, **random.LAUNCHERS}


def _context() -> Any:
    from numba import cuda

    from kiln.runtimes.numba_cuda.context import RunContext

    return RunContext(cuda.stream())


def run_node(node: Any, arrays: list[np.ndarray], inputs: list[Any] | None = None,
             ctx: Any = None) -> list[np.ndarray]:
    """The launcher of `node` on `arrays` (or on device arrays `inputs`), results on host."""
    from numba import cuda

    from kiln.ir.types import numpy_dtype

    ctx = ctx or _context()
    key = f"fused:{node.attr['kind']}" if node.op == "fused" else node.op
    dims: dict[str, int] = {}
    for v, a in zip(node.inputs, arrays, strict=True):
        for d, s in zip(v.type.shape, a.shape, strict=True):
            if isinstance(d, str):
                dims[d] = s
    ctx.dims = dims
    if inputs is None:
        inputs = [cuda.to_device(np.ascontiguousarray(a)) for a in arrays]
    outputs = [cuda.device_array(ctx.shape(o.type), numpy_dtype(o.type.dtype))
               for o in node.outputs]
    _launchers()[key](ctx, node, inputs, outputs)
    ctx.stream.synchronize()
    return [o.copy_to_host() for o in outputs]


def assert_close(got: np.ndarray, expected: np.ndarray, what: str, exact: bool = False) -> None:
    assert got.dtype == expected.dtype, f"{what}: dtype {got.dtype} != {expected.dtype}"
    assert got.shape == expected.shape, f"{what}: shape {got.shape} != {expected.shape}"
    if exact or expected.dtype.kind in "biu":
        np.testing.assert_array_equal(got, expected, err_msg=what)
    else:
        tol = F64 if expected.dtype == np.float64 else F32
        np.testing.assert_allclose(got, expected, err_msg=what, equal_nan=True, **tol)


def check_graph(graph: Any, feed: list[np.ndarray], node: Any | None = None,
                inputs: list[Any] | None = None, exact: bool = False, ctx: Any = None,
                ) -> None:
    """The graph's one kernel node through its launcher equals the reference on `feed`."""
    from kiln.runtimes.reference import run_graph

    expected, _ = run_graph(graph, feed)
    node = node or graph.nodes[-1]
    operands = {v.name: a for v, a in zip(graph.inputs, feed, strict=True)}
    got = run_node(node, [operands[v.name] for v in node.inputs], inputs, ctx)
    by_name = dict(zip((v.name for v in graph.output_values), expected.values(), strict=True))
    for out, array in zip(node.outputs, got, strict=True):
        assert_close(array, by_name[out.name], f"{node.op} %{out.name}", exact)


def graph_of(op: str, *operands: Any, **attrs: Any) -> tuple[Any, list[np.ndarray]]:
    """A one-node graph of `op` on the arrays `operands`, and its feed."""
    from kiln.ir import GraphBuilder, TensorType
    from kiln.ir.types import canonical_dtype

    b = GraphBuilder(op)
    values = [b.input(f"x{i}", TensorType(a.shape, canonical_dtype(a.dtype)))
              for i, a in enumerate(operands)]
    result = b.op(op, *values, **attrs)
    for k, v in enumerate(result if isinstance(result, tuple) else (result,)):
        b.output(v, f"y{k}")
    return b.build(), list(operands)


def rand(rng: np.random.Generator, *shape: int, dtype: Any = np.float32) -> np.ndarray:
    return rng.standard_normal(shape).astype(dtype)


# -- the tests -----------------------------------------------------------------------------
# The simulator runs the uint64 hashing of the draws on NumPy scalars, which warn on wrap.
@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
class TestKernels:
    def test_every_registry_sample_of_the_kernel_ops(self) -> None:
        from tests.ir.gradcheck import sample_graph
        from tests.ir.samples import all_samples

        samples = [s for s in all_samples() if s.op in MY_OPS]
        assert {s.op for s in samples} == set(MY_OPS)
        for sample in samples:
            graph = sample_graph(sample)
            node = next(n for n in graph.nodes if n.op == sample.op)
            check_graph(graph, list(sample.inputs), node, exact=sample.op in EXACT)

    def test_the_simulator_shared_memory_is_locked(self) -> None:
        """The tiled GEMM and softmax trees share tiles between threads: under the simulator
        they rely on intrinsics' fix of its shared-memory race, which importing any kernel
        brings in."""
        if not SIM:
            pytest.skip("a GPU has no such race")
        from numba.cuda.simulator import kernelapi

        from kiln.runtimes.numba_cuda.kernels import gemm  # noqa: F401

        assert kernelapi.FakeCUDAShared.array.__module__ == \
            "kiln.runtimes.numba_cuda.intrinsics"

    def test_matmul_sizes_off_the_tile_and_float64(self) -> None:
        rng = np.random.default_rng(0)
        for m, k, n, dtype in ((65, 17, 3, np.float32), (3, 40, 66, np.float64),
                               (1, 1, 1, np.float32), (4, 0, 5, np.float64)):
            check_graph(*graph_of("matmul", rand(rng, m, k, dtype=dtype),
                                  rand(rng, k, n, dtype=dtype)))

    def test_matmul_reads_transposed_operands_in_place(self) -> None:
        from numba import cuda

        rng = np.random.default_rng(1)
        for dtype in (np.float32, np.float64):
            xt, yt = rand(rng, 9, 6, dtype=dtype), rand(rng, 5, 9, dtype=dtype)
            graph, feed = graph_of("matmul", xt.T.copy(), yt.T.copy())
            check_graph(graph, feed, inputs=[cuda.to_device(xt).T, cuda.to_device(yt).T])

    def test_batched_matmul_with_broadcasts_that_do_not_merge(self) -> None:
        rng = np.random.default_rng(2)
        check_graph(*graph_of("matmul", rand(rng, 2, 1, 3, 4), rand(rng, 3, 4, 5)))
        check_graph(*graph_of("matmul", rand(rng, 3, 4), rand(rng, 2, 3, 4, 2)))

    def test_split_k(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from kiln.runtimes.numba_cuda.ops import linalg

        monkeypatch.setenv("KILN_CUDA_GEMM", "kiln")  # split-K is the tiled kernel's
        monkeypatch.setattr(linalg, "SPLIT_K_MIN", 16)
        monkeypatch.setattr(linalg, "SPLIT_K_DEPTH", 16)
        splits = []
        epilogue = linalg._epilogue
        monkeypatch.setattr(linalg, "_epilogue", lambda ctx, kernels, part, n, *rest: (
            splits.append(n), epilogue(ctx, kernels, part, n, *rest)))
        rng = np.random.default_rng(3)
        check_graph(*graph_of("matmul", rand(rng, 3, 70), rand(rng, 70, 4)))
        check_graph(*graph_of("matmul", rand(rng, 2, 3, 40, dtype=np.float64),
                              rand(rng, 40, 2, dtype=np.float64)))
        epilogue_graph, feed = _dense(rng, "tanh", keep=("pre",), k=50)
        check_graph(epilogue_graph, feed)
        assert splits == [5, 3, 4], splits  # K slices of 16 (70 -> 5 of them)

    def test_the_cublas_path_with_numpy_standing_in_for_cupy(
            self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Under the simulator, np.matmul plays cuBLAS, to check what surrounds the call:
        the product's buffer, then the epilogue kernel. On a GPU, KILN_CUDA_GEMM=cublas
        runs this whole file on real cuBLAS instead (benchmarks/gpu.sh)."""
        import contextlib
        import types

        from kiln.runtimes.numba_cuda.ops import linalg

        if not SIM:
            pytest.skip("on a device the other tests take the cuBLAS path for real")
        calls = []

        def matmul(x: np.ndarray, y: np.ndarray, out: np.ndarray) -> None:
            calls.append((x.shape, y.shape))
            np.matmul(x, y, out=out)

        stream = types.SimpleNamespace(ExternalStream=lambda ptr: contextlib.nullcontext())
        monkeypatch.setitem(sys.modules, "cupy",
                            types.SimpleNamespace(matmul=matmul, cuda=stream))
        monkeypatch.setattr(linalg, "_cupy_array", lambda cp, array: array._ary)
        monkeypatch.setattr(linalg, "is_simulated", lambda array: False)
        monkeypatch.setenv("KILN_CUDA_GEMM", "cublas")
        rng = np.random.default_rng(10)
        for act, keep in (("sigmoid", ()), ("relu", ("product", "pre")), (None, ())):
            check_graph(*_dense(rng, act, keep))
        check_graph(*graph_of("matmul", rand(rng, 2, 1, 3, 4), rand(rng, 3, 4, 5)))
        assert len(calls) == 4, calls

    @pytest.mark.parametrize("act", ["relu", "sigmoid", "tanh", "elu", "selu", "softplus",
                                     "exp", None])
    def test_fused_gemm_epilogues(self, act: str | None) -> None:
        rng = np.random.default_rng(4)
        for keep in ((), ("product", "pre")):
            graph, feed = _dense(rng, act, keep)
            check_graph(graph, feed)

    def test_fused_gemm_with_a_scalar_bias_a_full_bias_and_no_bias(self) -> None:
        from kiln.compiler.passes.fuse_gemm_epilogue import fuse_gemm_epilogue
        from kiln.ir import GraphBuilder, TensorType

        rng = np.random.default_rng(5)
        for bias in ("scalar", "full", None):
            b = GraphBuilder("dense")
            x = b.input("x", TensorType((4, 6), "float64"))
            w = b.input("w", TensorType((6, 5), "float64"))
            feed = [rand(rng, 4, 6, dtype=np.float64), rand(rng, 6, 5, dtype=np.float64)]
            y = b.matmul(x, w)
            if bias == "scalar":
                y = b.add(b.constant(0.5, "float64"), y)
            elif bias == "full":
                full = b.input("c", TensorType((4, 5), "float64"))
                feed.append(rand(rng, 4, 5, dtype=np.float64))
                y = b.add(full, y)
            b.output(b.elu(y, alpha=0.7), "y")
            graph = b.build()
            fused = fuse_gemm_epilogue(graph)
            node = next(n for n in fused.nodes if n.op == "fused")
            check_graph(graph, feed, node)

    def test_pointwise_convolution_and_its_gradients(self) -> None:
        rng = np.random.default_rng(6)
        x, w, dy = rand(rng, 2, 3, 4, 5), rand(rng, 1, 1, 5, 3), rand(rng, 2, 3, 4, 3)
        check_graph(*graph_of("conv2d", x, w))
        check_graph(*graph_of("conv2d_grad_input", dy, w, input_size=(3, 4)))
        check_graph(*graph_of("conv2d_grad_filter", x, dy, kernel_size=(1, 1)))

    def test_convolution_float32_with_strides_dilation_and_transposed_reads(self) -> None:
        rng = np.random.default_rng(7)
        x, w = rand(rng, 2, 7, 6, 3), rand(rng, 3, 2, 3, 4)
        attrs = {"strides": (2, 1), "padding": "same", "dilation": (1, 2)}
        ctx = _context()  # one context: the three share (and regrow) the patch scratch
        graph, feed = graph_of("conv2d", x[:1], w, **attrs)
        check_graph(graph, feed, ctx=ctx)
        graph, feed = graph_of("conv2d", x, w, **attrs)
        check_graph(graph, feed, ctx=ctx)
        dy = rand(rng, *graph.output_values[0].type.shape)
        check_graph(*graph_of("conv2d_grad_input", dy, w, input_size=(7, 6), **attrs), ctx=ctx)
        check_graph(*graph_of("conv2d_grad_filter", x, dy, kernel_size=(3, 2), **attrs),
                    ctx=ctx)
        tagged = [key for key in ctx.pool.arrays if key[0] == "tag"]
        assert [key[1] for key in tagged] == ["patches"]  # one buffer, grown to the largest

    def test_pooling_with_nans_and_ties(self) -> None:
        x = np.zeros((1, 4, 4, 2))
        x[0, 1, 1, 0] = np.nan
        x[0, 2:, 2:, 1] = 1.0  # a tie in one window: the first maximum takes the gradient
        dy = np.arange(8.0).reshape(1, 2, 2, 2)
        check_graph(*graph_of("max_pool2d", x))
        check_graph(*graph_of("max_pool2d_grad", x, dy))
        check_graph(*graph_of("max_pool2d_select", x, x + 1.0, pool_size=(3, 3),
                              strides=(1, 1), padding="same"), exact=True)

    def test_softmax_over_axes_that_are_not_adjacent_and_long_rows(self) -> None:
        rng = np.random.default_rng(8)
        x = rand(rng, 2, 3, 4)
        for op in ("softmax", "log_softmax"):
            check_graph(*graph_of(op, x, axis=(0, 2)))
            check_graph(*graph_of(op, rand(rng, 3, 70, dtype=np.float64), axis=-1))
        x[0, 1, 2] = np.nan
        check_graph(*graph_of("softmax", x, axis=1))

    def test_indexing_off_the_samples(self) -> None:
        rng = np.random.default_rng(9)
        table = rand(rng, 7, 3)
        ids = np.array([[6, 0, 0], [2, 6, 1]], np.int32)
        check_graph(*graph_of("gather", table, ids), exact=True)
        check_graph(*graph_of("scatter_add", rand(rng, 2, 3, 3), ids, axis=0, size=7))
        check_graph(*graph_of("scatter_add", np.arange(6, dtype=np.int64).reshape(2, 3),
                              np.array([1, 1, 0]), axis=1, size=2))
        check_graph(*graph_of("one_hot", np.array([[3, -1], [0, 9]]), depth=4, axis=1,
                              dtype="bool"))

    def test_an_index_out_of_range_sets_the_error_flag(self) -> None:
        from numba import cuda

        graph, feed = graph_of("gather", np.ones((3, 2)), np.array([0, 3]))
        ctx = _context()
        ctx.error_flag = cuda.to_device(np.zeros(1, np.int32))
        got = run_node(graph.nodes[-1], feed, ctx=ctx)[0]
        assert ctx.error_flag.copy_to_host()[0] == 1  # the code of the context's first site
        assert ctx.error_sites == [(graph.nodes[-1], "indices in [0, 3)")]
        np.testing.assert_array_equal(got, [[1.0, 1.0], [0.0, 0.0]])

    def test_random_draws_match_the_spec_bit_for_bit(self) -> None:
        from kiln.ir.ops.random import uniform_draw

        key = np.array(0, np.int64)
        graph, feed = graph_of("uniform", key, shape=(2, 3), dtype="float64")
        check_graph(graph, feed, exact=True)
        # SplitMix64's published first output for seed 0 is 0xE220A8397B1DCDAF.
        first = run_node(graph.nodes[-1], feed)[0].reshape(-1)[0]
        assert first == (0xE220A8397B1DCDAF >> 11) * 2.0**-53
        key = np.array(-5, np.int64)
        for op, attrs in (("uniform", {"low": -1.0, "high": 2.5, "stream": 7}),
                          ("bernoulli", {"p": 0.25, "stream": 2**62}),
                          ("normal", {"mean": 0.5, "stddev": 2.0, "dtype": "float64"})):
            check_graph(*graph_of(op, key, shape=(3, 5), **attrs), exact=op != "normal")
        assert np.array_equal(uniform_draw(key, 7, (15,), -1.0, 2.5, "float32"),
                              run_node(graph_of("uniform", key, shape=(15,), low=-1.0,
                                                high=2.5, stream=7)[0].nodes[-1], [key])[0])


def _dense(rng: np.random.Generator, act: str | None, keep: tuple[str, ...] = (),
           k: int = 7) -> tuple[Any, list[np.ndarray]]:
    """x @ w + b, then `act`, fused by fuse_gemm_epilogue; `keep` names the intermediate
    results (product, pre) that the graph also outputs."""
    from kiln.compiler.passes.fuse_gemm_epilogue import fuse_gemm_epilogue
    from kiln.ir import GraphBuilder, TensorType

    b = GraphBuilder("dense")
    x = b.input("x", TensorType(("N", k), "float32"))
    w = b.input("w", TensorType((k, 5), "float32"))
    bias = b.input("b", TensorType((5,), "float32"))
    product = b.matmul(x, w)
    pre = b.add(product, bias)
    out = getattr(b, act)(pre) if act else pre
    b.output(out, "y")
    for name, value in (("product", product), ("pre", pre)):
        if name in keep and value is not out:
            b.output(value, name)
    graph = b.build()
    fused = fuse_gemm_epilogue(graph)
    assert [n.op for n in fused.nodes] == ["fused"], fused
    # The fused graph computes the same outputs: compare its node against the reference.
    feed = [rand(rng, 6, k), rand(rng, k, 5), rand(rng, 5)]
    return fused, feed
