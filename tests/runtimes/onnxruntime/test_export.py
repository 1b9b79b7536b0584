"""export_onnx: a standalone inference model with the weights as initializers, opened by a
bare onnxruntime.InferenceSession (no kiln involved in running it), at any batch size."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from kiln.ir import KilnValueError
from kiln.ir.training import RMSprop
from kiln.runtimes.onnxruntime import export_onnx
from kiln.runtimes.reference import run_graph
from tests.models import convnet, lstm, mlp


@pytest.mark.parametrize("make", [mlp, convnet, lstm], ids=lambda f: f.__name__)
def test_export_opens_in_a_bare_session(make, tmp_path) -> None:  # noqa: ANN001
    model = make()
    path = tmp_path / "model.onnx"
    export_onnx(model.forward, model.params, path)
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]  # no temporary file left
    onnx.checker.check_model(str(path), full_check=True)
    proto = onnx.load(str(path))
    assert [i.name for i in proto.graph.input] == ["x"]  # the weights are initializers
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (1, 5):
        x = model.x[:batch]
        (got,) = session.run(["out"], {"x": x})
        want = run_graph(model.forward, {"x": x}, model.params)[0]["out"]
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_export_refuses_a_training_graph(tmp_path) -> None:  # noqa: ANN001
    model = mlp()
    step = model.train_step(RMSprop())
    with pytest.raises(KilnValueError, match="expected a graph without state updates"):
        export_onnx(step.graph, model.initial_state(RMSprop()), tmp_path / "step.onnx")
    assert not list(tmp_path.iterdir())


def test_export_checks_the_weights(tmp_path) -> None:  # noqa: ANN001
    model = mlp()
    params = dict(model.params)
    params["dense.kernel"] = params["dense.kernel"].astype(np.float64)
    with pytest.raises(TypeError, match=r"%dense.kernel expected dtype float32"):
        export_onnx(model.forward, params, tmp_path / "m.onnx")
    del params["dense.kernel"]
    with pytest.raises(KilnValueError, match="no value given for state %dense.kernel"):
        export_onnx(model.forward, params, tmp_path / "m.onnx")
