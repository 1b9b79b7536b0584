"""The .kiln format on its own (IR graphs and arrays, no frontend): what write_artifact stores
reads back equal, member by member; names map safely; every inconsistency the manifest could
declare is refused with one line naming the file; writes are atomic."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from kiln.compiler import artifact as artifact_mod
from kiln.compiler.artifact import (
    FORMAT_VERSION,
    SUFFIX,
    ArtifactError,
    EntryPoint,
    TensorSpec,
    read_artifact,
    write_artifact,
)
from kiln.compiler.pass_manager import compile_graph
from kiln.ir import KilnValueError, print_graph
from kiln.ir.training import RMSprop
from tests.models import mlp


def _write(path: Path, **overrides) -> artifact_mod.Artifact:  # noqa: ANN003
    model = mlp(samples=8, features=5, hidden=4, classes=3)
    step = model.train_step(RMSprop())
    graphs = {"predict": dataclasses.replace(model.forward, name="predict"),
              "train_step": step.graph}
    args = dict(backend="reference", model_config={"class_name": "Test", "config": {}},
                graphs=graphs, optimized={k: compile_graph(g, 2)[0] for k, g in graphs.items()},
                state=model.initial_state(RMSprop()), compile_options={"level": 2},
                kernel_source={"predict": "def driver():\n    pass\n"})
    args.update(overrides)
    return write_artifact(path, **args)


def rewrite(src: Path, dst: Path, replace: dict[str, bytes] | None = None,
            add: dict[str, bytes] | None = None, drop: tuple[str, ...] = (),
            manifest: Callable[[dict], None] | None = None, rehash: bool = True) -> None:
    """Copy an artifact changing members; with `rehash` the manifest's hashes are updated to
    match, as an attacker who edits the manifest too would do."""
    with zipfile.ZipFile(src) as zf:
        members = {name: zf.read(name) for name in zf.namelist()}
    members.update(replace or {})
    for name in drop:
        members.pop(name)
    meta = json.loads(members.pop("manifest.json"))
    if rehash:
        for item in meta["members"]:
            if item["name"] in members:
                item["size"] = len(members[item["name"]])
                item["sha256"] = hashlib.sha256(members[item["name"]]).hexdigest()
    if manifest is not None:
        manifest(meta)
    members.update(add or {})
    with zipfile.ZipFile(dst, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("manifest.json", json.dumps(meta))
        for name, data in members.items():
            zf.writestr(name, data)


def test_round_trip(tmp_path) -> None:  # noqa: ANN001
    path = tmp_path / f"m{SUFFIX}"
    written = _write(path)
    art = read_artifact(path)
    assert art.backend == "reference" and art.compile_options == {"level": 2}
    assert art.manifest["format_version"] == FORMAT_VERSION == 1
    assert art.model_config == {"class_name": "Test", "config": {}}
    assert list(art.entries) == ["predict", "train_step"]
    predict = art.entries["predict"]
    assert predict == EntryPoint("predict", (TensorSpec("x", (None, 5), "float32"),),
                                 (TensorSpec("out", (None, 3), "float32"),),
                                 ("dense.kernel", "dense.bias", "dense_1.kernel",
                                  "dense_1.bias"))
    assert art.entries == written.entries
    for name, array in written.state.items():
        assert art.state[name].dtype == array.dtype
        np.testing.assert_array_equal(art.state[name], array)
    assert art.state["optimizer.iterations"].shape == ()  # 0-d arrays stay 0-d
    for entry in art.entries:
        for stage in ("input", "optimized"):
            assert art.graph(entry, stage) == written.graph(entry, stage)
            assert art.ir_text(entry, stage) == print_graph(art.graph(entry, stage)) + "\n"
    assert art.graph("predict", "input").name == "predict"
    assert art.kernel_source == {"predict": "def driver():\n    pass\n"} and art.onnx == {}
    rows = art.members()
    with zipfile.ZipFile(path) as zf:
        assert [r[0] for r in rows] == zf.namelist()  # manifest first, then listed order
        for name, size, digest in rows:
            data = zf.read(name)
            assert size == len(data) and digest == hashlib.sha256(data).hexdigest()
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left
    with pytest.raises(KilnValueError, match="no entry point 'test_step'"):
        art.ir_text("test_step")
    with pytest.raises(KilnValueError, match="expected stage 'input' or 'optimized'"):
        art.graph("predict", "after:cse")


def test_members_are_deterministic(tmp_path) -> None:  # noqa: ANN001
    _write(tmp_path / "a.kiln")
    _write(tmp_path / "b.kiln")
    with zipfile.ZipFile(tmp_path / "a.kiln") as a, zipfile.ZipFile(tmp_path / "b.kiln") as b:
        assert a.namelist() == b.namelist()
        for name in a.namelist()[1:]:  # the manifest differs only by its creation time
            assert a.read(name) == b.read(name)
            assert a.getinfo(name).date_time == (1980, 1, 1, 0, 0, 0)
    with zipfile.ZipFile(tmp_path / "a.kiln") as zf:
        names = zf.namelist()
    assert names[:2] == ["manifest.json", "model.json"]
    assert names[2:6] == ["ir/predict.input.kir", "ir/predict.optimized.kir",
                          "ir/train_step.input.kir", "ir/train_step.optimized.kir"]
    assert names[-1] == "kernels/predict.py"


def test_state_names_map_to_safe_unique_members() -> None:
    members = artifact_mod._state_members(["adam.m/dense.kernel", "adam.m_dense.kernel",
                                           "../../etc/passwd", "A", "a", "é"])
    assert members["adam.m/dense.kernel"] == "state/adam.m_dense.kernel.npy"
    assert members["adam.m_dense.kernel"] == "state/adam.m_dense.kernel~1.npy"
    assert members["../../etc/passwd"] == "state/_.._etc_passwd.npy"
    assert {members["A"], members["a"]} == {"state/A.npy", "state/a~1.npy"}
    assert all(artifact_mod._safe_member(m) for m in members.values())


def test_write_refusals_leave_nothing(tmp_path) -> None:  # noqa: ANN001
    path = tmp_path / "m.kiln"
    art = _write(path)
    state = dict(art.state)
    del state["dense.kernel"]
    with pytest.raises(KilnValueError, match="no array for the state 'dense.kernel'"):
        _write(tmp_path / "x.kiln", state=state)
    with pytest.raises(KilnValueError, match="needs the entry point 'predict'"):
        _write(tmp_path / "x.kiln", graphs={}, optimized={})
    wrong = {**art.state, "dense.kernel": art.state["dense.kernel"].astype(np.float64)}
    with pytest.raises(ArtifactError, match="does not match the IR type"):
        _write(tmp_path / "x.kiln", state=wrong)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.kiln"]


def test_interrupted_write_keeps_the_previous_file(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    path = tmp_path / "m.kiln"
    _write(path)
    before = path.read_bytes()
    calls = []
    real = zipfile.ZipFile.writestr

    def failing(self, info, data, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        calls.append(info)
        if len(calls) == 4:
            raise OSError("disk full")
        return real(self, info, data, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "writestr", failing)
    with pytest.raises(OSError, match="disk full"):
        _write(path, backend="numba")
    assert len(calls) == 4  # it failed mid-write
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.kiln"]
    monkeypatch.undo()
    assert read_artifact(path).backend == "reference"


def _refused(tmp_path: Path, match: str, **kwargs) -> None:  # noqa: ANN003
    src, bad = tmp_path / "m.kiln", tmp_path / "bad.kiln"
    if not src.exists():
        _write(src)
    rewrite(src, bad, **kwargs)
    with pytest.raises(ArtifactError, match=match) as info:
        read_artifact(bad)
    assert str(info.value).startswith(f"{bad}: ") and "\n" not in str(info.value)


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def test_inconsistent_members_are_refused(tmp_path) -> None:  # noqa: ANN001
    # a state array whose shape or dtype disagrees with the IR (hashes made consistent)
    _refused(tmp_path, r"state dense.kernel: array float32\[2, 2\] does not match the IR",
             replace={"state/dense.kernel.npy": _npy(np.zeros((2, 2), np.float32))},
             manifest=lambda m: m["state"]["dense.kernel"].update(shape=[2, 2]))
    _refused(tmp_path, "disagrees with the manifest",
             replace={"state/dense.bias.npy": _npy(np.zeros(4, np.float64))})
    _refused(tmp_path, r"ir/predict.input.kir: the IR does not parse \(line 1",
             replace={"ir/predict.input.kir": b"graph @predict( nonsense"})
    _refused(tmp_path, "signature of entry point predict disagrees with its IR",
             manifest=lambda m: m["entry_points"]["predict"]["inputs"][0].update(name="z"))
    _refused(tmp_path, "not a plain .npy array",
             replace={"state/dense.bias.npy": b"\x93NUMPY garbage"})
    _refused(tmp_path, "Object arrays cannot be loaded when allow_pickle=False",
             replace={"state/dense.bias.npy": _pickled_npy()})
    # a header that claims far more than the member holds is refused before any allocation
    lie = io.BytesIO()
    np.lib.format.write_array_header_1_0(lie, {"descr": "<f4", "fortran_order": False,
                                              "shape": (10**12,)})
    _refused(tmp_path, r"declares float32\[1000000000000\], which does not fit the 16 bytes",
             replace={"state/dense.bias.npy": lie.getvalue() + bytes(16)})
    _refused(tmp_path, "missing member state/dense.bias.npy", drop=("state/dense.bias.npy",))
    _refused(tmp_path, "listed but not used",
             add={"notes.txt": b"hi"},
             manifest=lambda m: m["members"].append(
                 {"name": "notes.txt", "size": 2,
                  "sha256": hashlib.sha256(b"hi").hexdigest()}))
    _refused(tmp_path, "invalid member name '../evil.py'",
             manifest=lambda m: m["members"].append(
                 {"name": "../evil.py", "size": 0, "sha256": ""}))
    _refused(tmp_path, "manifest.json: field 'format_version' has the wrong type",
             manifest=lambda m: m.update(format_version="1"))
    _refused(tmp_path, "manifest.json: missing field 'state'",
             manifest=lambda m: m.pop("state"))


def test_unreadable_manifests_are_refused(tmp_path) -> None:  # noqa: ANN001
    for name, text in (("deep", "[" * 100_000), ("list", "[1, 2]"), ("bytes", "\udcff")):
        path = tmp_path / f"{name}.kiln"
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("manifest.json", text.encode("utf-8", "surrogateescape"))
        with pytest.raises(ArtifactError, match=r"manifest.json: (not valid JSON|expected a "
                                                r"JSON object. Received: list)"):
            read_artifact(path)


def _pickled_npy() -> bytes:
    """An .npy of dtype object: its payload is a pickle, which allow_pickle=False refuses."""
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    return buffer.getvalue()


def test_duplicate_members_and_zip_bombs_are_refused(tmp_path) -> None:  # noqa: ANN001
    src = tmp_path / "m.kiln"
    _write(src)
    dup = tmp_path / "dup.kiln"
    with zipfile.ZipFile(src) as zf, zipfile.ZipFile(dup, "w") as out:
        for name in zf.namelist():
            out.writestr(name, zf.read(name))
        with pytest.warns(UserWarning, match="Duplicate name"):
            out.writestr("model.json", b"{}")
    with pytest.raises(ArtifactError, match="duplicate member model.json"):
        read_artifact(dup)
    bomb = tmp_path / "bomb.kiln"
    huge = b"\0" * (8 * 2**20)  # 8 MiB of zeros deflate to a few KiB
    rewrite(src, bomb, replace={"kernels/predict.py": huge})
    assert bomb.stat().st_size < 2**20
    with pytest.raises(ArtifactError, match=r"kernels/predict.py: 8388608 bytes uncompressed, "
                                            r"more than expected \(1048576\)"):
        read_artifact(bomb, max_member_bytes=2**20)
    assert len(read_artifact(bomb).kernel_source["predict"]) == len(huge)  # under the default
    rewrite(src, bomb, replace={"kernels/predict.py": b"\xff\xfe"})
    with pytest.raises(ArtifactError, match="kernels/predict.py: not UTF-8 text"):
        read_artifact(bomb)
