"""The `kiln` command line end to end, through subprocess as a user runs it: compile a model
script, info, run, train, run again, the IR in every format and stage, recompiling for
onnxruntime and running on numba (same outputs as the reference), the kernel cache, and user
errors (one `kiln: error:` line on stderr, non-zero status, no traceback). One compiled
artifact is shared by the module; a few checks of parsing and messages run in-process.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from kiln.compiler.artifact import read_artifact
from kiln.ir import parse
from kiln.tools.cli import main

MODEL_SCRIPT = Path(__file__).parent / "data" / "mlp_model.py"


def _command() -> list[str]:
    exe = shutil.which("kiln")
    return [exe] if exe else [sys.executable, "-m", "kiln.tools"]


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """A work folder with data, the model script compiled for the reference backend (with IR
    dumps), and `kiln(*args)` running the command there."""
    work = tmp_path_factory.mktemp("kiln_cli")
    env = {**os.environ, "KILN_CACHE_DIR": str(work / "cache"), "KILN_BACKEND": "reference"}

    def kiln(*args: object, extra_env: dict[str, str] | None = None,
             ) -> subprocess.CompletedProcess:
        return subprocess.run([*_command(), *map(str, args)], cwd=work, capture_output=True,
                              text=True, timeout=300, env={**env, **(extra_env or {})})

    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 4)).astype(np.float32)
    y = ((x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0)).astype(np.int64)
    np.save(work / "x.npy", x)
    np.savez(work / "data.npz", x=x, y=y)
    compiled = kiln("compile", MODEL_SCRIPT, "-o", "model.kiln", "--backend", "reference",
                    "--dump-ir", "dumps", "--dump-ir-after", "fuse_elementwise,plan_buffers")
    assert compiled.returncode == 0, compiled.stderr
    return SimpleNamespace(work=work, kiln=kiln, x=x, y=y, compiled=compiled,
                           artifact=work / "model.kiln")


def assert_user_error(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    """A non-zero exit with exactly one `kiln: error:` line on stderr holding `fragments`."""
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kiln: error: "), proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def _predict(path: Path, x: np.ndarray) -> np.ndarray:
    from kiln.models import load_model

    return load_model(path).predict(x, verbose=0)


# -- compile, info ---------------------------------------------------------------------------
def test_compile_prints_a_summary_and_writes_the_dumps(cli: SimpleNamespace) -> None:
    out = cli.compiled.stdout
    assert "for reference at -O2" in out
    assert "predict(features (None, 4) float32) -> (probs (None, 3) float32)" in out
    assert "train_step(" in out and "test_step(" in out
    assert "parameters  67 " in out and "wrote model.kiln" in out
    artifact = read_artifact(cli.artifact)
    assert artifact.backend == "reference" and artifact.compile_options == {"level": 2}
    assert set(artifact.entries) == {"predict", "train_step", "test_step"}
    for entry in artifact.entries:
        names = sorted(p.name for p in (cli.work / "dumps" / entry).iterdir())
        assert names == ["00-input.kir", "01-after-fuse_elementwise.kir",
                         "02-after-plan_buffers.kir"]
        # the last dump is what the artifact stores as optimized; every dump parses back
        dumps = [parse((cli.work / "dumps" / entry / n).read_text()) for n in names]
        assert dumps[-1] == artifact.graph(entry, "optimized")
        assert dumps[0] == artifact.graph(entry, "input")


def test_info_lists_signatures_sizes_and_hashes(cli: SimpleNamespace) -> None:
    proc = cli.kiln("info", "model.kiln")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "backend       reference" in out and "level=2" in out
    assert "parameters    67 (268 B)" in out
    assert "predict(features (None, 4) float32) -> (probs (None, 3) float32)" in out
    assert "format        kiln-artifact version 1" in out
    with zipfile.ZipFile(cli.artifact) as zf:
        for name in zf.namelist():
            digest = hashlib.sha256(zf.read(name)).hexdigest()
            assert f"sha256:{digest}" in out, name
            assert name in out


# -- run, train, run again -------------------------------------------------------------------
def test_run_writes_the_predictions_of_load_model(cli: SimpleNamespace) -> None:
    proc = cli.kiln("run", "model.kiln", "--input", "x.npy", "--output", "out.npz",
                    "--batch-size", "16")
    assert proc.returncode == 0, proc.stderr
    with np.load(cli.work / "out.npz") as out:
        assert list(out.files) == ["probs"]
        probs = out["probs"]
    assert probs.shape == (40, 3) and probs.dtype == np.float32
    np.testing.assert_allclose(probs, _predict(cli.artifact, cli.x), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)

    shown = cli.kiln("run", "model.kiln", "--input", "features=x.npy")  # named, no --output
    assert shown.returncode == 0, shown.stderr
    assert "probs: shape (40, 3), float32" in shown.stdout
    assert f"{probs[0, 0]:.5f}"[:6] in shown.stdout


def test_train_then_run_gives_the_trained_models_predictions(cli: SimpleNamespace) -> None:
    before = read_artifact(cli.artifact)
    copy = cli.work / "trained.kiln"
    shutil.copy(cli.artifact, copy)
    proc = cli.kiln("train", "trained.kiln", "--data", "data.npz", "--epochs", "3",
                    "--batch-size", "8", "--validation-split", "0.25")  # replaces the file
    assert proc.returncode == 0, proc.stderr
    assert "Epoch 3/3" in proc.stdout and "val_loss" in proc.stdout
    assert "wrote trained.kiln" in proc.stdout
    after = read_artifact(copy)
    # 30 training samples in batches of 8: 4 optimizer steps an epoch, and the optimizer's
    # slots travel with the artifact, so a later train goes on from them
    steps = int(after.state["optimizer.iterations"]) - int(before.state["optimizer.iterations"])
    assert steps == 12
    own = set(after.entries["predict"].state)
    slots = [name for name, array in after.state.items()
             if name not in own and array.shape == after.state["hidden.kernel"].shape]
    assert slots and all(not np.allclose(after.state[n], before.state[n]) for n in slots)

    run = cli.kiln("run", "trained.kiln", "-i", "x.npy", "-o", "trained_out.npz")
    assert run.returncode == 0, run.stderr
    with np.load(cli.work / "trained_out.npz") as out:
        trained = out["probs"]
    untrained = _predict(cli.artifact, cli.x)
    assert np.abs(trained - untrained).max() > 1e-3
    np.testing.assert_allclose(trained, _predict(copy, cli.x), rtol=1e-6, atol=1e-7)


def test_train_reports_summed_metrics(cli: SimpleNamespace) -> None:
    """Metrics finished from summed statistics travel in the artifact and come back from
    `kiln train`, one at several thresholds as a list."""
    script = Path(__file__).parent / "data" / "binary_model.py"
    compiled = cli.kiln("compile", script, "-o", "binary.kiln", "--backend", "reference")
    assert compiled.returncode == 0, compiled.stderr
    y = np.stack([cli.y > 0, cli.y > 1], axis=1).astype(np.float32)
    np.savez(cli.work / "binary.npz", x=cli.x, y=y)
    proc = cli.kiln("train", "binary.kiln", "--data", "binary.npz", "--epochs", "1",
                    "--verbose", "0")
    assert proc.returncode == 0, proc.stderr
    from kiln.models import load_model

    model = load_model(cli.work / "binary.kiln")
    logs = model.evaluate(cli.x, y, verbose=0, return_dict=True)
    assert 0 < logs["auc"] < 1 and np.shape(logs["precision"]) == (2,)
    assert re.search(r"auc 0\.\d+, loss [\d.]+, precision \[[\d.]+ [\d.]+\]", proc.stdout), \
        proc.stdout


def test_a_model_compiled_without_training_is_refused_by_train(cli: SimpleNamespace) -> None:
    from kiln import layers, models

    model = models.Sequential([layers.Input(shape=(4,)), layers.Dense(2)])
    model.save(cli.work / "inference.kiln", backend="reference")
    proc = cli.kiln("train", "inference.kiln", "--data", "data.npz")
    assert_user_error(proc, "inference.kiln", "compiled for training", "predict")


# -- ir --------------------------------------------------------------------------------------
def test_ir_text_of_each_stage(cli: SimpleNamespace) -> None:
    artifact = read_artifact(cli.artifact)
    proc = cli.kiln("ir", "model.kiln", "--stage", "input")
    assert proc.returncode == 0, proc.stderr
    assert parse(proc.stdout) == artifact.graph("predict", "input")
    # after the last pass of the pipeline is the stored optimized IR, recomputed
    last = cli.kiln("ir", "model.kiln", "--entry", "train_step", "--stage", "after:plan_buffers")
    assert last.returncode == 0, last.stderr
    assert parse(last.stdout) == artifact.graph("train_step", "optimized")


def test_ir_json_and_dot(cli: SimpleNamespace) -> None:
    artifact = read_artifact(cli.artifact)
    proc = cli.kiln("ir", "model.kiln", "--entry", "train_step", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    document = json.loads(proc.stdout)
    graph = artifact.graph("train_step", "optimized")
    assert document["schema"] == "kiln-ir-json" and document["entry"] == "train_step"
    described = document["graph"]
    assert [n["op"] for n in described["nodes"]] == [n.op for n in graph.nodes]
    assert [v["name"] for v in described["state"]] == [v.name for v in graph.state]
    assert [u["state"] for u in described["updates"]] == [name for name, _ in graph.updates]
    assert any("body" in n for n in described["nodes"])  # fused kernels nest their bodies
    assert described["inputs"][0] == {"name": "features", "shape": ["N", 4],
                                      "dtype": "float32"}

    fused = cli.kiln("ir", "model.kiln", "--stage", "after:fuse_elementwise", "--format", "json")
    assert fused.returncode == 0, fused.stderr
    assert json.loads(fused.stdout)["stage"] == "after:fuse_elementwise"

    dot = cli.kiln("ir", "model.kiln", "--format", "dot", "--stage", "optimized")
    assert dot.returncode == 0, dot.stderr
    assert dot.stdout.startswith('digraph "predict" {') and dot.stdout.rstrip().endswith("}")
    assert "features" in dot.stdout


# -- profile ---------------------------------------------------------------------------------
def test_profile_times_every_node_of_the_train_step_and_writes_nothing(
        cli: SimpleNamespace) -> None:
    before = cli.artifact.read_bytes()
    proc = cli.kiln("profile", "model.kiln", "--entry", "train_step", "--backend", "numba",
                    "--batch-size", "16", "--repeats", "3", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert (report["backend"], report["entry"], report["stage"]) == (
        "numba", "train_step", "optimized")
    assert report["inputs"]["features"] == {"shape": [16, 4], "dtype": "float32"}
    assert report["inputs"]["y"]["shape"] == [16]  # the targets, made up
    optimized = cli.kiln("ir", "model.kiln", "--entry", "train_step", "--format", "json")
    nodes = json.loads(optimized.stdout)["graph"]["nodes"]
    indices = [row["index"] for row in report["nodes"] if row["index"] >= 0]
    assert indices == list(range(len(nodes)))
    assert cli.artifact.read_bytes() == before


def test_profile_text_from_input_files(cli: SimpleNamespace) -> None:
    proc = cli.kiln("profile", "model.kiln", "-i", "x.npy", "--top", "2", "--repeats", "2",
                    "--backend", "onnxruntime")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("profile of predict (onnxruntime, optimized graph @predict")
    assert lines[0].endswith("features (40, 4) float32")
    assert "median of 2 calls" in lines[1]
    assert "more rows)" in proc.stdout and "fused:gemm" in proc.stdout


# -- other backends --------------------------------------------------------------------------
def test_recompiled_for_onnxruntime_gives_the_same_outputs(cli: SimpleNamespace) -> None:
    proc = cli.kiln("compile", "model.kiln", "-o", "ort.kiln", "--backend", "onnxruntime")
    assert proc.returncode == 0, proc.stderr
    assert "for onnxruntime at -O2" in proc.stdout
    artifact = read_artifact(cli.work / "ort.kiln")
    assert artifact.backend == "onnxruntime" and "predict" in artifact.onnx
    run = cli.kiln("run", "ort.kiln", "--input", "x.npy", "--output", "ort_out.npz")
    assert run.returncode == 0, run.stderr
    with np.load(cli.work / "ort_out.npz") as out:
        np.testing.assert_allclose(out["probs"], _predict(cli.artifact, cli.x),
                                   rtol=1e-5, atol=1e-6)


def test_numba_run_and_the_kernel_cache(cli: SimpleNamespace) -> None:
    run = cli.kiln("run", "model.kiln", "--backend", "numba", "-i", "x.npy", "-o", "nb.npz")
    assert run.returncode == 0, run.stderr
    with np.load(cli.work / "nb.npz") as out:
        np.testing.assert_allclose(out["probs"], _predict(cli.artifact, cli.x),
                                   rtol=1e-5, atol=1e-6)
    folder = cli.work / "cache" / "numba"
    modules = sorted(folder.glob("kiln_*.py"))
    assert modules
    info = cli.kiln("cache", "info")
    assert info.returncode == 0, info.stderr
    assert str(folder) in info.stdout and f"modules       {len(modules)} " in info.stdout
    clear = cli.kiln("cache", "clear")
    assert clear.returncode == 0, clear.stderr
    assert f"removed {len(modules)} generated kernel modules" in clear.stdout
    assert not any(folder.glob("kiln_*.py"))


# -- user errors -----------------------------------------------------------------------------
def test_wrong_input_shape_and_dtype_say_expected_and_given(cli: SimpleNamespace) -> None:
    np.save(cli.work / "narrow.npy", cli.x[:, :3])
    np.save(cli.work / "ints.npy", np.arange(8, dtype=np.int64).reshape(2, 4))
    assert_user_error(cli.kiln("run", "model.kiln", "-i", "narrow.npy"),
                      "'features'", "expected shape (None, 4) float32", "narrow.npy",
                      "(40, 3)")
    assert_user_error(cli.kiln("run", "model.kiln", "-i", "ints.npy"),
                      "'features'", "expected dtype float32", "ints.npy", "int64")


@pytest.mark.parametrize("args, fragments", [
    (["info", "missing.kiln"], ["missing.kiln", "no such file"]),
    (["run", "model.kiln", "--backend", "tpu", "-i", "x.npy"], ["--backend", "'tpu'"]),
    (["ir", "model.kiln", "--stage", "after:unroll"],
     ["after:unroll", "infer_types", "dce:2", "'unroll'"]),
    (["train", "model.kiln", "--data", "data.npz", "--x", "inputs"],
     ["data.npz", "'inputs'", "'x', 'y'"]),
    (["compile", "model.onnx", "-o", "m.kiln"], ["model.onnx", "ONNX model"]),
    (["compile", "missing.onnx", "-o", "m.kiln"], ["missing.onnx", "no such file"]),
    (["profile", "model.kiln", "--entry", "fit"],
     ["--entry", "'fit'", "predict, train_step, test_step"]),
    (["profile", "model.kiln", "--warmup", "-1"], ["--warmup", "non-negative", "'-1'"]),
    (["profile", "model.kiln", "-i", "missing.npy"], ["missing.npy"]),
    (["profile", "model.kiln", "--backend", "numba-cuda"],
     ["--backend", "numba-cuda", "cannot profile", "reference, numba, onnxruntime"]),
])
def test_user_errors_are_one_line(cli: SimpleNamespace, args: list[str],
                                  fragments: list[str]) -> None:
    (cli.work / "model.onnx").write_bytes(b"\x08\x07")
    assert_user_error(cli.kiln(*args), *fragments)


def test_a_truncated_artifact_is_refused(cli: SimpleNamespace) -> None:
    data = cli.artifact.read_bytes()
    (cli.work / "truncated.kiln").write_bytes(data[:len(data) // 2])
    assert_user_error(cli.kiln("run", "truncated.kiln", "-i", "x.npy"), "truncated.kiln")


def test_hostile_members_are_refused_without_running_them(cli: SimpleNamespace) -> None:
    marker = cli.work / "pwned"
    hostile = cli.work / "hostile.kiln"
    shutil.copy(cli.artifact, hostile)
    payload = f"open({str(marker)!r}, 'w').write('x')\n"
    with zipfile.ZipFile(hostile, "a") as zf:
        zf.writestr("kernels/predict_extra.py", payload)
        zf.writestr("__init__.py", payload)
        zf.writestr("state/evil.pkl", pickle.dumps(_Payload(str(marker))))
    proc = cli.kiln("run", "hostile.kiln", "-i", "x.npy")
    assert_user_error(proc, "hostile.kiln", "unexpected member")
    assert not marker.exists()


class _Payload:
    """Unpickling this would create the marker file."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self) -> tuple:
        return (open, (self.path, "w"))


# -- in-process: parsing and messages (no subprocess needed) ---------------------------------
def test_version_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith("kiln 0.1.0 (artifact format ")
    for command in ("compile", "run", "train", "ir", "info", "cache"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert f"usage: kiln {command}" in capsys.readouterr().out


def test_script_errors_name_the_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "broken.py"
    broken.write_text("from kiln import layers\n\nmodel = undefined_name\n")
    assert main(["compile", str(broken), "-o", str(tmp_path / "m.kiln")]) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"kiln: error: {broken}:3: NameError: name 'undefined_name' is not defined"
    empty = tmp_path / "empty.py"
    empty.write_text("x = 1\n")
    assert main(["compile", str(empty), "-o", str(tmp_path / "m.kiln")]) == 1
    assert "define `model` or `build_model()`" in capsys.readouterr().err
    assert main(["compile", str(empty), "-o", str(tmp_path / "m.bin")]) == 1
    assert "expected an artifact path ending in .kiln" in capsys.readouterr().err
    assert not (tmp_path / "m.kiln").exists()


def test_random_bytes_and_bad_options(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                      ) -> None:
    noise = tmp_path / "noise.kiln"
    noise.write_bytes(np.random.default_rng(1).bytes(2000))
    assert main(["info", str(noise)]) == 1
    assert "not a zip file" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["compile", "m.py", "-o", "m.kiln", "-O", "9"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "expected an optimization level among 0, 1, 2" in err
    assert main(["compile", str(noise), "-o", "m.kiln", "--dump-ir-after", "cse"]) == 1
    assert "--dump-ir-after: expected --dump-ir DIR" in capsys.readouterr().err


def test_graph_json_is_strict_and_keeps_every_attribute() -> None:
    from kiln.ir import GraphBuilder, f32
    from kiln.tools.graph_json import graph_to_json

    b = GraphBuilder("clip")
    x = b.input("x", f32["N", 3])
    limits = b.constant(np.array([np.inf, -np.inf, 0.5], np.float32))
    b.output(b.minimum(b.maximum(x, b.constant(np.float32(-np.inf))), limits), "y")
    graph = b.build()
    text = graph_to_json(graph)
    document = json.loads(text, parse_constant=lambda name: pytest.fail(f"non-JSON {name}"))
    nodes = document["graph"]["nodes"]
    assert [n["op"] for n in nodes] == [n.op for n in graph.nodes]
    arrays = [a["array"] for n in nodes for a in n["attrs"].values()
              if isinstance(a, dict) and "array" in a]
    assert {"shape": [3], "dtype": "float32", "data": [{"float": "inf"}, {"float": "-inf"}, 0.5]} \
        in arrays
    assert document["graph"]["outputs"] == [{"name": "y", "value": graph.outputs[0][1].name}]


def test_several_inputs_and_outputs_by_name(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """run and train with named inputs and outputs, in-process (main() is the same code the
    console script runs): outputs keyed by name, defaults from the arrays' names."""
    from kiln import layers, models
    from kiln.models import load_model

    a, b = layers.Input(shape=(3,), name="a"), layers.Input(shape=(2,), name="b")
    hidden = layers.Dense(4, activation="relu", name="h")(layers.Concatenate()([a, b]))
    model = models.Model(inputs=[a, b], outputs=[layers.Dense(1, name="level")(hidden),
                                                 layers.Dense(2, activation="softmax",
                                                              name="kind")(hidden)])
    model.compile(optimizer="sgd", loss={"level": "mse", "kind": "sparse_categorical_crossentropy"},
                  backend="reference")
    artifact = tmp_path / "two.kiln"
    model.save(artifact)
    rng = np.random.default_rng(3)
    xa, xb = rng.standard_normal((10, 3)), rng.standard_normal((10, 2)).astype(np.float32)
    np.save(tmp_path / "a.npy", xa)  # float64: taken for a float32 input
    np.save(tmp_path / "b.npy", xb)
    out = tmp_path / "out.npz"
    assert main(["run", str(artifact), "-i", f"b={tmp_path / 'b.npy'}",
                 "-i", f"a={tmp_path / 'a.npy'}", "-o", str(out)]) == 0
    expected = load_model(artifact).predict([xa, xb], verbose=0)
    with np.load(out) as got:
        assert list(got.files) == ["level", "kind"]
        np.testing.assert_allclose(got["level"], expected[0], rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(got["kind"], expected[1], rtol=1e-6, atol=1e-7)
    assert main(["run", str(artifact), "-i", f"a={tmp_path / 'a.npy'}"]) == 1
    assert "no value for the input 'b'" in capsys.readouterr().err

    np.savez(tmp_path / "data.npz", a=xa, b=xb, level=rng.standard_normal((10, 1)),
             kind=rng.integers(0, 2, 10))
    trained = tmp_path / "trained.kiln"
    assert main(["train", str(artifact), "--data", str(tmp_path / "data.npz"), "--verbose", "0",
                 "--epochs", "2", "-o", str(trained)]) == 0
    assert "wrote" in capsys.readouterr().out
    before, after = load_model(artifact), load_model(trained)
    assert not np.allclose(before.get_layer("h").get_weights()[0],
                           after.get_layer("h").get_weights()[0])
    np.savez(tmp_path / "short.npz", a=xa, b=xb[:7], level=xa[:, :1])
    assert main(["train", str(artifact), "--data", str(tmp_path / "short.npz")]) == 1
    err = capsys.readouterr().err
    assert "expected the same number of samples" in err and "'b']: 7" in err


def test_an_onnx_model_compiles_runs_and_recompiles(cli: SimpleNamespace) -> None:
    """An .onnx file (here a NCHW conv net written with onnx.helper) through every command:
    compile, info, ir, run (equal to onnxruntime on the same file), profile, compile again
    for onnxruntime; train refuses, the model being for inference only."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(5)
    weights = {"w": rng.standard_normal((4, 2, 3, 3)).astype(np.float32) * 0.3,
               "b": rng.standard_normal(4).astype(np.float32),
               "wd": rng.standard_normal((64, 3)).astype(np.float32) * 0.2}
    graph = helper.make_graph(
        [helper.make_node("Conv", ["image", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["c"], ["r"]),
         helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
         helper.make_node("Flatten", ["p"], ["f"]),
         helper.make_node("MatMul", ["f", "wd"], ["scores"])],
        "net", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n", 2, 8, 8])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["n", 3])],
        [numpy_helper.from_array(a, k) for k, a in weights.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, cli.work / "net.onnx")
    images = rng.standard_normal((6, 2, 8, 8)).astype(np.float32)
    np.save(cli.work / "images.npy", images)
    (want,) = ort.InferenceSession(model.SerializeToString(),
                                   providers=["CPUExecutionProvider"]).run(None,
                                                                           {"image": images})

    proc = cli.kiln("compile", "net.onnx", "-o", "net.kiln", "--backend", "numba")
    assert proc.returncode == 0, proc.stderr
    assert "compiled net.onnx for numba at -O2" in proc.stdout
    assert "predict(image (None, 2, 8, 8) float32) -> (scores (None, 3) float32)" in proc.stdout
    info = cli.kiln("info", "net.kiln")
    assert "OnnxModel imported from 'net.onnx' (opset 17" in info.stdout, info.stdout
    assert "parameters    268 " in info.stdout, info.stdout  # 72 + 4 + 192
    ir = cli.kiln("ir", "net.kiln", "--stage", "input")
    assert "conv2d(" in ir.stdout and ir.stdout.count("transpose(") == 2, ir.stdout
    proc = cli.kiln("run", "net.kiln", "-i", "images.npy", "-o", "scores.npz")
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_allclose(np.load(cli.work / "scores.npz")["scores"], want, rtol=1e-5,
                               atol=1e-5)
    profile = cli.kiln("profile", "net.kiln", "--batch-size", "4", "--repeats", "2")
    assert profile.returncode == 0 and "fused:conv" in profile.stdout, profile.stderr
    proc = cli.kiln("compile", "net.kiln", "-o", "net_ort.kiln", "--backend", "onnxruntime")
    assert proc.returncode == 0, proc.stderr
    proc = cli.kiln("run", "net_ort.kiln", "-i", "images.npy", "-o", "scores_ort.npz")
    np.testing.assert_allclose(np.load(cli.work / "scores_ort.npz")["scores"], want,
                               rtol=1e-5, atol=1e-5)
    np.savez(cli.work / "net_data.npz", x=images, y=np.zeros((6, 3), np.float32))
    assert_user_error(cli.kiln("train", "net.kiln", "--data", "net_data.npz"),
                      "net.kiln", "imported ONNX model, for inference only", "kiln run")
    (cli.work / "net_floor.onnx").write_bytes(model.SerializeToString().replace(
        b"MaxPool", b"MaxPoo1"))
    assert_user_error(cli.kiln("compile", "net_floor.onnx", "-o", "x.kiln"), "net_floor.onnx")


def test_kiln_run_feeds_a_time_major_onnx_model_whole(cli: SimpleNamespace) -> None:
    """An LSTM over [T, N, F] (its first axis is time): `kiln run` cannot cut batches along
    it and runs the whole input in one call, equal to onnxruntime."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(6)
    weights = {"W": rng.standard_normal((1, 8, 3)).astype(np.float32) * 0.5,
               "R": rng.standard_normal((1, 8, 2)).astype(np.float32) * 0.5}
    graph = helper.make_graph(
        [helper.make_node("LSTM", ["x", "W", "R"], ["y"], hidden_size=2)], "rnn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [5, "n", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [5, 1, "n", 2])],
        [numpy_helper.from_array(a, k) for k, a in weights.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, cli.work / "rnn.onnx")
    x = rng.standard_normal((5, 7, 3)).astype(np.float32)
    np.save(cli.work / "seq.npy", x)
    (want,) = ort.InferenceSession(model.SerializeToString(),
                                   providers=["CPUExecutionProvider"]).run(None, {"x": x})
    assert cli.kiln("compile", "rnn.onnx", "-o", "rnn.kiln").returncode == 0
    proc = cli.kiln("run", "rnn.kiln", "-i", "seq.npy", "-o", "seq_out.npz",
                    "--batch-size", "2")
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_allclose(np.load(cli.work / "seq_out.npz")["y"], want, rtol=1e-5,
                               atol=1e-6)
