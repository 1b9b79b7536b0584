"""Every op of the IR against every backend's lowering table: a missing lowering is a visible,
failing fact, never a silent fallback to another backend.

`python -m pytest tests/runtimes/test_completeness.py -s` prints the op-by-backend table.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from kiln.ir import OPS
from kiln.runtimes import AVAILABLE


def _reference() -> set[str]:
    # The reference runtime interprets the registry itself: its table is every reference.
    return {name for name, op in OPS.items() if op.reference is not None}


def _numba() -> set[str]:
    from kiln.compiler.codegen.numba import LOWERINGS

    return set(LOWERINGS)


def _numba_cuda() -> set[str]:
    # Launchers of ops (the "fused:gemm" entry is the fused gemm kind, not an op).
    from kiln.runtimes.numba_cuda.ops import LAUNCHERS

    return {name for name in LAUNCHERS if name in OPS}


def _onnxruntime() -> set[str]:
    from kiln.compiler.codegen.onnx import LOWERINGS

    return set(LOWERINGS)


# Each available backend's lowering table (op names it can run).
TABLES: dict[str, Callable[[], set[str]]] = {
    "reference": _reference,
    "numba": _numba,
    "numba-cuda": _numba_cuda,
    "onnxruntime": _onnxruntime,
}


def missing_ops() -> dict[str, list[str]]:
    """backend -> the ops of the IR it has no lowering for."""
    return {backend: sorted(set(OPS) - TABLES[backend]()) for backend in AVAILABLE}


def test_every_available_backend_has_a_lowering_table() -> None:
    assert sorted(set(AVAILABLE) - set(TABLES)) == []


@pytest.mark.parametrize("backend", [b for b in AVAILABLE if b in TABLES])
def test_backend_lowers_every_op(backend: str) -> None:
    missing = sorted(set(OPS) - TABLES[backend]())
    assert missing == [], f"{backend} has no lowering for {missing}"


def test_print_the_op_by_backend_table() -> None:
    backends = [b for b in AVAILABLE if b in TABLES]
    tables = {b: TABLES[b]() for b in backends}
    width = max(len(op) for op in OPS)
    print("\n" + f"{'op':<{width}}  " + "  ".join(backends))
    for op in sorted(OPS):
        marks = "  ".join(f"{'x' if op in tables[b] else '-':^{len(b)}}" for b in backends)
        print(f"{op:<{width}}  {marks}")
    for backend, ops in missing_ops().items():
        print(f"{backend} lacks: {', '.join(ops) if ops else 'nothing'}")
