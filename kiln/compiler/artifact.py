"""The `.kiln` artifact: one zip file holding a compiled model (manifest, model config, the IR of
each entry point as written and as optimized, the state as .npy, ONNX models, kernel source).

Reading never executes anything from the file: JSON and IR text are parsed, arrays load with
`allow_pickle=False`, ONNX models are parsed but not run, kernel source is kept as text. Every
member is listed in the manifest with its sha256; anything else is refused. See docs/artifact.md.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import json
import os
import re
import tempfile
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from kiln.ir.errors import KilnError, KilnValueError
from kiln.ir.graph import Graph
from kiln.ir.parser import parse
from kiln.ir.printer import print_graph
from kiln.ir.types import DTYPES, TensorType, canonical_dtype

FORMAT = "kiln-artifact"
FORMAT_VERSION = 1
SUFFIX = ".kiln"
MANIFEST = "manifest.json"
MODEL = "model.json"
STAGES = ("input", "optimized")
# Caps on what one member may decompress to: a zip bomb is refused before it is inflated.
MAX_MEMBER_BYTES = 4 * 2**30
MAX_JSON_BYTES = 64 * 2**20
_ENTRY_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)  # members carry no time: equal content, equal bytes


class ArtifactError(KilnValueError):
    """A file that is not a readable kiln artifact; the message is one line: "PATH: problem"."""

    def __init__(self, path: str | os.PathLike, problem: str):
        line = " ".join(str(problem).split())
        if len(line) > 400:
            line = line[:397] + "..."
        super().__init__(f"{os.fspath(path)}: {line}")
        self.path = os.fspath(path)
        self.problem = line


@dataclass(frozen=True)
class TensorSpec:
    """An input or output of an entry point; None in the shape is a symbolic (batch) dim."""

    name: str
    shape: tuple[int | None, ...]
    dtype: str


@dataclass(frozen=True)
class EntryPoint:
    """An entry point's signature: its inputs, outputs, and the state names it reads."""

    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    state: tuple[str, ...]


@dataclass
class Artifact:
    """A validated artifact, in memory. `ir` holds the IR text by entry and stage."""

    path: str
    manifest: dict
    backend: str
    compile_options: dict
    kiln_version: str
    model_config: dict
    entries: dict[str, EntryPoint]
    state: dict[str, np.ndarray]
    onnx: dict[str, bytes] = field(default_factory=dict)
    kernel_source: dict[str, str] = field(default_factory=dict)
    ir: dict[str, dict[str, str]] = field(default_factory=dict)
    _graphs: dict[tuple[str, str], Graph] = field(default_factory=dict, repr=False,
                                                  compare=False)

    def _check(self, entry: str, stage: str) -> None:
        if entry not in self.entries:
            raise KilnValueError(f"{self.path}: no entry point {entry!r}; expected one of "
                                 f"{', '.join(self.entries)}. Received: entry={entry!r}")
        if stage not in STAGES:
            raise KilnValueError(f"{self.path}: expected stage 'input' or 'optimized'. "
                                 f"Received: stage={stage!r}")

    def ir_text(self, entry: str, stage: str = "optimized") -> str:
        """The IR of `entry` as written ("input") or after the pass pipeline ("optimized")."""
        self._check(entry, stage)
        return self.ir[entry][stage]

    def graph(self, entry: str, stage: str = "optimized") -> Graph:
        """`ir_text(entry, stage)` parsed (and verified) as a Graph."""
        self._check(entry, stage)
        if (entry, stage) not in self._graphs:
            self._graphs[entry, stage] = parse(self.ir[entry][stage])
        return self._graphs[entry, stage]

    def state_role(self, name: str) -> str | None:
        """What a state array is, as the writer declared it: "trainable", "non_trainable"
        (model weights), "optimizer", "seed", or None when not declared."""
        return self.manifest["state"][name].get("role")

    def count_params(self) -> int:
        """The model's parameter count (trainable and non-trainable weights, as Keras's
        summary counts them); every state array when the roles were not declared."""
        roles = {"trainable", "non_trainable"}
        declared = any(self.state_role(n) is not None for n in self.state)
        return int(sum(a.size for n, a in self.state.items()
                       if not declared or self.state_role(n) in roles))

    def members(self) -> list[tuple[str, int, str]]:
        """(member name, size in bytes, sha256) of every member, manifest.json first."""
        manifest = _json_bytes(self.manifest)
        rows = [(MANIFEST, len(manifest), hashlib.sha256(manifest).hexdigest())]
        rows += [(m["name"], m["size"], m["sha256"]) for m in self.manifest["members"]]
        return rows


# -- writing ---------------------------------------------------------------------------------
def _json_bytes(value: Any) -> bytes:
    return (json.dumps(value, indent=1, sort_keys=False, allow_nan=False) + "\n").encode()


def _spec(name: str, t: TensorType) -> TensorSpec:
    return TensorSpec(name, tuple(d if isinstance(d, int) else None for d in t.shape), t.dtype)


def entry_point(name: str, graph: Graph) -> EntryPoint:
    """The signature of an entry point from its graph."""
    return EntryPoint(name, tuple(_spec(v.name, v.type) for v in graph.inputs),
                      tuple(_spec(n, v.type) for n, v in graph.outputs),
                      tuple(v.name for v in graph.state))


def _spec_json(spec: TensorSpec) -> dict[str, Any]:
    return {"name": spec.name, "shape": list(spec.shape), "dtype": spec.dtype}


def _state_members(names: list[str]) -> dict[str, str]:
    """State name -> member name: the name with unsafe characters replaced, made unique."""
    members: dict[str, str] = {}
    taken: set[str] = set()
    for name in sorted(names):
        safe = re.sub(r"[^A-Za-z0-9_.\-]", "_", name)[:120].lstrip(".") or "state"
        candidate, k = safe, 1
        while candidate.lower() in taken:  # case-insensitive: the zip may be unpacked anywhere
            candidate = f"{safe}~{k}"
            k += 1
        taken.add(candidate.lower())
        members[name] = f"state/{candidate}.npy"
    return members


def _entry_order(names: Any) -> list[str]:
    known = [n for n in ("predict", "train_step", "test_step") if n in names]
    return known + sorted(n for n in names if n not in known)


def write_artifact(path: str | os.PathLike, *, backend: str, model_config: Mapping[str, Any],
                   graphs: Mapping[str, Graph], optimized: Mapping[str, Graph],
                   state: Mapping[str, np.ndarray],
                   compile_options: Mapping[str, Any] | None = None,
                   onnx_models: Mapping[str, bytes] | None = None,
                   kernel_source: Mapping[str, str] | None = None,
                   state_roles: Mapping[str, str] | None = None,
                   kiln_version: str | None = None) -> Artifact:
    """Write an artifact atomically (a temporary file in the same folder, then a rename) and
    return it as read back would be. `graphs` are the entry points as written, `optimized` the
    same after the pass pipeline; `state` must hold every state the graphs read, and
    `state_roles` may say what each is (see Artifact.state_role)."""
    path = Path(path)
    onnx_models, kernel_source = dict(onnx_models or {}), dict(kernel_source or {})
    if "predict" not in graphs:
        raise KilnValueError(f"{path}: an artifact needs the entry point 'predict'. "
                             f"Received: entries {sorted(graphs)}")
    for name in graphs:
        if not _ENTRY_RE.match(name):
            raise KilnValueError(f"{path}: entry point names are letters, digits, '_', '.' "
                                 f"and '-'. Received: {name!r}")
        if name not in optimized:
            raise KilnValueError(f"{path}: no optimized graph for entry point {name!r}")
    extra = (set(optimized) | set(onnx_models) | set(kernel_source)) - set(graphs)
    if extra:
        raise KilnValueError(f"{path}: members given for unknown entry points {sorted(extra)}")
    order = _entry_order(graphs)
    needed = sorted({v.name for g in graphs.values() for v in g.state})
    missing = [n for n in needed if n not in state]
    if missing:
        raise KilnValueError(f"{path}: no array for the state {missing[0]!r} of the graphs")
    # np.array, not ascontiguousarray, which would make a 0-d array 1-d
    arrays = {n: np.array(state[n], order="C") for n in needed}

    files: list[tuple[str, bytes, int]] = [
        (MODEL, _json_bytes(dict(model_config)), zipfile.ZIP_DEFLATED)]
    entries_json: dict[str, Any] = {}
    for name in order:
        ep = entry_point(name, graphs[name])
        record: dict[str, Any] = {
            "inputs": [_spec_json(s) for s in ep.inputs],
            "outputs": [_spec_json(s) for s in ep.outputs],
            "state": list(ep.state), "ir": {}}
        for stage, graph in (("input", graphs[name]), ("optimized", optimized[name])):
            member = f"ir/{name}.{stage}.kir"
            record["ir"][stage] = member
            files.append((member, (print_graph(graph) + "\n").encode(), zipfile.ZIP_DEFLATED))
        entries_json[name] = record
    members = _state_members(list(arrays))
    state_json = {}
    for name in sorted(arrays):
        array = arrays[name]
        canonical_dtype(array.dtype)  # the IR's dtypes only (no object arrays)
        buffer = io.BytesIO()
        np.save(buffer, array, allow_pickle=False)
        files.append((members[name], buffer.getvalue(), zipfile.ZIP_STORED))
        state_json[name] = {"member": members[name], "shape": list(array.shape),
                            "dtype": canonical_dtype(array.dtype)}
        if state_roles and name in state_roles:
            state_json[name]["role"] = str(state_roles[name])
    for name in order:
        if name in onnx_models:
            member = f"onnx/{name}.onnx"
            entries_json[name]["onnx"] = member
            files.append((member, bytes(onnx_models[name]), zipfile.ZIP_DEFLATED))
    for name in order:
        if name in kernel_source:
            member = f"kernels/{name}.py"
            entries_json[name]["kernel_source"] = member
            files.append((member, kernel_source[name].encode(), zipfile.ZIP_DEFLATED))

    manifest = {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "kiln_version": kiln_version or _kiln_version(),
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "backend": backend, "compile_options": dict(compile_options or {"level": 2}),
        "model": MODEL, "entry_points": entries_json, "state": state_json,
        "members": [{"name": m, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
                    for m, data, _ in files],
    }
    # Validated as a reader would see it before anything is written: a bad artifact is
    # refused here and never reaches the disk.
    artifact = _validated(str(path), manifest, {m: d for m, d, _ in files})
    _write_zip(path, [(MANIFEST, _json_bytes(manifest), zipfile.ZIP_DEFLATED), *files])
    return artifact


def _kiln_version() -> str:
    try:
        return metadata.version("kiln")
    except metadata.PackageNotFoundError:
        return "unknown"


def _write_zip(path: Path, files: list[tuple[str, bytes, int]]) -> None:
    """All or nothing: the zip is written to a temporary file beside `path`, then renamed over
    it, so an interrupted write leaves any previous file as it was."""
    folder = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            with zipfile.ZipFile(f, "w") as zf:
                for name, data, compression in files:
                    info = zipfile.ZipInfo(name, date_time=_FIXED_TIME)
                    info.compress_type = compression
                    info.external_attr = 0o644 << 16
                    zf.writestr(info, data)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# -- reading ---------------------------------------------------------------------------------
def read_artifact(path: str | os.PathLike, *,
                  max_member_bytes: int = MAX_MEMBER_BYTES) -> Artifact:
    """Open and validate an artifact: zip structure, manifest, member list and hashes, model
    config, IR (parsed and verified), state (shapes and dtypes against the IR), ONNX models.
    Raises ArtifactError, one line naming the file and what is wrong."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ArtifactError(path, "no such file")
    if os.path.isdir(path):
        raise ArtifactError(path, "is a folder, not a kiln artifact")
    head = b""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as err:
        if head.startswith(b"PK"):
            raise ArtifactError(path, f"truncated or damaged zip file ({err})") from None
        raise ArtifactError(path, "not a zip file, so not a kiln artifact") from None
    with zf:
        infos = zf.infolist()
        names = [i.filename for i in infos]
        seen: set[str] = set()
        for name in names:
            if name in seen:
                raise ArtifactError(path, f"duplicate member {name}")
            seen.add(name)
        if MANIFEST not in seen:
            raise ArtifactError(path, "not a kiln artifact (no manifest.json)")
        by_name = {i.filename: i for i in infos}
        manifest = _load_json(path, zf, by_name[MANIFEST], MANIFEST)
        _check_header(path, manifest)
        listed = _listed_members(path, manifest)
        for name in names:
            if name != MANIFEST and name not in listed:
                raise ArtifactError(path, f"unexpected member {name} (not in the manifest)")
        data: dict[str, bytes] = {}
        for name, (size, digest) in listed.items():
            if name not in by_name:
                raise ArtifactError(path, f"missing member {name}")
            cap = MAX_JSON_BYTES if name.endswith(".json") else max_member_bytes
            blob = _read_member(path, zf, by_name[name], min(cap, size))
            if len(blob) != size or hashlib.sha256(blob).hexdigest() != digest:
                raise ArtifactError(path, f"member {name}: hash mismatch (modified or damaged)")
            data[name] = blob
    return _validated(path, manifest, data)


def _read_member(path: str, zf: zipfile.ZipFile, info: zipfile.ZipInfo, cap: int) -> bytes:
    """The member's bytes, reading at most `cap` + 1 so a zip bomb is never inflated."""
    if info.file_size > cap:
        raise ArtifactError(path, f"member {info.filename}: {info.file_size} bytes "
                                  f"uncompressed, more than expected ({cap})")
    try:
        with zf.open(info) as f:
            blob = f.read(cap + 1)
    except Exception as err:  # noqa: BLE001 - any failure to inflate is a damaged file
        raise ArtifactError(path, f"member {info.filename}: damaged "
                                  f"({type(err).__name__}: {err})") from None
    if len(blob) > cap:
        raise ArtifactError(path, f"member {info.filename}: larger than expected ({cap} bytes)")
    return blob


def _load_json(path: str, zf: zipfile.ZipFile, info: zipfile.ZipInfo, name: str) -> dict:
    return _parse_json(path, _read_member(path, zf, info, MAX_JSON_BYTES), name)


def _parse_json(path: str, blob: bytes, name: str) -> dict:
    try:
        value = json.loads(blob.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise ArtifactError(path, f"{name}: not valid JSON ({err})") from None
    if not isinstance(value, dict):
        raise ArtifactError(path, f"{name}: expected a JSON object. "
                                  f"Received: {type(value).__name__}")
    return value


def _field(path: str, obj: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(obj, dict) or key not in obj:
        raise ArtifactError(path, f"{where}: missing field {key!r}")
    value = obj[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ArtifactError(path, f"{where}: field {key!r} has the wrong type "
                                  f"({type(value).__name__})")
    return value


def _check_header(path: str, manifest: dict) -> None:
    if manifest.get("format") != FORMAT:
        raise ArtifactError(path, f"not a kiln artifact (manifest format is "
                                  f"{manifest.get('format')!r}, expected {FORMAT!r})")
    version = _field(path, manifest, "format_version", int, MANIFEST)
    if version > FORMAT_VERSION:
        raise ArtifactError(path, f"newer format version {version} (this kiln reads up to "
                                  f"{FORMAT_VERSION}); upgrade kiln to read it")
    if version < 1:
        raise ArtifactError(path, f"invalid format version {version}")


def _listed_members(path: str, manifest: dict) -> dict[str, tuple[int, str]]:
    listed: dict[str, tuple[int, str]] = {}
    for item in _field(path, manifest, "members", list, MANIFEST):
        name = _field(path, item, "name", str, "manifest.json members")
        size = _field(path, item, "size", int, f"manifest.json member {name}")
        digest = _field(path, item, "sha256", str, f"manifest.json member {name}")
        if name == MANIFEST or name in listed or not _safe_member(name):
            raise ArtifactError(path, f"manifest.json: invalid member name {name!r}")
        listed[name] = (size, digest)
    return listed


def _safe_member(name: str) -> bool:
    """Member names the format uses: folder/file, no absolute path, no '..', no backslash."""
    parts = name.split("/")
    return (0 < len(name) < 512 and not name.startswith("/") and "\\" not in name
            and all(p not in ("", ".", "..") for p in parts) and len(parts) <= 2)


def _validated(path: str, manifest: dict, data: dict[str, bytes]) -> Artifact:
    """Build the Artifact from checked member bytes, validating everything they declare."""
    members_used: set[str] = set()

    def member(name: Any, what: str) -> bytes:
        if not isinstance(name, str) or name not in data:
            raise ArtifactError(path, f"manifest.json: {what} names a missing member {name!r}")
        members_used.add(name)
        return data[name]

    backend = _field(path, manifest, "backend", str, MANIFEST)
    options = _field(path, manifest, "compile_options", dict, MANIFEST)
    version = _field(path, manifest, "kiln_version", str, MANIFEST)
    model_config = _parse_json(path, member(manifest.get("model", MODEL), "model"), MODEL)
    state_json = _field(path, manifest, "state", dict, MANIFEST)
    state: dict[str, np.ndarray] = {}
    for name, record in state_json.items():
        where = f"state {name!r}"
        blob = member(_field(path, record, "member", str, where), where)
        array = _load_array(path, record["member"], blob)
        if (list(array.shape) != record.get("shape")
                or str(array.dtype) != record.get("dtype")):
            raise ArtifactError(path, f"member {record['member']}: array {array.dtype}"
                                      f"{list(array.shape)} disagrees with the manifest")
        state[name] = array
    entries_json = _field(path, manifest, "entry_points", dict, MANIFEST)
    if "predict" not in entries_json:
        raise ArtifactError(path, "manifest.json: no entry point 'predict'")
    entries, ir, onnx_models, kernels = {}, {}, {}, {}
    graphs: dict[tuple[str, str], Graph] = {}
    for name, record in entries_json.items():
        if not isinstance(name, str) or not _ENTRY_RE.match(name):
            raise ArtifactError(path, f"manifest.json: invalid entry point name {name!r}")
        stages = _field(path, record, "ir", dict, f"entry point {name}")
        ir[name] = {}
        for stage in STAGES:
            text = _text(path, member(stages.get(stage), f"the {stage} IR of {name}"),
                         stages[stage])
            try:
                graphs[name, stage] = parse(text)
            except (KilnError, RecursionError) as err:
                raise ArtifactError(path, f"member {stages[stage]}: the IR does not parse "
                                          f"({err})") from None
            ir[name][stage] = text
        graph = graphs[name, "input"]
        _check_state(path, name, graph, state)
        _check_state(path, name, graphs[name, "optimized"], state)
        entries[name] = entry_point(name, graph)
        if _signature_json(entries[name]) != {k: record.get(k)
                                              for k in ("inputs", "outputs", "state")}:
            raise ArtifactError(path, f"manifest.json: the signature of entry point {name} "
                                      f"disagrees with its IR")
        if "onnx" in record:
            onnx_models[name] = member(record["onnx"], f"the ONNX model of {name}")
            _check_onnx(path, record["onnx"], onnx_models[name])
        if "kernel_source" in record:
            kernels[name] = _text(path, member(record["kernel_source"], f"the kernels of {name}"),
                                  record["kernel_source"])
    unused = sorted(set(data) - members_used)
    if unused:
        raise ArtifactError(path, f"unexpected member {unused[0]} (listed but not used)")
    return Artifact(path, manifest, backend, dict(options), version, model_config, entries,
                    state, onnx_models, kernels, ir, graphs)


def _signature_json(ep: EntryPoint) -> dict[str, Any]:
    return {"inputs": [_spec_json(s) for s in ep.inputs],
            "outputs": [_spec_json(s) for s in ep.outputs], "state": list(ep.state)}


def _text(path: str, blob: bytes, name: str) -> str:
    try:
        return blob.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ArtifactError(path, f"member {name}: not UTF-8 text ({err})") from None


def _load_array(path: str, name: str, blob: bytes) -> np.ndarray:
    """The array of an .npy member. Its header is read first (numpy parses it as a literal,
    never as code) so that an object dtype (a pickle) or a shape the bytes cannot hold is
    refused before np.load allocates anything."""
    fmt = np.lib.format
    try:
        f = io.BytesIO(blob)
        version = fmt.read_magic(f)
        if version not in ((1, 0), (2, 0)):
            raise ValueError(f".npy format version {version} (expected 1.0 or 2.0)")
        read_header = fmt.read_array_header_1_0 if version == (1, 0) else \
            fmt.read_array_header_2_0
        shape, _, dtype = read_header(f)
        if dtype.hasobject:
            raise ValueError("Object arrays cannot be loaded when allow_pickle=False "
                             "(the array holds Python objects: a pickle)")
        if int(np.prod(shape, dtype=object)) * dtype.itemsize != len(blob) - f.tell():
            raise ValueError(f"the header declares {dtype}{list(shape)}, which does not fit "
                             f"the {len(blob) - f.tell()} bytes that follow")
        array = np.load(io.BytesIO(blob), allow_pickle=False)
    except Exception as err:  # noqa: BLE001 - whatever np.load refuses, the member is bad
        raise ArtifactError(path, f"member {name}: not a plain .npy array "
                                  f"({type(err).__name__}: {err})") from None
    if not isinstance(array, np.ndarray) or str(array.dtype) not in DTYPES:
        raise ArtifactError(path, f"member {name}: dtype {getattr(array, 'dtype', '?')} is "
                                  f"not one of the IR's ({', '.join(DTYPES)})")
    return array


def _check_state(path: str, entry: str, graph: Graph, state: dict[str, np.ndarray]) -> None:
    for value in graph.state:
        array = state.get(value.name)
        if array is None:
            raise ArtifactError(path, f"entry point {entry}: no array for state {value.name}")
        t = value.type
        fits = (str(array.dtype) == t.dtype and array.ndim == t.rank
                and all(not isinstance(d, int) or d == n for d, n in zip(t.shape, array.shape)))
        if not fits:
            raise ArtifactError(path, f"state {value.name}: array {array.dtype}"
                                      f"{list(array.shape)} does not match the IR type {t} "
                                      f"of entry point {entry}")


def _check_onnx(path: str, name: str, blob: bytes) -> None:
    """Parse (never run) the model, and refuse external data: it would point at other files."""
    import onnx

    try:
        model = onnx.load_model_from_string(blob)
    except Exception as err:  # noqa: BLE001 - a protobuf that does not parse
        raise ArtifactError(path, f"member {name}: not an ONNX model ({err})") from None
    graphs, tensors = [model.graph], []
    while graphs:  # the main graph and every subgraph (Scan, Loop, If bodies)
        graph = graphs.pop()
        tensors += graph.initializer
        for node in graph.node:
            for attr in node.attribute:
                tensors += [attr.t] if attr.HasField("t") else []
                tensors += attr.tensors
                graphs += [attr.g] if attr.HasField("g") else []
                graphs += attr.graphs
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in tensors):
        raise ArtifactError(path, f"member {name}: refers to external data files")
