"""The one benchmark command: `python -m benchmarks.run [--quick] [--only ...] [--peers ...]`.

Runs, in this process, the training steps of the MLP, convnet, LSTM, separable convnet,
transformer encoder and augmented convnet and the inference latency of the MLP and convnet on
kiln's backends beside PyTorch eager, torch.compile, JAX jit and onnxruntime on a torch
export, after checking they compute the same thing; the fit loop overhead; then compile time
and peak memory in fresh subprocesses. Writes benchmarks/results/latest.json and latest.md
and prints the tables.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import common, report, threads
from benchmarks.models import MODELS, SPECS, blas_floor, data, weights

SECTIONS = ("train", "infer", "fit", "compile", "memory")
PROFILE_ROWS = 5  # the slowest nodes and ops of kiln-numba's step kept per train model
PEERS = ("kiln-numba", "kiln-onnxruntime", "kiln-reference", "torch", "torch.compile", "jax",
         "onnxruntime-export")
ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "benchmarks" / "results"
COMPILE_LIMIT_S = 300  # a first call slower than this is reported as a failure


class Run:
    """The state of one benchmark run: what is selected, the plan, and what was measured."""

    def __init__(self, args: argparse.Namespace):
        self.plan = common.QUICK if args.quick else common.FULL
        tokens = [t for t in (args.only or "").split(",") if t]
        unknown = [t for t in tokens if t not in SECTIONS + MODELS]
        if unknown:
            raise SystemExit(f"--only: expected sections {SECTIONS} or models {MODELS}. "
                             f"Received: {unknown}")
        self.sections = [s for s in SECTIONS if s in tokens] or list(SECTIONS)
        self.models = [m for m in MODELS if m in tokens] or list(MODELS)
        wanted = [p for p in (args.peers or "").split(",") if p] or list(PEERS)
        bad = [p for p in wanted if p not in PEERS]
        if bad:
            raise SystemExit(f"--peers: expected names from {PEERS}. Received: {bad}")
        self.installed = _installed()
        self.peers = []
        self.notes: list[str] = []
        for p in wanted:
            missing = _requires(p, self.installed)
            if missing:
                self.notes.append(f"{p}: skipped, {missing} not installed")
            else:
                self.peers.append(p)
        self.quick = args.quick
        self.results: dict[str, Any] = {"measurements": {}, "correctness": {}, "notes": self.notes}

    def note(self, text: str) -> None:
        print(f"  note: {text}", flush=True)
        self.notes.append(text)

    def record(self, key: str, stats: dict[str, dict[str, float]], errors: dict[str, str],
               **extra: Any) -> None:
        for peer, err in errors.items():
            self.note(f"{key}: {peer} failed: {err}")
        self.results["measurements"][key] = {"unit": "s", "peers": stats, **extra}
        print(report.stats_lines(key, stats), flush=True)


def _installed() -> dict[str, bool]:
    out = {}
    for module in ("torch", "jax", "onnxruntime", "onnxscript"):
        try:
            __import__(module)
            out[module] = True
        except Exception:  # noqa: BLE001 - a broken install is as good as a missing one
            out[module] = False
    return out


def _requires(peer: str, installed: dict[str, bool]) -> str | None:
    needs = {"torch": ["torch"], "torch.compile": ["torch"], "jax": ["jax"],
             "onnxruntime-export": ["torch", "onnxruntime"],
             "kiln-onnxruntime": ["onnxruntime"]}.get(peer, [])
    missing = [m for m in needs if not installed[m]]
    return ", ".join(missing) or None


class _Timeout(Exception):
    pass


def _timed_first_call(fn: Any, limit: float) -> tuple[Any, float]:
    """Call fn once under an alarm of `limit` seconds; returns (result, seconds)."""
    def alarm(signum: int, frame: Any) -> None:
        raise _Timeout(f"first call took longer than {limit:.0f} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(int(limit))
    start = time.perf_counter()
    try:
        return fn(), time.perf_counter() - start
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# -- one model: correctness, training steps, inference -----------------------------------
def bench_model(run: Run, name: str) -> None:
    spec = SPECS[name]
    print(f"\n== {name} ==", flush=True)
    w = weights(name)
    x, y = data(name, spec.batch)
    infer = "infer" in run.sections and name in ("mlp", "convnet")
    batches = {1: data(name, 1, seed=3)[0], 128: data(name, 128, seed=4)[0]}
    probe = data(name, 8, seed=5)[0]
    peers: dict[str, Any] = {}
    timed = "train" in run.sections or infer  # else only fit runs: kiln alone is needed
    # The reference runtime is the yardstick of the correctness checks on every model; its
    # step is timed on the MLP only (it is NumPy, op by op: a baseline, not a contender).
    backends = ["numba", "onnxruntime", "reference"]
    for backend in backends if timed else ["numba", "onnxruntime"]:
        if f"kiln-{backend}" in run.peers:
            try:
                from benchmarks.kiln_peer import KilnPeer

                peers[f"kiln-{backend}"] = KilnPeer(name, backend, w, x, y,
                                                    tuple(batches.values()) if infer else ())
            except Exception as err:  # noqa: BLE001
                run.note(f"{name}: kiln-{backend} could not build: {type(err).__name__}: {err}")
    if timed and {"torch", "torch.compile", "onnxruntime-export"} & set(run.peers):
        from benchmarks.torch_peer import TorchPeer

        peers["torch"] = TorchPeer(name, w, x, y)
        if "torch.compile" in run.peers:
            peers["torch.compile"] = TorchPeer(name, w, x, y)
    if timed and "jax" in run.peers:
        from benchmarks.jax_peer import JaxPeer

        peers["jax"] = JaxPeer(name, w, x, y)
    session = None
    if "onnxruntime-export" in run.peers and infer:
        try:
            session, exporter = peers["torch"].onnx_session()
            run.results.setdefault("exporter", {})[name] = exporter
        except Exception as err:  # noqa: BLE001
            run.note(f"{name}: torch.onnx.export failed: {type(err).__name__}: {err}"[:400])

    check_predictions(run, name, peers, session, probe)
    if "train" in run.sections:
        bench_train(run, name, peers)
    if infer:
        bench_infer(run, name, peers, session, batches)
    if "fit" in run.sections and name == "mlp":
        bench_fit(run, peers)


def check_predictions(run: Run, name: str, peers: dict[str, Any], session: Any,
                      x: np.ndarray) -> None:
    """Every framework's predictions on the same 8 samples from the same weights: they must
    agree to 1e-4 (kiln's reference runtime, else the first peer, is the yardstick)."""
    outputs = {}
    for peer, obj in peers.items():
        try:
            outputs[peer] = np.asarray(obj.predict(x), np.float64)
        except Exception as err:  # noqa: BLE001
            run.note(f"{name}: {peer} predict failed: {type(err).__name__}: {err}")
    if session is not None:
        from benchmarks.torch_peer import onnx_call

        outputs["onnxruntime-export"] = np.asarray(onnx_call(session, name, x)()[0], np.float64)
        imported = _imported_call(run, name, peers, x)
        if imported is not None:
            call, output = imported
            outputs["kiln-numba (onnx import)"] = np.asarray(call()[output], np.float64)
    base = "kiln-reference" if "kiln-reference" in outputs else next(iter(outputs), None)
    diffs = {p: float(np.max(np.abs(o - outputs[base]))) for p, o in outputs.items()}
    run.results["correctness"][f"predict/{name}"] = {"against": base, "max_abs_diff": diffs}
    bad = {p: d for p, d in diffs.items() if not d <= 1e-4}
    print(f"  predictions vs {base}: max |diff| " +
          ", ".join(f"{p} {d:.1e}" for p, d in diffs.items()), flush=True)
    if bad:
        run.note(f"{name}: predictions differ from {base} by more than 1e-4: {bad}")


def bench_train(run: Run, name: str, peers: dict[str, Any]) -> None:
    """First call of every step (the loss, checked equal; the compile time of the jitted
    ones), then the interleaved timing."""
    calls: dict[str, Any] = {}
    for key, obj in peers.items():
        if key.startswith("kiln-"):
            calls[f"{key} (train_on_batch)"] = obj.train_api()
            calls[f"{key} (exe.run)"] = obj.train_exe()
        elif key == "torch":
            if "torch" in run.peers:
                calls["torch eager"] = obj.train_eager()
        elif key == "torch.compile":
            calls["torch.compile"] = obj.train_compiled()
        elif key == "jax":
            calls["jax jit"] = obj.train()
    losses, first = {}, {}
    for label in list(calls):
        if label.endswith("(exe.run)") or label.endswith("(driver)"):
            continue  # the same step as the (train_on_batch) one: its first loss is enough
        try:
            value, seconds = _timed_first_call(calls[label], COMPILE_LIMIT_S)
            # every step returns its loss (a torch tensor still attached to its graph)
            losses[label] = float(value.detach() if hasattr(value, "detach") else value)
            first[label] = seconds
        except Exception as err:  # noqa: BLE001 - torch.compile failing is a result
            run.note(f"train/{name}: {label} first call failed: {type(err).__name__}: "
                     f"{err}"[:400])
            del calls[label]
    if "kiln-numba" in peers:  # after the first losses: recording its arguments runs a step
        try:
            calls["kiln-numba (driver)"] = peers["kiln-numba"].train_driver()
        except Exception as err:  # noqa: BLE001
            run.note(f"{name}: kiln-numba driver call unavailable: {err}")
    base = next((k for k in losses if k.startswith("kiln-reference")), next(iter(losses), None))
    if name != "mlp":
        calls = {k: v for k, v in calls.items() if not k.startswith("kiln-reference")}
    if base is not None:
        rel = {k: abs(v - losses[base]) / max(abs(losses[base]), 1e-12) for k, v in losses.items()}
        run.results["correctness"][f"train/{name}"] = {"against": base, "losses": losses,
                                                       "rel_diff": rel}
        print("  first-step loss: " + ", ".join(f"{k} {v:.6f}" for k, v in losses.items()),
              flush=True)
        bad = {k: r for k, r in rel.items() if not r <= 1e-4}
        if bad:
            run.note(f"train/{name}: first-step losses differ from {base} by more than 1e-4 "
                     f"(relative): {bad}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stats, errors = common.measure(calls, run.plan["step"])
    floor = blas_floor(name, SPECS[name].batch)
    run.record(f"train/{name}", stats, errors, first_call_s=first, blas_floor=floor,
               kiln_profile=_kiln_profile(run, name, peers))


def _kiln_profile(run: Run, name: str, peers: dict[str, Any]) -> dict | None:
    """Where kiln-numba's step goes (exe.profile after the timing: its timed driver compiles
    first), its slowest nodes and ops; None without kiln-numba or when profiling fails."""
    if "kiln-numba" not in peers:
        return None
    plan = run.plan["step"]
    try:
        found = peers["kiln-numba"].profile(repeats=plan.rounds * plan.block,
                                            warmup=plan.warmup)
    except Exception as err:  # noqa: BLE001
        run.note(f"train/{name}: kiln-numba profile failed: {type(err).__name__}: {err}"[:400])
        return None
    data = found.as_dict()
    slowest = sorted(data["nodes"], key=lambda r: -r["seconds"])[:PROFILE_ROWS]
    return {"call_seconds": data["call_seconds"], "timed_seconds": data["timed_seconds"],
            "nodes": [{k: r[k] for k in ("op", "line", "seconds")} for r in slowest],
            "by_op": data["by_op"][:PROFILE_ROWS],
            "total_seconds": sum(r["seconds"] for r in data["nodes"])}


def bench_infer(run: Run, name: str, peers: dict[str, Any], session: Any,
                batches: dict[int, np.ndarray]) -> None:
    for size, xb in batches.items():
        calls: dict[str, Any] = {}
        for key, obj in peers.items():
            if key in ("kiln-numba", "kiln-onnxruntime"):  # the reference is no contender
                calls[f"{key} (predict_on_batch)"] = obj.predict_api(xb)
                calls[f"{key} (exe.run)"] = obj.predict_exe(xb)
                if key == "kiln-numba":
                    try:
                        calls[f"{key} (driver)"] = obj.predict_driver(xb)
                    except Exception as err:  # noqa: BLE001
                        run.note(f"{name}: kiln-numba predict driver unavailable: {err}")
            elif key == "torch" and "torch" in run.peers:
                calls["torch eager"] = obj.predict_eager(xb)
            elif key == "torch.compile":
                fn = obj.predict_compiled(xb)
                try:
                    _timed_first_call(fn, COMPILE_LIMIT_S)
                    calls["torch.compile"] = fn
                except Exception as err:  # noqa: BLE001
                    run.note(f"infer/{name}/b{size}: torch.compile failed: "
                             f"{type(err).__name__}: {err}"[:400])
            elif key == "jax":
                calls["jax jit"] = obj.predict_jit(xb)
        if session is not None:
            from benchmarks.torch_peer import onnx_call

            calls["onnxruntime (torch export)"] = onnx_call(session, name, xb)
            imported = _imported_call(run, name, peers, xb)
            if imported is not None:
                calls["kiln-numba (onnx import)"] = imported[0]
        stats, errors = common.measure(calls, run.plan["latency"])
        run.record(f"infer/{name}/b{size}", stats, errors)


def _imported_call(run: Run, name: str, peers: dict[str, Any], x: np.ndarray) -> Any:
    """(one exe.run of kiln's numba import of the ONNX file onnxruntime runs, on x given in
    kiln's layout and fed in the export's; its output's name), or None, with a note, when
    the import fails."""
    if "kiln-numba" not in run.peers or not hasattr(peers.get("torch"), "onnx_bytes"):
        return None
    from benchmarks.kiln_peer import imported_onnx_call
    from benchmarks.torch_peer import inputs

    try:
        return imported_onnx_call(peers["torch"].onnx_bytes, inputs(name, x).numpy())
    except Exception as err:  # noqa: BLE001
        run.note(f"{name}: kiln could not import the torch export: {type(err).__name__}: "
                 f"{err}"[:400])
        return None


def bench_fit(run: Run, peers: dict[str, Any]) -> None:
    """One epoch of fit on 60,000 samples against the same number of compiled steps run in
    a plain loop, the two interleaved in rounds (and against steps x the median step)."""
    spec = SPECS["mlp"]
    n = 60000
    xs, ys = data("mlp", n, seed=6)
    steps = -(-n // spec.batch)
    out: dict[str, Any] = {}
    for key in ("kiln-numba", "kiln-onnxruntime"):
        if key not in peers:
            continue
        obj = peers[key]
        step_fn = obj.train_exe()

        def loop(step_fn: Any = step_fn) -> None:
            for _ in range(steps):
                step_fn()

        stats, errors = common.measure({"fit": obj.fit(xs, ys, spec.batch), "loop": loop},
                                       run.plan["fit"])
        step_stats, step_errors = common.measure({f"{key} (exe.run)": step_fn,
                                                  f"{key} (train_on_batch)": obj.train_api()},
                                                 run.plan["step"])
        for err in (*errors.values(), *step_errors.values()):
            run.note(f"fit/mlp: {key}: {err}")
        if errors or step_errors:
            continue
        epoch, looped = stats["fit"]["median"], stats["loop"]["median"]
        step = step_stats[f"{key} (exe.run)"]["median"]
        out[key] = {"epoch_s": stats["fit"], "loop_s": stats["loop"], "steps": steps,
                    "step_exe_run_s": step_stats[f"{key} (exe.run)"],
                    "step_train_on_batch_s": step_stats[f"{key} (train_on_batch)"],
                    "ratio": epoch / looped, "ratio_median_step": epoch / (steps * step)}
        print(f"  fit/mlp {key}: epoch {epoch:.3f} s, {steps} steps in a loop {looped:.3f} s "
              f"(ratio {epoch / looped:.3f}); {steps} x median step {step * 1e3:.3f} ms = "
              f"{steps * step:.3f} s (ratio {epoch / (steps * step):.3f})", flush=True)
    run.results["measurements"]["fit/mlp"] = {"unit": "s", "fit": out}


# -- subprocess measurements -------------------------------------------------------------
def _worker(args: list[str], env: dict[str, str] | None = None,
            timeout: float = 600) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-m", "benchmarks.worker", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip()
                           else f"exit status {proc.returncode}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench_compile(run: Run) -> None:
    print("\n== compile (fresh processes) ==", flush=True)
    for name in run.models:
        out: dict[str, Any] = {}
        with tempfile.TemporaryDirectory(prefix="kiln-bench-cache-") as cache:
            for peer in ("kiln-numba", "kiln-onnxruntime", "jax", "torch.compile"):
                if peer not in run.peers:
                    continue
                runs = ("cold", "cached") if peer == "kiln-numba" else ("cold",)
                for which in runs:
                    try:
                        # fresh caches for kiln and for torch.compile's inductor, which
                        # would otherwise reuse what this process compiled
                        out[f"{peer} ({which})"] = _worker(
                            ["compile", peer, name],
                            {"KILN_CACHE_DIR": cache,
                             "TORCHINDUCTOR_CACHE_DIR": os.path.join(cache, "inductor")})
                    except Exception as err:  # noqa: BLE001
                        run.note(f"compile/{name}: {peer} ({which}) failed: {err}"[:400])
        run.results["measurements"][f"compile/{name}"] = {"unit": "s", "compile": out}
        for label, r in out.items():
            print(f"  compile/{name} {label}: compile {r['compile_s']:.3f} s (first step "
                  f"{r['first_step_s']:.3f} s, import {r['import_s']:.3f} s)", flush=True)


def bench_memory(run: Run) -> None:
    print("\n== peak memory, MLP training (fresh processes) ==", flush=True)
    out: dict[str, Any] = {}
    steps = 5 if run.quick else 20
    for peer in ("kiln-numba", "kiln-onnxruntime", "torch", "torch.compile", "jax"):
        if peer not in run.peers:
            continue
        try:
            out[peer] = _worker(["memory", peer, "mlp", str(steps)])
            r = out[peer]
            print(f"  memory/mlp {peer}: peak {r['peak_mb']:.1f} MB - base {r['rss_base_mb']:.1f}"
                  f" MB = {r['delta_mb']:.1f} MB", flush=True)
        except Exception as err:  # noqa: BLE001
            run.note(f"memory/mlp: {peer} failed: {err}"[:400])
    run.results["measurements"]["memory/mlp"] = {"unit": "MB", "memory": out}


def render(out: Path) -> int:
    """Rewrite latest.md (and the README's table, for the default folder) from latest.json."""
    results = json.loads((out / "latest.json").read_text())
    results["ratios"] = report.ratios(results["measurements"])
    results["targets"] = report.targets(results["measurements"])
    (out / "latest.json").write_text(json.dumps(results, indent=1, default=float) + "\n")
    (out / "latest.md").write_text(report.markdown(results))
    print(f"rewrote {out / 'latest.md'}")
    if out.resolve() == DEFAULT_OUT.resolve() and "--quick" not in results.get("command", ""):
        if report.update_readme(ROOT / "benchmarks" / "README.md", results):
            print("updated the table in benchmarks/README.md")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="few repeats: a smoke run")
    parser.add_argument("--only", help=f"comma list of sections {SECTIONS} and/or models "
                                       f"{MODELS} (default: all)")
    parser.add_argument("--peers", help=f"comma list from {PEERS} (default: all installed)")
    parser.add_argument("--out", default=str(DEFAULT_OUT),
                        help="folder for latest.json and latest.md")
    parser.add_argument("--render", action="store_true",
                        help="measure nothing: recompute ratios and targets from the results "
                             "folder's latest.json and rewrite latest.md (and the README table)")
    args = parser.parse_args(argv)
    if args.render:
        return render(Path(args.out))
    run = Run(args)
    run.results["machine"] = common.machine()
    run.results["threads"] = threads.settings()
    run.results["plan"] = {k: vars(v) for k, v in run.plan.items()}
    run.results["command"] = "python -m benchmarks.run " + " ".join(argv or sys.argv[1:])
    print(f"benchmarks: sections {run.sections}, models {run.models}, peers {run.peers}, "
          f"{'quick' if run.quick else 'full'} plan; {threads.THREADS} threads", flush=True)
    for text in run.notes:
        print(f"  note: {text}")
    started = time.perf_counter()
    if {"train", "infer", "fit"} & set(run.sections):
        for name in run.models:
            bench_model(run, name)
    if "compile" in run.sections:
        bench_compile(run)
    if "memory" in run.sections and "mlp" in run.models:
        bench_memory(run)
    run.results["wall_s"] = time.perf_counter() - started
    after = common.machine()  # after imports: the versions and BLAS libraries loaded
    run.results["machine"].update(versions=after["versions"], blas=after["blas"])
    run.results["ratios"] = report.ratios(run.results["measurements"])
    run.results["targets"] = report.targets(run.results["measurements"])
    markdown = report.markdown(run.results)
    print("\n" + markdown)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "latest.json").write_text(json.dumps(run.results, indent=1, default=float) + "\n")
    (out / "latest.md").write_text(markdown)
    print(f"wrote {out / 'latest.json'} and {out / 'latest.md'}")
    if not args.quick and out.resolve() == DEFAULT_OUT.resolve():
        if report.update_readme(ROOT / "benchmarks" / "README.md", run.results):
            print("updated the table in benchmarks/README.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
