"""Measurements that need a fresh process: compile time (cold and cached) and peak memory.

`python -m benchmarks.worker compile|memory PEER MODEL [STEPS]` prints one JSON line last;
benchmarks.run starts it (with KILN_CACHE_DIR set for kiln's cold and cached runs) and reads it.
PEER is one of kiln-numba, kiln-onnxruntime, kiln-reference, torch, torch.compile, jax.
"""

from __future__ import annotations

import json
import sys
import time

from benchmarks import threads  # noqa: F401  (the package pins threads first)


def _status(field: str) -> int:
    """A size field of /proc/self/status (VmRSS, VmHWM), in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak() -> bool:
    """Restart the kernel's peak-RSS mark (VmHWM) from the current RSS; False if refused."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _import(peer: str) -> None:
    if peer.startswith("kiln"):
        import kiln  # noqa: F401
        import kiln.runtimes.numba  # noqa: F401
    elif peer.startswith("torch"):
        import torch  # noqa: F401
    elif peer == "jax":
        import jax  # noqa: F401


def _stepper(peer: str, model: str, x, y):  # noqa: ANN001, ANN202
    """A zero-argument training step of `peer` on (x, y), built (not yet called)."""
    from benchmarks.models import weights

    w = weights(model)
    if peer.startswith("kiln-"):
        from benchmarks.kiln_peer import build

        m = build(model, peer.removeprefix("kiln-"), w)
        return lambda: m.train_on_batch(x, y)
    if peer in ("torch", "torch.compile"):
        from benchmarks.torch_peer import TorchPeer

        tp = TorchPeer(model, w, x, y)
        return tp.train_compiled() if peer == "torch.compile" else tp.train_eager()
    if peer == "jax":
        from benchmarks.jax_peer import JaxPeer

        return JaxPeer(model, w, x, y).train()
    raise ValueError(f"unknown peer {peer!r}")


def compile_time(peer: str, model: str) -> dict[str, float]:
    """Seconds to import, to build the model and its first step (compile included), and the
    median of the next steps; compile = first step - median step."""
    start = time.perf_counter()
    _import(peer)
    imported = time.perf_counter()
    from benchmarks.models import SPECS, data

    x, y = data(model, SPECS[model].batch)
    built = time.perf_counter()
    step = _stepper(peer, model, x, y)
    step()
    first = time.perf_counter() - built
    steps = []
    for _ in range(7):
        t = time.perf_counter()
        step()
        steps.append(time.perf_counter() - t)
    steps.sort()
    median = steps[len(steps) // 2]
    return {"import_s": imported - start, "first_step_s": first, "step_s": median,
            "compile_s": max(0.0, first - median)}


def peak_memory(peer: str, model: str, steps: int) -> dict[str, float]:
    """RSS after imports and data, the peak RSS while building the model and training
    `steps` steps, and their difference: what training itself needs (model, compile,
    buffers).

    The peak is the kernel's VmHWM, restarted at the base where the kernel allows, so an
    import's passing peak is not counted. Not ru_maxrss: Linux keeps that across exec, so a
    worker started by a large parent would report the parent's size."""
    _import(peer)
    from benchmarks.models import SPECS, data

    x, y = data(model, SPECS[model].batch)
    import gc

    gc.collect()
    base = _status("VmRSS")
    reset = _reset_peak()
    step = _stepper(peer, model, x, y)
    for _ in range(steps):
        step()
    peak = _status("VmHWM")
    return {"rss_base_mb": base / 2**20, "peak_mb": peak / 2**20,
            "delta_mb": (peak - base) / 2**20, "steps": steps, "peak_reset_at_base": reset}


def main(argv: list[str]) -> int:
    kind, peer, model, *rest = argv
    if kind == "compile":
        result = compile_time(peer, model)
    elif kind == "memory":
        result = peak_memory(peer, model, int(rest[0]) if rest else 20)
    else:
        raise SystemExit(f"expected compile or memory. Received: {kind!r}")
    sys.stdout.flush()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
