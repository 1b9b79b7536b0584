"""PyTorch models exported to ONNX (torch.onnx's TorchScript exporter, eval mode, a dynamic
batch), imported by kiln and run on numba: the same outputs as PyTorch. Needs the oracle
extra (torch)."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from kiln.frontends.onnx import import_onnx  # noqa: E402


def _cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.Hardswish(),
        nn.Conv2d(8, 12, 3, stride=2, groups=4), nn.ELU(), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Dropout(0.3), nn.Linear(12, 5), nn.LogSoftmax(-1))


def _conv1d() -> nn.Module:
    return nn.Sequential(nn.Conv1d(4, 6, 5, padding=2), nn.GELU(), nn.AvgPool1d(2),
                         nn.Conv1d(6, 6, 3, dilation=2), nn.Sigmoid(), nn.Flatten(),
                         nn.Linear(6 * 2, 2))


class _Block(nn.Module):
    """Self-attention written out (as in a small transformer) with LayerNorm and GELU."""

    def __init__(self) -> None:
        super().__init__()
        self.qkv, self.out = nn.Linear(16, 48), nn.Linear(16, 16)
        self.norm, self.ff = nn.LayerNorm(16), nn.Sequential(nn.Linear(16, 32), nn.GELU(),
                                                             nn.Linear(32, 16))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        q, k, v = self.qkv(x).reshape(b, t, 3, 2, 8).permute(2, 0, 3, 1, 4)
        att = torch.softmax(q @ k.transpose(-2, -1) / 8 ** 0.5, dim=-1)
        y = (att @ v).transpose(1, 2).reshape(b, t, 16)
        h = self.norm(x + self.out(y))
        return self.norm(h + self.ff(h)).mean(dim=1)


@pytest.mark.parametrize("build, shape", [(_cnn, (3, 16, 16)), (_conv1d, (4, 12)),
                                          (_Block, (6, 16))],
                         ids=["cnn", "conv1d", "attention"])
def test_a_pytorch_model_imports_with_its_outputs(build, shape) -> None:  # noqa: ANN001
    _check_import(build, shape)


def _check_import(build, shape) -> None:  # noqa: ANN001
    """The module's outputs on 5 samples equal kiln's (numba) import of its ONNX export."""
    torch.manual_seed(0)
    module = build().eval()
    with torch.no_grad():  # batch-norm statistics other than the initial ones
        for name, buffer in module.named_buffers():
            if name.endswith("running_var"):
                buffer.uniform_(0.5, 2.0)
            elif name.endswith("running_mean"):
                buffer.normal_()
    x = np.random.default_rng(0).standard_normal((5, *shape)).astype(np.float32)
    with torch.no_grad():
        want = module(torch.from_numpy(x)).numpy()
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.from_numpy(x[:2]),), buffer, dynamo=False,
                          input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}}, opset_version=17)
    import onnx

    model = import_onnx(onnx.load_from_string(buffer.getvalue()), backend="numba")
    np.testing.assert_allclose(model.predict(x, batch_size=3), want, rtol=1e-4, atol=1e-5)


class _Recurrent(nn.Module):
    """Two stacked bidirectional LSTM layers (batch first) and a GRU over their output, the
    last step of which a Linear reads."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(3, 6, num_layers=2, batch_first=True, bidirectional=True)
        self.gru = nn.GRU(12, 5, batch_first=True)
        self.head = nn.Linear(5, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, _ = self.lstm(x)
        z, _ = self.gru(y)
        return self.head(z[:, -1])


def test_pytorch_lstm_and_gru_import() -> None:
    _check_import(_Recurrent, (9, 3))
