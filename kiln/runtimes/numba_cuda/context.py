"""What a launcher of the numba-cuda backend is given to run one node: the CUDA stream, the
batch symbols' sizes, scratch device memory from a pool the executable keeps, and the
call's error flag, and the tape that records its launches for replay.

A launcher is `launch(ctx, node, inputs, outputs)`: `inputs` are device arrays holding the
node's operands, `outputs` device arrays preallocated with the node's result shapes and dtypes
(C-contiguous); it enqueues kernels through `ctx.launch` (copies through `ctx.copy`, library
calls through `ctx.call`), so that a tape can record them, and writes only `outputs` and
scratch. What it enqueues may depend on the arrays' shapes, never on their values.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from kiln.ir.graph import Node
from kiln.ir.types import TensorType, numpy_dtype
from kiln.runtimes.numba_cuda.tape import Tape

THREADS = 256  # threads per block of 1-D launches


class ScratchPool:
    """Device arrays for the temporaries of nodes, kept for the executable's life so that a
    step in steady state allocates nothing.

    Every kernel of a call runs on one stream, in launch order, so a node's temporaries are
    free for the next node as soon as its kernels are enqueued: `next_node()` (called by the
    interpreter before each launch) hands the same arrays out again. Within one node, each
    untagged request of a (shape, dtype) gets an array of its own; a tagged request gets the
    one flat buffer of its (tag, dtype), grown when too small, so a node takes at most one
    array per tag.
    """

    def __init__(self) -> None:
        self.arrays: dict[tuple, Any] = {}
        self.allocations = 0  # device arrays made so far (tests read it)
        self._taken: dict[tuple, int] = {}  # this node's untagged requests per (shape, dtype)

    def next_node(self) -> None:
        self._taken.clear()

    def take(self, stream: Any, shape: tuple[int, ...], dtype: str, tag: str | None) -> Any:
        np_dtype = numpy_dtype(dtype)
        if tag is not None:
            n = math.prod(shape)
            key: tuple = ("tag", tag, np_dtype.str)
            buffer = self.arrays.get(key)
            if buffer is None or buffer.shape[0] < n:
                buffer = self._new((max(n, 1),), np_dtype, stream)
                self.arrays[key] = buffer
            return buffer[:n].reshape(shape) if shape else buffer[:1].reshape(())
        count_key = (shape, np_dtype.str)
        k = self._taken.get(count_key, 0)
        self._taken[count_key] = k + 1
        key = ("shape", shape, np_dtype.str, k)
        if key not in self.arrays:
            self.arrays[key] = self._new(shape, np_dtype, stream)
        return self.arrays[key]

    def _new(self, shape: tuple[int, ...], dtype: Any, stream: Any) -> Any:
        from numba import cuda

        self.allocations += 1
        return cuda.device_array(shape, dtype, stream=stream)


@dataclass
class RunContext:
    """Per-call context of the numba-cuda runtime (one per entry point call)."""

    stream: Any  # numba.cuda stream
    dims: dict[str, int] = field(default_factory=dict)  # symbol -> size for this call
    # Kept by the executable across calls: compiled kernels, uploaded constants, a scan's
    # body buffers, keyed by whatever the launcher chooses (id of a node plus sizes, ...).
    memo: dict[Any, Any] = field(default_factory=dict)
    pool: ScratchPool = field(default_factory=ScratchPool)
    # A device int32[1], zero when the call starts, that kernels set to a code of
    # `error_code` when they meet a value they cannot handle (an index out of range); the
    # executable reads it when the call ends. None: nobody checks (a lone launcher's test).
    error_flag: Any = None
    # code - 1 -> (node, what was expected), shared by a call and the scans inside it
    error_sites: list[tuple[Node, str]] = field(default_factory=list)
    # Records the call's launches for replay (tape.py); None: launch without recording.
    tape: Tape | None = None

    def launch(self, kernel: Any, griddim: Any, blockdim: Any, *args: Any) -> None:
        """kernel[griddim, blockdim, stream](*args) on the call's stream (recorded on a tape)."""
        if self.tape is not None:
            self.tape.launch(kernel, griddim, blockdim, self.stream, args)
        else:
            kernel[griddim, blockdim, self.stream](*args)

    def copy(self, dst: Any, src: Any) -> None:
        """Device-to-device copy between C-contiguous 1-D arrays of one size, on the stream
        (none when they are empty)."""
        if not dst.size:
            return
        if self.tape is not None:
            self.tape.copy(dst, src, self.stream)
        else:
            dst.copy_to_device(src, stream=self.stream)

    def call(self, function: Callable[[], Any]) -> None:
        """Run `function`, which enqueues work on the call's stream (a library call)."""
        if self.tape is not None:
            self.tape.call(function)
        else:
            function()

    def shape(self, type_: TensorType) -> tuple[int, ...]:
        """The concrete shape of `type_` with this call's symbol sizes."""
        return tuple(self.dims[d] if isinstance(d, str) else int(d) for d in type_.shape)

    def empty(self, shape: Sequence[int], dtype: str, tag: str | None = None) -> Any:
        """A C-contiguous device array for one node's temporaries, valid until the next node
        starts (see ScratchPool; a launcher that runs other nodes, as scan does, must not
        hold one across them). `tag` shares one growing buffer among the nodes."""
        return self.pool.take(self.stream, tuple(int(s) for s in shape), dtype, tag)

    def error_code(self, node: Node, expected: str) -> int:
        """The code a kernel of `node` writes into `error_flag` when it fails, `expected`
        saying what it needed (e.g. "indices in [0, 10)")."""
        site = (node, expected)
        for k, (n, e) in enumerate(self.error_sites):
            if n is node and e == expected:
                return k + 1
        self.error_sites.append(site)
        return len(self.error_sites)

    @staticmethod
    def grid(n: int, threads: int = THREADS) -> tuple[int, int]:
        """(blocks, threads) covering `n` elements with one thread each (at least 1 block).
        The simulator runs each thread as a Python thread and each block in turn: there the
        grid is 2 blocks of 4 (every 1-D kernel strides over the rest of its grid)."""
        from numba import config

        if config.ENABLE_CUDASIM:
            return min(2, max(1, -(-int(n) // 4))), 4
        return max(1, -(-int(n) // threads)), threads


Launcher = Callable[[RunContext, Node, list[Any], list[Any]], None]
