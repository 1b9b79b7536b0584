"""The GPU benchmark: the MLP, convnet and LSTM training steps (RMSprop) on kiln's numba-cuda
backend, with its tiled GEMM and with cuBLAS (through CuPy), beside PyTorch CUDA eager and
torch.compile, at batch 128 and 1024; prints medians and the ratios to PyTorch eager.

Every step returns its loss to the host (kiln's train_on_batch does; the torch steps call
.item()), so each timing includes one device synchronization. Run by benchmarks/gpu.sh;
alone: PYTHONPATH=. python -m benchmarks.gpu_steps [--batches 128 1024] [--budget 240]
[--out rows.json]. "kiln (G)" is train_on_batch with GEMM G (the public API); "kiln
exe.run (G)" the executable's run on the same feed (the runtime without the frontend).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable

import numpy as np

from benchmarks.models import EPSILON, LEARNING_RATE, MODELS, RHO, data, weights


def median_step(step: Callable[[], object], warmup: int = 3, rounds: int = 7,
                block: int = 5) -> float:
    """The median over `rounds` blocks of the mean time of one call, in seconds."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(block):
            step()
        times.append((time.perf_counter() - start) / block)
    return statistics.median(times)


def torch_steps(name: str, x: np.ndarray, y: np.ndarray) -> tuple[Callable, Callable, float]:
    """(eager step, torch.compile'd step, first loss) of the torch model on CUDA."""
    import torch

    from benchmarks import torch_peer

    model = torch_peer.build(name, weights(name)).cuda()
    optimizer = torch.optim.RMSprop(model.parameters(), lr=LEARNING_RATE, alpha=RHO,
                                    eps=EPSILON)
    xt, yt = torch_peer.inputs(name, x).cuda(), torch.from_numpy(y).cuda()
    criterion = torch_peer.loss_fn(name)

    def step() -> float:
        optimizer.zero_grad(set_to_none=True)
        loss = criterion(model(xt), yt)
        loss.backward()
        optimizer.step()
        return loss

    first = float(step().item())
    compiled = torch.compile(step)
    return (lambda: step().item()), (lambda: compiled().item()), first


def kiln_steps(name: str, x: np.ndarray, y: np.ndarray,
               ) -> tuple[Callable, Callable, float, str, Callable[[], str]]:
    """(train_on_batch, the executable's run alone, first loss, the step's launches, a note
    on its launch tapes) of kiln on numba-cuda. Launches: the nodes of the optimized step
    that run kernels (views run none), and those of scan bodies, which launch once per step
    of the scan."""
    from benchmarks.kiln_peer import KilnPeer

    peer = KilnPeer(name, "numba-cuda", weights(name), x, y)
    first = peer.loss()
    try:  # the executable's internals: a note, never a reason to drop the row
        entry = peer.exe.entries["train_step"]
        nodes = entry.optimized.nodes
        body = sum(len(n.body.nodes) for n in nodes if n.op == "scan" and n.body is not None)
        launches = f"{len(nodes) - len(entry.views)} nodes" + (
            f" + {body} per scan step" if body else "")
    except (AttributeError, KeyError) as err:
        launches = f"? ({err!r})"
    return peer.train_api(), peer.train_exe(), first, launches, lambda: _tape_note(peer.exe)


def _tape_note(exe: object) -> str:
    """What the recorded tapes of the train step hold: steps, launches prepared for cuda.core
    (the rest replay numba's dispatcher), and whether a CUDA graph was captured."""
    try:
        plans = [s.plan for sets in exe.entries["train_step"].inputs.values()  # type: ignore
                 for s in sets if s.plan is not None]
        return "; ".join(
            f"tape {len(p.nodes)} steps, {p.nodes.prepared} prepared"
            + (f" (some declined: {p.nodes.declined})" if p.nodes.declined else "") + ", graph "
            + ("captured" if p.nodes.graph is not None else
               f"refused ({p.nodes.capture_failed})" if p.nodes.capture_failed else "none")
            for p in plans) or "no tape recorded"
    except (AttributeError, KeyError) as err:
        return f"? ({err!r})"


def _launch_variants(row: dict, name: str, x: np.ndarray, y: np.ndarray) -> None:
    """The executable's step with launch replay (the default), without it (every call runs
    the launchers) and with CUDA graphs (KILN_CUDA_GRAPHS=1, experimental), each on a fresh
    model from the same weights: the losses of its first six steps must agree with the
    default's (a graph that replayed anything else would differ), and the row says by how
    much."""
    trajectories = {}
    for key, env in (("kiln exe.run replay", {}),
                     ("kiln exe.run no replay", {"KILN_CUDA_REPLAY": "0"}),
                     ("kiln exe.run CUDA graphs", {"KILN_CUDA_GRAPHS": "1"})):
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            _, run, _, _, tapes = kiln_steps(name, x, y)
            trajectories[key] = np.array([float(run()["loss"]) for _ in range(6)])
            row[key] = median_step(run)
            row[f"{key}: tapes"] = tapes()
        except Exception as err:  # noqa: BLE001 - the row says why
            row[key] = f"failed: {type(err).__name__}: {err}"[:200]
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    base = trajectories.get("kiln exe.run replay")
    for key, losses in trajectories.items():
        if base is not None and key != "kiln exe.run replay":
            diff = float(np.max(np.abs(losses - base) / np.maximum(np.abs(base), 1e-30)))
            row[f"{key}: losses vs replay"] = f"max rel diff {diff:.2e}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batches", type=int, nargs="+", default=[128, 1024])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--budget", type=float, default=240.0,
                        help="seconds; torch.compile runs last, with what is left")
    parser.add_argument("--out", help="also write the rows here, as JSON")
    args = parser.parse_args()
    device = "?"
    deadline = time.monotonic() + args.budget
    try:
        import torch

        device = (torch.cuda.get_device_name() if torch.cuda.is_available()
                  else "no CUDA device visible to torch")
        print("device:", device)
    except ImportError:
        print("torch is not importable")
    try:
        import cupy  # noqa: F401

        gemms = ["kiln", "cublas"]
    except ImportError:
        gemms = ["kiln"]
        print("CuPy is not importable: the cuBLAS path is not measured")
    rows, compiled_steps = [], []
    # First kiln (both GEMMs) and torch eager everywhere, then torch.compile (slow to
    # compile) with the time left, so that the main ratio is there for every model.
    for name in args.models:
        for batch in args.batches:
            row: dict[str, float | str] = {"model": name, "batch": batch}
            rows.append(row)
            if time.monotonic() > deadline:
                row["skipped"] = "budget spent"
                continue
            x, y = data(name, batch)
            torch_loss = float("nan")
            try:
                eager, compiled, torch_loss = torch_steps(name, x, y)
                row["torch eager"] = median_step(eager)
                compiled_steps.append((row, compiled))
            except Exception as err:  # noqa: BLE001 - report and go on with kiln
                row["torch"] = f"failed: {type(err).__name__}: {err}"[:160]
            for gemm in gemms:
                os.environ["KILN_CUDA_GEMM"] = gemm
                try:
                    api, run, kiln_loss, row["kiln launches"], _ = kiln_steps(name, x, y)
                    row[f"kiln ({gemm})"] = median_step(api)
                    row[f"kiln exe.run ({gemm})"] = median_step(run)
                    if gemm == "kiln" and batch == min(args.batches):
                        _launch_variants(row, name, x, y)
                    row[f"first loss kiln ({gemm})/torch"] = f"{kiln_loss:.6g}/{torch_loss:.6g}"
                except Exception as err:  # noqa: BLE001 - the row says why
                    row[f"kiln ({gemm})"] = f"failed: {type(err).__name__}: {err}"[:200]
            print(_format(row), flush=True)
    for row, compiled in compiled_steps:
        if time.monotonic() > deadline - 30:
            row["torch.compile"] = "skipped (budget)"
            continue
        try:
            row["torch.compile"] = median_step(compiled)
        except Exception as err:  # noqa: BLE001
            row["torch.compile"] = f"failed: {type(err).__name__}: {err}"[:160]
    print("\nmedian step times, ms")
    for row in rows:
        print(_format(row))
    print("\nratios: time / torch eager time (below 1 beats eager)")
    for row in rows:
        base = row.get("torch eager")
        if not isinstance(base, float):
            continue
        ratios = {k: v / base for k, v in row.items()
                  if isinstance(v, float) and k != "torch eager"}
        print(f"  {row['model']:8s} batch {row['batch']:5d}: "
              + ", ".join(f"{k} {r:.2f}" for k, r in ratios.items()))
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"device": device, "unit": "seconds per step (median)", "rows": rows},
                      f, indent=1)
        print("rows written to", args.out)


def _format(row: dict) -> str:
    parts = [f"{row['model']} batch {row['batch']}:"]
    for key, value in row.items():
        if key in ("model", "batch"):
            continue
        parts.append(f"{key} {value * 1e3:.3f} ms" if isinstance(value, float)
                     else f"{key} {value}")
    return "  ".join(parts)


if __name__ == "__main__":
    main()
