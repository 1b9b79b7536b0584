"""Hostile and damaged .kiln files through kiln.models.load_model: each is refused with one
line naming the file and the problem, and nothing stored in a file is ever executed (payloads
here would create a marker file; the tests assert it never appears). Saves are atomic."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import marshal
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest

from kiln import layers, models, utils
from kiln.compiler.artifact import ArtifactError, read_artifact
from tests.compiler.test_artifact import rewrite

X = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)


class Payload:
    """Unpickling this calls open(marker, "w"): proof that a pickle was executed."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):  # noqa: ANN204
        return (open, (self.marker, "w"))


def _model() -> models.Sequential:
    utils.set_random_seed(0)
    model = models.Sequential([layers.Input((4,)),
                               layers.Dense(3, activation="relu", name="hidden"),
                               layers.Dense(2, name="out")])
    model.compile(optimizer="adam", loss="mse", backend="reference")
    return model


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    path = tmp_path / "good.kiln"
    _model().save(path)
    return path


def _refused(path: Path, match: str) -> ArtifactError:
    with pytest.raises(ArtifactError, match=match) as info:
        models.load_model(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    return info.value


def test_truncated_and_random_files(saved: Path, tmp_path: Path) -> None:
    data = saved.read_bytes()
    for cut in (len(data) // 2, len(data) - 10, 30):
        bad = tmp_path / f"cut{cut}.kiln"
        bad.write_bytes(data[:cut])
        _refused(bad, "truncated or damaged zip file")
    noise = tmp_path / "noise.kiln"
    noise.write_bytes(np.random.default_rng(1).bytes(4096))
    _refused(noise, "not a zip file, so not a kiln artifact")
    empty = tmp_path / "empty.kiln"
    empty.write_bytes(b"")
    _refused(empty, "not a zip file")
    _refused(tmp_path / "absent.kiln", "no such file")


def test_foreign_and_newer_files(saved: Path, tmp_path: Path) -> None:
    foreign = tmp_path / "foreign.kiln"
    with zipfile.ZipFile(foreign, "w") as zf:
        zf.writestr("README.txt", "an ordinary zip")
    _refused(foreign, r"not a kiln artifact \(no manifest.json\)")
    keras_like = tmp_path / "keras_like.kiln"
    with zipfile.ZipFile(keras_like, "w") as zf:
        zf.writestr("manifest.json", json.dumps({"format": "keras", "version": "3.0"}))
    _refused(keras_like, "not a kiln artifact .manifest format is 'keras'")
    newer = tmp_path / "newer.kiln"
    rewrite(saved, newer, manifest=lambda m: m.update(format_version=2))
    _refused(newer, r"newer format version 2 \(this kiln reads up to 1\)")
    broken = tmp_path / "broken.kiln"
    rewrite(saved, broken, manifest=lambda m: m.clear())
    _refused(broken, "not a kiln artifact")


def test_edited_members_fail_their_hash(saved: Path, tmp_path: Path) -> None:
    art = read_artifact(saved)
    member = art.manifest["state"]["hidden.kernel"]["member"]
    buffer = io.BytesIO()
    np.save(buffer, art.state["hidden.kernel"] + 1)
    edited = tmp_path / "edited.kiln"
    rewrite(saved, edited, replace={member: buffer.getvalue()}, rehash=False)
    _refused(edited, f"member {member}: hash mismatch")
    ir = tmp_path / "ir.kiln"
    rewrite(saved, ir, replace={"ir/predict.input.kir": b"graph @predict() {\n}\n"},
            rehash=False)
    _refused(ir, "member ir/predict.input.kir: hash mismatch")


def test_extra_code_and_pickle_members_are_refused_unexecuted(saved: Path,
                                                              tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    payload = pickle.dumps(Payload(marker))
    proof = tmp_path / "proof"
    pickle.loads(pickle.dumps(Payload(proof)))  # the payload is real: unpickled, it acts
    assert proof.exists()
    evil = f"open({str(marker)!r}, 'w').close()\n".encode()
    for name, data in (("evil.py", evil), ("payload.pkl", payload),
                       ("kernels/evil.py", evil), ("state/payload.pkl", payload)):
        bad = tmp_path / "extra.kiln"
        rewrite(saved, bad, add={name: data})
        _refused(bad, f"unexpected member {name} .not in the manifest")
        # listed in the manifest with a correct hash, it is still no part of the format
        rewrite(saved, bad, add={name: data}, manifest=lambda m, n=name, d=data: m[
            "members"].append({"name": n, "size": len(d),
                               "sha256": hashlib.sha256(d).hexdigest()}))
        _refused(bad, f"unexpected member {name} .listed but not used")
    # a state array that is a pickle (an .npy of dtype object), hashes made consistent
    art = read_artifact(saved)
    member = art.manifest["state"]["hidden.bias"]["member"]
    buffer = io.BytesIO()
    np.save(buffer, np.array([Payload(marker)] * 3, dtype=object), allow_pickle=True)
    bad = tmp_path / "pickled_state.kiln"
    rewrite(saved, bad, replace={member: buffer.getvalue()})
    _refused(bad, "Object arrays cannot be loaded when allow_pickle=False")
    assert not marker.exists()


def test_model_config_names_only_kiln_classes(saved: Path, tmp_path: Path) -> None:
    """model.json is data: a class name is looked up among kiln's classes, never imported;
    a config that rebuilds another model than the stored IR is refused."""
    art = read_artifact(saved)
    for hostile in ("builtins.eval", "os.system", "__lambda__"):
        config = json.loads(json.dumps(art.model_config))
        config["config"]["layers"][1]["class_name"] = hostile
        bad = tmp_path / "class.kiln"
        rewrite(saved, bad, replace={"model.json": json.dumps(config).encode()})
        _refused(bad, f"model.json: Unknown layer class '{hostile}'")
    # A Lambda's function is never code in the file: Keras's marshalled bytecode, a dotted
    # path or a name not in custom_objects are all refused.
    code = base64.b64encode(marshal.dumps(compile("open('x', 'w')", "f", "eval"))).decode()
    for function, match in (
            ({"class_name": "__lambda__", "config": {"code": code}}, "Lambda expects a function"),
            ("os.system", "Lambda expects a function"),
            ({"function": "eval"}, "its function is the function 'eval', which kiln does not "
                                   "load")):
        config = json.loads(json.dumps(art.model_config))
        layer = config["config"]["layers"][1]
        layer["class_name"] = "Lambda"
        layer["config"] = {"name": layer["config"]["name"], "function": function}
        bad = tmp_path / "lambda.kiln"
        rewrite(saved, bad, replace={"model.json": json.dumps(config).encode()})
        _refused(bad, match)
    config = json.loads(json.dumps(art.model_config))
    config["config"]["layers"][1]["config"]["activation"] = "tanh"
    bad = tmp_path / "other.kiln"
    rewrite(saved, bad, replace={"model.json": json.dumps(config).encode()})
    _refused(bad, "predict graph differs from the stored IR")
    config["config"] = []
    rewrite(saved, bad, replace={"model.json": json.dumps(config).encode()})
    _refused(bad, "model.json: Expected a layer as")


def test_kernel_source_is_never_executed(tmp_path: Path) -> None:
    """A numba artifact whose kernels/*.py are rewritten into a payload (manifest hash updated
    to match) loads and predicts: kernels come from the IR again, never from the file."""
    model = _model()
    path = tmp_path / "numba.kiln"
    model.save(path, backend="numba")
    marker = tmp_path / "PWNED"
    payload = (f"open({str(marker)!r}, 'w').close()\n"
               f"def predict(*args):\n    open({str(marker)!r}, 'w').close()\n").encode()
    art = read_artifact(path)
    assert art.backend == "numba" and "@njit" in art.kernel_source["predict"]
    hostile = tmp_path / "hostile.kiln"
    rewrite(path, hostile, replace={f"kernels/{e}.py": payload for e in art.kernel_source})
    assert read_artifact(hostile).kernel_source["predict"] == payload.decode()
    loaded = models.load_model(hostile)
    assert loaded._backend == "numba"
    np.testing.assert_allclose(loaded.predict(X, verbose=0), model.predict(X, verbose=0),
                               rtol=1e-6, atol=1e-6)
    loaded.fit(X, np.zeros((5, 2), np.float32), epochs=1, verbose=0)
    assert not marker.exists()


def test_interrupted_save_keeps_the_previous_file(saved: Path, monkeypatch) -> None:  # noqa: ANN001
    before = saved.read_bytes()
    model = _model()
    model.fit(X, np.ones((5, 2), np.float32), epochs=2, verbose=0)
    calls = []
    real = zipfile.ZipFile.writestr

    def failing(self, info, data, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        calls.append(info)
        if len(calls) == 5:
            raise KeyboardInterrupt  # as if the user pressed Ctrl-C mid-write
        return real(self, info, data, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "writestr", failing)
    with pytest.raises(KeyboardInterrupt):
        model.save(saved)
    monkeypatch.undo()
    assert saved.read_bytes() == before
    assert [p.name for p in saved.parent.iterdir()] == [saved.name]  # no temporary file
    assert models.load_model(saved).optimizer.iterations == 0
    model.save(saved)  # and a save that completes replaces it
    assert models.load_model(saved).optimizer.iterations == 2
