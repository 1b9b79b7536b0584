"""Imported ONNX models against onnxruntime running the same file, on every CPU backend;
kiln's own exports imported back; the layout the importer keeps; its errors; OnnxModel and
its artifacts."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from kiln import layers, models
from kiln.compiler.artifact import read_artifact
from kiln.frontends.onnx import OnnxImportError, OnnxModel, import_onnx
from kiln.frontends.onnx.importer import import_graph

BACKENDS = ["reference", "numba", "onnxruntime"]


def _init(rng: np.random.Generator, name: str, *shape: int) -> onnx.TensorProto:
    return numpy_helper.from_array((rng.standard_normal(shape) * 0.3).astype(np.float32), name)


def _model(nodes: list, inputs: list, outputs: list, inits: list,
           opset: int = 17) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="kiln-tests")
    model.ir_version = 8
    inferred = {v.name: v for v in onnx.shape_inference.infer_shapes(model).graph.output}
    for out in model.graph.output:  # an output declared without a shape: ONNX's inferred one
        if not out.type.tensor_type.HasField("shape") and out.name in inferred:
            out.CopyFrom(inferred[out.name])
    onnx.checker.check_model(model)
    return model


def _ort(model: onnx.ModelProto, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    return session.run(None, feed)


def _cnn(rng: np.random.Generator) -> onnx.ModelProto:
    """A PyTorch-style NCHW network: conv, batch norm, relu, max pool, a depthwise and a
    grouped conv with explicit asymmetric pads, global average pool, flatten, gemm, softmax;
    a dynamic batch."""
    n = helper.make_node
    nodes = [
        n("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
        n("BatchNormalization", ["c1", "s", "o", "m", "v"], ["bn"], epsilon=1e-3),
        n("Relu", ["bn"], ["r1"]),
        n("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
        n("Conv", ["p1", "w2"], ["c2"], group=8, pads=[0, 1, 2, 1], kernel_shape=[3, 3]),
        n("Conv", ["c2", "w3", "b3"], ["c3"], group=2, strides=[2, 1],
          auto_pad="SAME_LOWER"),
        n("LeakyRelu", ["c3"], ["r3"], alpha=0.1),
        n("Add", ["r3", "bias4d"], ["a3"]),
        n("GlobalAveragePool", ["a3"], ["gap"]),
        n("Flatten", ["gap"], ["flat"]),
        n("Gemm", ["flat", "wd", "bd"], ["logits"], transB=1),
        n("Softmax", ["logits"], ["probs"], axis=-1),
    ]
    inits = [_init(rng, "w1", 8, 3, 3, 3), _init(rng, "b1", 8),
             _init(rng, "s", 8), _init(rng, "o", 8), _init(rng, "m", 8),
             numpy_helper.from_array(rng.uniform(0.5, 1.5, 8).astype(np.float32), "v"),
             _init(rng, "w2", 8, 1, 3, 3), _init(rng, "w3", 6, 4, 3, 3), _init(rng, "b3", 6),
             _init(rng, "bias4d", 6, 1, 1), _init(rng, "wd", 5, 6), _init(rng, "bd", 5)]
    return _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                        ["batch", 3, 12, 12])],
                  [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", 5])],
                  inits)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_cnn_equals_onnxruntime(backend: str) -> None:
    rng = np.random.default_rng(0)
    proto = _cnn(rng)
    x = rng.standard_normal((7, 3, 12, 12)).astype(np.float32)
    (want,) = _ort(proto, {"x": x})
    model = import_onnx(proto, backend=backend)
    got = model.predict(x, batch_size=4)  # two batches, the last one short
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_channels_last_is_kept_between_convolutions() -> None:
    """One transpose into channels-last at the first conv, one out before Flatten: none
    around the batch norm, relu, pools, the add of a [C,1,1] bias or the grouped convs."""
    imported = import_graph(_cnn(np.random.default_rng(0)))
    ops = [node.op for node in imported.graph.nodes]
    assert ops.count("transpose") == 2, ops
    kernel = imported.state["w1"]
    assert kernel.shape == (3, 3, 3, 8)  # HWIO, transposed once at import
    assert "batch_norm" not in " ".join(ops)


def test_kilns_own_export_imports_back(tmp_path) -> None:  # noqa: ANN001
    rng = np.random.default_rng(1)
    model = models.Sequential([layers.Input((10, 10, 2)),
                               layers.Conv2D(6, 3, padding="same", activation="relu"),
                               layers.MaxPooling2D(2), layers.SeparableConv2D(4, 3),
                               layers.Flatten(), layers.Dense(7, activation="softmax")])
    x = rng.standard_normal((5, 10, 10, 2)).astype(np.float32)
    want = model.predict(x, verbose=0)
    model.export(tmp_path / "m.onnx")
    imported = import_onnx(tmp_path / "m.onnx", backend="numba")
    np.testing.assert_allclose(imported.predict(x), want, rtol=1e-5, atol=1e-6)
    # kiln exports transposes around each ONNX Conv; imported, they cancel
    ops = [node.op for node in imported.graph.nodes]
    assert "transpose" not in ops, ops


def test_mlp_with_shape_arithmetic_and_several_outputs() -> None:
    """PyTorch's Shape -> Gather -> Unsqueeze -> Concat -> Reshape chain over a symbolic
    batch becomes one reshape; two outputs come back as a list."""
    rng = np.random.default_rng(2)
    n = helper.make_node
    nodes = [
        n("Shape", ["x"], ["shape"]),
        n("Constant", [], ["zero"], value=numpy_helper.from_array(np.array(0, np.int64))),
        n("Gather", ["shape", "zero"], ["batch"], axis=0),
        n("Unsqueeze", ["batch", "axis0"], ["batch1"]),
        n("Concat", ["batch1", "minus1"], ["target"], axis=0),
        n("Reshape", ["x", "target"], ["flat"]),
        n("MatMul", ["flat", "w"], ["h"]),
        n("Add", ["h", "b"], ["hb"]),
        # GELU as PyTorch exports it before opset 20: x * (1 + erf(x / sqrt 2)) / 2
        n("Div", ["hb", "sqrt2"], ["hs"]), n("Erf", ["hs"], ["erf"]),
        n("Add", ["erf", "one"], ["erf1"]), n("Mul", ["hb", "erf1"], ["gx"]),
        n("Mul", ["gx", "half"], ["g"]),
        n("LayerNormalization", ["g", "gamma", "beta"], ["ln"], axis=-1),
        n("ReduceMean", ["ln"], ["mean"], axes=[1], keepdims=0),
        n("ArgMax", ["ln"], ["top"], axis=1, keepdims=0),
    ]
    inits = [numpy_helper.from_array(np.array([0], np.int64), "axis0"),
             numpy_helper.from_array(np.array([-1], np.int64), "minus1"),
             _init(rng, "w", 12, 6), _init(rng, "b", 6), _init(rng, "gamma", 6),
             _init(rng, "beta", 6)] + [
        numpy_helper.from_array(np.array(v, np.float32), name)
        for name, v in (("sqrt2", np.sqrt(2.0)), ("one", 1.0), ("half", 0.5))]
    proto = _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                         ["N", 3, 4])],
                   [helper.make_tensor_value_info("mean", TensorProto.FLOAT, ["N"]),
                    helper.make_tensor_value_info("top", TensorProto.INT64, ["N"])], inits)
    x = rng.standard_normal((9, 3, 4)).astype(np.float32) * 3
    want = _ort(proto, {"x": x})
    model = import_onnx(proto, backend="numba")
    reshapes = [node for node in model.graph.nodes if node.op == "reshape"]
    assert len(reshapes) == 1 and reshapes[0].outputs[0].type.shape == ("N", 12)
    mean, top = model.predict({"x": x})
    np.testing.assert_allclose(mean, want[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(top, want[1])
    assert top.dtype == np.int64


@settings(max_examples=40, deadline=None)
@given(kernel=st.tuples(st.integers(1, 3), st.integers(1, 3)),
       strides=st.tuples(st.integers(1, 3), st.integers(1, 2)),
       pads=st.tuples(*[st.integers(0, 2)] * 4),
       auto_pad=st.sampled_from(["NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"]),
       dilations=st.tuples(st.integers(1, 2), st.integers(1, 2)),
       group=st.sampled_from([1, 2, 4]), size=st.tuples(st.integers(5, 9), st.integers(5, 8)),
       pool=st.sampled_from(["MaxPool", "AveragePool"]), ceil=st.booleans(),
       include_pad=st.booleans(), seed=st.integers(0, 99))
def test_window_geometry_equals_onnxruntime(kernel, strides, pads, auto_pad, dilations,  # noqa: ANN001
                                            group, size, pool, ceil, include_pad, seed) -> None:
    """Conv (groups, dilations, every auto_pad, asymmetric pads) then a pool (ceil_mode,
    count_include_pad), each against onnxruntime on the same random geometry."""
    rng = np.random.default_rng(seed)
    pad_attr = {"pads": list(pads)} if auto_pad == "NOTSET" else {}
    n = helper.make_node
    conv = n("Conv", ["x", "w"], ["c"], kernel_shape=list(kernel), strides=list(strides),
             dilations=list(dilations), group=group, auto_pad=auto_pad, **pad_attr)
    pool_pads = [min(p, k - 1) for p, k in zip(pads, (*kernel, *kernel), strict=True)]
    extra = {"count_include_pad": int(include_pad)} if pool == "AveragePool" else {}
    pooled = n(pool, ["c"], ["y"], kernel_shape=list(kernel), strides=list(strides[::-1]),
               pads=pool_pads, ceil_mode=int(ceil), **extra)
    cin, cout = 4, 4
    proto = _model([conv, pooled],
                   [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                  [2, cin, *size])],
                   [helper.make_tensor_value_info("c", TensorProto.FLOAT, None),
                    helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                   [_init(rng, "w", cout, cin // group, *kernel)])
    x = rng.standard_normal((2, cin, *size)).astype(np.float32)
    try:
        conv_out, want = _ort(proto, {"x": x})
    except Exception:  # a geometry onnxruntime refuses is not a case
        return
    h, w = conv_out.shape[2:]
    if h + pool_pads[0] + pool_pads[2] < kernel[0] or w + pool_pads[1] + pool_pads[3] < kernel[1]:
        return  # a pool window larger than its padded input: no output in ONNX's spec
    got = import_onnx(proto, backend="reference").predict(x)
    np.testing.assert_allclose(got[0], conv_out, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got[1], want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("opset", [11, 13])
def test_softmax_axis_before_and_after_opset_13(opset: int) -> None:
    """Before opset 13, Softmax(axis=1) of a [2, 3, 4] is over the flattened 3*4 trailing
    values; from 13, over axis 1 alone."""
    proto = _model([helper.make_node("Softmax", ["x"], ["y"], axis=1)],
                   [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 4])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3, 4])], [], opset)
    x = np.random.default_rng(4).standard_normal((2, 3, 4)).astype(np.float32)
    (want,) = _ort(proto, {"x": x})
    np.testing.assert_allclose(import_onnx(proto).predict(x), want, rtol=1e-5, atol=1e-7)


# -- errors ------------------------------------------------------------------------------------
def _one_node(op: str, opset: int = 17, **attrs: object) -> onnx.ModelProto:
    return _model([helper.make_node(op, ["x"], ["y"], **attrs)],
                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [], opset)


@pytest.mark.parametrize("proto, fragments", [
    (lambda: _model([helper.make_node("Mod", ["x", "x"], ["y"], fmod=1)],
                    [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
                    [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])], []),
     ["node #0 (Mod)", "kiln does not import Mod", "It imports: Abs, Add"]),
    (lambda: _model(
        [helper.make_node("CumSum", ["x", "axis"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
        [numpy_helper.from_array(np.array(1, np.int64), "axis")]),
     ["(CumSum)", "does not import CumSum"]),
    (lambda: _model([helper.make_node("Relu", ["x"], ["y"])],
                    [helper.make_tensor_value_info("x", TensorProto.FLOAT16, [2])],
                    [helper.make_tensor_value_info("y", TensorProto.FLOAT16, None)], []),
     ["graph input 'x'", "float32, float64, int32, int64 or bool", "Received: float16"]),
    (lambda: _model([helper.make_node("Pad", ["x", "p"], ["y"], mode="reflect")],
                    [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
                    [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                    [numpy_helper.from_array(np.array([0, 1, 0, 1], np.int64), "p")]),
     ["(Pad)", "constant only", "'reflect'"]),
    (lambda: _model([helper.make_node("Reshape", ["x", "s"], ["y"])],
                    [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3]),
                     helper.make_tensor_value_info("s", TensorProto.INT64, [2])],
                    [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], []),
     ["(Reshape)", "shape to be known at import", "computed at run time"]),
])
def test_refusals_name_the_node_and_the_reason(proto, fragments) -> None:  # noqa: ANN001
    with pytest.raises(OnnxImportError) as info:
        import_graph(proto())
    for fragment in fragments:
        assert fragment in str(info.value), (fragment, str(info.value))


def test_files_that_are_not_models(tmp_path) -> None:  # noqa: ANN001
    with pytest.raises(OnnxImportError, match="no such file"):
        import_onnx(tmp_path / "missing.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"\xff\xfe not protobuf")
    with pytest.raises(OnnxImportError, match="junk.onnx: not an ONNX model"):
        import_onnx(tmp_path / "junk.onnx")
    proto = _one_node("Relu")
    del proto.opset_import[:]
    proto.opset_import.append(helper.make_opsetid("", 5))
    path = tmp_path / "old.onnx"
    onnx.save(proto, path)
    with pytest.raises(OnnxImportError, match="old.onnx: expected opset 7 or later"):
        import_onnx(path)


def test_external_weights_are_refused(tmp_path) -> None:  # noqa: ANN001
    proto = _cnn(np.random.default_rng(0))
    onnx.save(proto, tmp_path / "ext.onnx", save_as_external_data=True,
              all_tensors_to_one_file=True, location="weights.bin", size_threshold=0)
    with pytest.raises(OnnxImportError, match="external file"):
        import_onnx(tmp_path / "ext.onnx")


# -- OnnxModel and artifacts -------------------------------------------------------------------
def test_saved_artifact_loads_as_an_inference_model(tmp_path) -> None:  # noqa: ANN001
    rng = np.random.default_rng(3)
    proto = _cnn(rng)
    onnx.save(proto, tmp_path / "cnn.onnx")
    x = rng.standard_normal((3, 3, 12, 12)).astype(np.float32)
    model = import_onnx(tmp_path / "cnn.onnx")
    want = model.predict(x)
    artifact = model.save(tmp_path / "cnn.kiln", backend="onnxruntime")
    assert artifact.model_config["class_name"] == "OnnxModel"
    assert artifact.model_config["config"]["source"] == "cnn.onnx"
    assert list(artifact.entries) == ["predict"] and "predict" in artifact.onnx
    assert artifact.count_params() == model.count_params() > 0
    loaded = models.load_model(tmp_path / "cnn.kiln")
    assert isinstance(loaded, OnnxModel)
    np.testing.assert_allclose(loaded.predict(x), want, rtol=1e-5, atol=1e-6)
    assert read_artifact(tmp_path / "cnn.kiln").backend == "onnxruntime"


def test_predict_checks_its_inputs() -> None:
    model = import_onnx(_cnn(np.random.default_rng(0)))
    with pytest.raises(ValueError, match=r"Expected x as a dict with the keys \['x'\]"):
        model.predict({"y": np.zeros((1, 3, 12, 12), np.float32)})
    with pytest.raises(TypeError, match="expected input 'x' of rank 4"):
        model.predict(np.zeros((3, 12, 12), np.float32))
    with pytest.raises(ValueError, match="batch_size a positive int"):
        model.predict(np.zeros((1, 3, 12, 12), np.float32), batch_size=0)


# -- recurrent ops -------------------------------------------------------------------------
@settings(max_examples=30, deadline=None)
@given(op=st.sampled_from(["LSTM", "GRU", "RNN"]),
       direction=st.sampled_from(["forward", "reverse", "bidirectional"]),
       layout=st.sampled_from([0, 1]), steps=st.integers(1, 5), hidden=st.integers(1, 4),
       with_bias=st.booleans(), with_initial=st.booleans(), extra=st.booleans(),
       seed=st.integers(0, 99))
def test_recurrent_ops_equal_onnxruntime(op, direction, layout, steps, hidden, with_bias,  # noqa: ANN001
                                         with_initial, extra, seed) -> None:
    """LSTM (with peepholes as `extra`), GRU (linear_before_reset as `extra`) and RNN, every
    direction and layout, with and without biases and initial states, against onnxruntime;
    every output (Y, Y_h and for LSTM Y_c); layout 1 against ONNX's reference evaluator."""
    rng = np.random.default_rng(seed)
    gates = {"LSTM": 4, "GRU": 3, "RNN": 1}[op]
    dirs, batch, features = 2 if direction == "bidirectional" else 1, 3, 2
    inits = [_init(rng, "W", dirs, gates * hidden, features),
             _init(rng, "R", dirs, gates * hidden, hidden)]
    names = ["x", "W", "R", "B" if with_bias else ""]
    if with_bias:
        inits.append(_init(rng, "B", dirs, 2 * gates * hidden))
    state_shape = (batch, dirs, hidden) if layout else (dirs, batch, hidden)
    states = ["h0", "c0"][:2 if op == "LSTM" else 1]
    if with_initial:
        inits += [_init(rng, s, *state_shape) for s in states]
    names += ["", *(states if with_initial else [""] * len(states))]
    attrs = {"hidden_size": hidden, "direction": direction, "layout": layout}
    if op == "LSTM" and extra:
        inits.append(_init(rng, "P", dirs, 3 * hidden))
        names += ["P"]
    if op == "GRU":
        attrs["linear_before_reset"] = int(extra)
    outputs = ["y", "y_h", "y_c"][:3 if op == "LSTM" else 2]
    x_shape = (batch, steps, features) if layout else (steps, batch, features)
    node = helper.make_node(op, [n for n in names], outputs, **attrs)
    proto = _model([node], [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                   [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs],
                   inits)
    x = rng.standard_normal(x_shape).astype(np.float32)
    if layout:  # onnxruntime has no batch-first recurrent ops: ONNX's reference evaluator
        from onnx.reference import ReferenceEvaluator

        want = ReferenceEvaluator(proto).run(None, {"x": x})
    else:
        want = _ort(proto, {"x": x})
    got = import_onnx(proto, backend="reference").predict(x)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


def test_an_lstm_classifier_on_numba() -> None:
    """A bidirectional LSTM over a dynamic batch, then Gemm on its last states: numba and
    onnxruntime backends agree with onnxruntime on the file."""
    rng = np.random.default_rng(6)
    n = helper.make_node
    nodes = [n("LSTM", ["x", "W", "R", "B"], ["", "h"], hidden_size=5,
               direction="bidirectional"),
             n("Transpose", ["h"], ["hb"], perm=[1, 0, 2]),
             n("Flatten", ["hb"], ["f"]), n("Gemm", ["f", "wd"], ["y"])]
    proto = _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                         [7, "N", 3])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])],
                   [_init(rng, "W", 2, 20, 3), _init(rng, "R", 2, 20, 5),
                    _init(rng, "B", 2, 40), _init(rng, "wd", 10, 2)])
    x = rng.standard_normal((7, 6, 3)).astype(np.float32)
    (want,) = _ort(proto, {"x": x})
    for backend in ("numba", "onnxruntime"):
        got = import_onnx(proto, backend=backend).predict(x, batch_size=6)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=backend)


def test_named_dimensions_are_symbols_shared_by_name() -> None:
    """dim_params: the first on a leading axis is the batch N, others keep their names, and
    one name is one symbol in every input: one compiled graph takes any sequence length."""
    n = helper.make_node
    proto = _model([n("ReduceSum", ["seq", "axes"], ["total"], keepdims=0),
                    n("Add", ["total", "bias"], ["sum"]), n("Relu", ["sum"], ["y"])],
                   [helper.make_tensor_value_info("seq", TensorProto.FLOAT,
                                                  ["batch", "length", 4]),
                    helper.make_tensor_value_info("bias", TensorProto.FLOAT, ["batch", 4])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
                   [numpy_helper.from_array(np.array([1], np.int64), "axes")])
    model = import_onnx(proto, backend="numba")
    assert [v.type.shape for v in model.graph.inputs] == [("N", "length", 4), ("N", 4)]
    rng = np.random.default_rng(7)
    for length in (3, 11):
        feed = {"seq": rng.standard_normal((5, length, 4)).astype(np.float32),
                "bias": rng.standard_normal((5, 4)).astype(np.float32)}
        (want,) = _ort(proto, feed)
        np.testing.assert_allclose(model.predict(feed, batch_size=2), want, rtol=1e-5,
                                   atol=1e-6)


@pytest.mark.parametrize("backend", ["reference", "numba"])
def test_an_upsampling_decoder_equals_onnxruntime(backend: str) -> None:
    """A U-Net style decoder: conv, Resize x2 (nearest, then linear with half_pixel and a
    cubic one with align_corners), InstanceNormalization, DepthToSpace, against onnxruntime;
    the resizes keep channels last (no transposes besides the two at the edges)."""
    rng = np.random.default_rng(8)
    n = helper.make_node
    nodes = [
        n("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]),
        n("Resize", ["c1", "", "s2"], ["u1"], mode="nearest"),
        n("Relu", ["u1"], ["r1"]),
        n("Resize", ["r1", "", "s2"], ["u2"], mode="linear",
          coordinate_transformation_mode="half_pixel"),
        n("InstanceNormalization", ["u2", "g", "bt"], ["in2"], epsilon=1e-4),
        n("Resize", ["in2", "", "", "sizes"], ["u3"], mode="cubic",
          coordinate_transformation_mode="align_corners"),
        n("Conv", ["u3", "w2"], ["c2"]),
        n("DepthToSpace", ["c2"], ["y"], blocksize=2, mode="CRD"),
    ]
    inits = [_init(rng, "w1", 4, 3, 3, 3),
             numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "s2"),
             _init(rng, "g", 4), _init(rng, "bt", 4),
             numpy_helper.from_array(np.array([2, 4, 21, 19], np.int64), "sizes"),
             _init(rng, "w2", 8, 4, 1, 1)]
    proto = _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                         [2, 3, 5, 4])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits,
                   opset=18)
    x = rng.standard_normal((2, 3, 5, 4)).astype(np.float32)
    (want,) = _ort(proto, {"x": x})
    model = import_onnx(proto, backend=backend)
    np.testing.assert_allclose(model.predict(x), want, rtol=1e-4, atol=1e-5)
    ops = [node.op for node in model.graph.nodes]
    assert ops.count("transpose") == 3, ops  # in, out of channels last, DepthToSpace's own


@pytest.mark.parametrize("equation, shapes", [
    ("bhqd,bhkd->bhqk", [(2, 3, 4, 5), (2, 3, 6, 5)]),  # attention scores
    ("...ij,jk", [(2, 3, 4), (4, 5)]),  # implicit output, an ellipsis
    ("ij,jk,kl->il", [(3, 4), (4, 5), (5, 2)]),  # a chain of three
    ("abc,cd,bd->a", [(2, 3, 4), (4, 5), (3, 5)]),
    ("ijk->kj", [(2, 3, 4)]),  # one operand: a sum and a transpose
])
def test_einsum_equals_onnxruntime(equation: str, shapes: list) -> None:
    rng = np.random.default_rng(9)
    names = [f"x{k}" for k in range(len(shapes))]
    proto = _model([helper.make_node("Einsum", names, ["y"], equation=equation)],
                   [helper.make_tensor_value_info(n, TensorProto.FLOAT, s)
                    for n, s in zip(names, shapes, strict=True)],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [])
    feed = {n: rng.standard_normal(s).astype(np.float32) for n, s in zip(names, shapes,
                                                                         strict=True)}
    (want,) = _ort(proto, feed)
    got = import_onnx(proto).predict(feed if len(names) > 1 else feed["x0"])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
