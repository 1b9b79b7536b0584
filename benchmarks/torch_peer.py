"""PyTorch's side: the same models as torch modules with kiln's initial weights copied
in, trained eagerly and through torch.compile, and exported to ONNX for onnxruntime.

Written the way a PyTorch user writes them: logits out of the module, the fused
cross-entropy-with-logits losses, torch.optim.RMSprop with Keras's rho and epsilon. The
convnets run in torch's native NCHW layout (the input transposed once, before timing); a
SeparableConv2D is torch's depthwise Conv2d (groups = channels, no bias) then a 1x1 Conv2d.
The augmented convnet resamples with F.grid_sample (bilinear, reflection padding) on grids
computed once, in training mode only (predict runs the module in eval mode, as Keras's
predict skips augmentation).
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.models import (
    A_CONVS,
    A_FLAT,
    EMBED,
    EPSILON,
    LEARNING_RATE,
    RHO,
    SEPARABLE,
    SEPARABLE_POOLS,
    T_DENSE,
    T_EMBED,
    T_HEADS,
    T_VOCAB,
    UNITS,
    VOCAB,
    augment_coordinates,
    binary,
)
from benchmarks.threads import THREADS

torch.set_num_threads(THREADS)
try:
    torch.set_num_interop_threads(1)
except RuntimeError:  # already set in this process (the pool exists once work has run)
    pass


class MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(784, 512), nn.Linear(512, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.relu(self.fc1(x)))


class ConvNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 32, 3), nn.Conv2d(32, 64, 3)
        self.fc = nn.Linear(1600, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc(torch.flatten(x, 1))


class SeparableNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.depthwise = nn.ModuleList(nn.Conv2d(cin, cin, 3, groups=cin, bias=False)
                                       for cin, _ in SEPARABLE)
        self.pointwise = nn.ModuleList(nn.Conv2d(cin, cout, 1) for cin, cout in SEPARABLE)
        self.fc1, self.fc2 = nn.Linear(128, 32), nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for k, (depthwise, pointwise) in enumerate(zip(self.depthwise, self.pointwise)):
            x = F.relu(pointwise(depthwise(x)))
            if k in SEPARABLE_POOLS:
                x = F.max_pool2d(x, 2)
        return self.fc2(F.relu(self.fc1(x.mean(dim=(2, 3)))))


def sampling_grid(h: int, w: int, xs: np.ndarray, ys: np.ndarray) -> torch.Tensor:
    """F.grid_sample's grid (1, h, w, 2) reading input pixel coordinates (xs, ys), each (h, w).
    With align_corners=False torch maps the normalized g to the pixel coordinate
    ((g + 1) size - 1) / 2, so pixel p is g = (2 p + 1) / size - 1; its "reflection" padding
    then mirrors about -0.5 and size - 0.5, the half-sample symmetric "reflect" of Keras
    (whose bilinear reflects the two neighbour indices: for linear interpolation the same)."""
    grid = np.stack([(2 * xs + 1) / w - 1, (2 * ys + 1) / h - 1], axis=-1)
    return torch.from_numpy(grid[None].astype(np.float32))


def augment(x: torch.Tensor, grids: list[torch.Tensor]) -> torch.Tensor:
    """The fixed resamplings on NCHW images, one grid_sample each, in order."""
    for grid in grids:
        x = F.grid_sample(x, grid.expand(x.shape[0], -1, -1, -1), mode="bilinear",
                          padding_mode="reflection", align_corners=False)
    return x


class AugmentedNet(nn.Module):
    """The chapter-8 convnet: in training, the fixed rotation then the fixed zoom (constant
    grids, buffers of the module), Rescaling 1/255, two conv + pool, a Dense 1 (logits)."""

    def __init__(self, h: int = 64, w: int = 64) -> None:
        super().__init__()
        c1, c2 = A_CONVS
        self.conv1, self.conv2 = nn.Conv2d(3, c1, 3), nn.Conv2d(c1, c2, 3)
        self.fc = nn.Linear(A_FLAT, 1)
        for k, (xs, ys) in enumerate(augment_coordinates(h, w)):
            self.register_buffer(f"grid{k}", sampling_grid(h, w, xs, ys), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            x = augment(x, [self.grid0, self.grid1])
        x = x * (1.0 / 255)
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc(torch.flatten(x, 1))


class LSTMNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(VOCAB, EMBED)
        self.lstm = nn.LSTM(EMBED, UNITS, batch_first=True)
        self.fc = nn.Linear(UNITS, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, (h, _) = self.lstm(self.embedding(x))
        return self.fc(h[-1])


class TransformerNet(nn.Module):
    """The encoder classifier as a PyTorch user writes it: Linear projections, heads by
    view and transpose, F.scaled_dot_product_attention, LayerNorm with Keras's epsilon."""

    def __init__(self) -> None:
        super().__init__()
        e, width = T_EMBED, T_HEADS * T_EMBED
        self.embedding = nn.Embedding(T_VOCAB, e)
        self.query, self.key, self.value = (nn.Linear(e, width) for _ in range(3))
        self.output = nn.Linear(width, e)
        self.norm1, self.norm2 = nn.LayerNorm(e, eps=1e-3), nn.LayerNorm(e, eps=1e-3)
        self.dense1, self.dense2 = nn.Linear(e, T_DENSE), nn.Linear(T_DENSE, e)
        self.fc = nn.Linear(e, 1)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embedding(tokens)
        b, t, _ = x.shape

        def heads(projection: nn.Linear) -> torch.Tensor:
            return projection(x).view(b, t, T_HEADS, T_EMBED).transpose(1, 2)

        a = F.scaled_dot_product_attention(heads(self.query), heads(self.key),
                                           heads(self.value))
        x = self.norm1(x + self.output(a.transpose(1, 2).reshape(b, t, -1)))
        x = self.norm2(x + self.dense2(F.relu(self.dense1(x))))
        return self.fc(x.amax(dim=1))


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))


def build(name: str, weights: list[np.ndarray]) -> nn.Module:
    """The torch module of `name` holding kiln's (Keras-layout) weights."""
    with torch.no_grad():
        if name == "mlp":
            m: nn.Module = MLP()
            w1, b1, w2, b2 = weights
            pairs = [(m.fc1.weight, w1.T), (m.fc1.bias, b1), (m.fc2.weight, w2.T),
                     (m.fc2.bias, b2)]
        elif name == "convnet":
            m = ConvNet()
            k1, b1, k2, b2, w, b = weights
            # Keras flattens (h, w, c); torch flattens (c, h, w): reorder the dense rows.
            w_t = w.reshape(5, 5, 64, 10).transpose(2, 0, 1, 3).reshape(1600, 10).T
            pairs = [(m.conv1.weight, k1.transpose(3, 2, 0, 1)), (m.conv1.bias, b1),
                     (m.conv2.weight, k2.transpose(3, 2, 0, 1)), (m.conv2.bias, b2),
                     (m.fc.weight, w_t), (m.fc.bias, b)]
        elif name == "augmented":
            m = AugmentedNet()
            k1, b1, k2, b2, w, b = weights
            # Keras flattens (h, w, c); torch flattens (c, h, w): reorder the dense rows.
            w_t = w.reshape(14, 14, A_CONVS[1], 1).transpose(2, 0, 1, 3).reshape(A_FLAT, 1).T
            pairs = [(m.conv1.weight, k1.transpose(3, 2, 0, 1)), (m.conv1.bias, b1),
                     (m.conv2.weight, k2.transpose(3, 2, 0, 1)), (m.conv2.bias, b2),
                     (m.fc.weight, w_t), (m.fc.bias, b)]
        elif name == "separable":
            m = SeparableNet()
            pairs = []
            for k in range(len(SEPARABLE)):
                dk, pk, bias = weights[3 * k:3 * k + 3]
                pairs += [(m.depthwise[k].weight, dk.transpose(2, 3, 0, 1)),
                          (m.pointwise[k].weight, pk.transpose(3, 2, 0, 1)),
                          (m.pointwise[k].bias, bias)]
            w1, b1, w2, b2 = weights[-4:]
            pairs += [(m.fc1.weight, w1.T), (m.fc1.bias, b1), (m.fc2.weight, w2.T),
                      (m.fc2.bias, b2)]
        elif name == "transformer":
            m = TransformerNet()
            emb, *rest = weights
            pairs = [(m.embedding.weight, emb)]
            for k, linear in enumerate((m.query, m.key, m.value)):
                kernel, bias = rest[2 * k:2 * k + 2]
                pairs += [(linear.weight, kernel.reshape(T_EMBED, -1).T),
                          (linear.bias, bias.reshape(-1))]
            kernel, bias, g1, b1, k1, c1, k2, c2, g2, b2, w, b = rest[6:]
            pairs += [(m.output.weight, kernel.reshape(-1, T_EMBED).T), (m.output.bias, bias),
                      (m.norm1.weight, g1), (m.norm1.bias, b1), (m.dense1.weight, k1.T),
                      (m.dense1.bias, c1), (m.dense2.weight, k2.T), (m.dense2.bias, c2),
                      (m.norm2.weight, g2), (m.norm2.bias, b2), (m.fc.weight, w.T),
                      (m.fc.bias, b)]
        else:
            m = LSTMNet()
            emb, kernel, recurrent, bias, w, b = weights
            # Keras's gate order i, f, c, o is torch's i, f, g, o; torch has two biases.
            pairs = [(m.embedding.weight, emb), (m.lstm.weight_ih_l0, kernel.T),
                     (m.lstm.weight_hh_l0, recurrent.T), (m.lstm.bias_ih_l0, bias),
                     (m.lstm.bias_hh_l0, np.zeros_like(bias)), (m.fc.weight, w.T),
                     (m.fc.bias, b)]
        for param, value in pairs:
            param.copy_(_t(value))
    return m


def inputs(name: str, x: np.ndarray) -> torch.Tensor:
    """x in torch's layout: NCHW for the convnet, int64 indices for the LSTM."""
    if name in ("convnet", "separable", "augmented"):
        return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    if name in ("lstm", "transformer"):
        return torch.from_numpy(x.astype(np.int64))
    return torch.from_numpy(np.ascontiguousarray(x))


def loss_fn(name: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    if binary(name):
        return F.binary_cross_entropy_with_logits
    return F.cross_entropy  # one-hot targets are class probabilities to it


def probabilities(name: str, logits: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(logits) if binary(name) else torch.softmax(logits, -1)


class TorchPeer:
    """One torch model trained by one optimizer on one fixed batch."""

    def __init__(self, name: str, weights: list[np.ndarray], x: np.ndarray, y: np.ndarray):
        self.name = name
        self.model = build(name, weights)
        self.optimizer = torch.optim.RMSprop(self.model.parameters(), lr=LEARNING_RATE,
                                             alpha=RHO, eps=EPSILON)
        self.x, self.y = inputs(name, x), torch.from_numpy(y)
        criterion = loss_fn(name)
        model, optimizer, xt, yt = self.model, self.optimizer, self.x, self.y

        def step() -> torch.Tensor:
            optimizer.zero_grad(set_to_none=True)
            loss = criterion(model(xt), yt)
            loss.backward()
            optimizer.step()
            return loss

        self.step = step

    def train_eager(self) -> Callable[[], object]:
        return self.step

    def train_compiled(self) -> Callable[[], object]:
        """The whole step (forward, loss, backward, optimizer) under one torch.compile; it
        splits at backward() into the forward/backward graph and the optimizer's graph."""
        return torch.compile(self.step)

    def loss(self) -> float:
        return float(self.step())

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Probabilities in eval mode (no augmentation), the module left in its mode."""
        training = self.model.training
        self.model.eval()
        try:
            with torch.inference_mode():
                return probabilities(self.name, self.model(inputs(self.name, x))).numpy()
        finally:
            self.model.train(training)

    def predict_eager(self, x: np.ndarray) -> Callable[[], object]:
        model, name = self.model.eval(), self.name

        def call() -> torch.Tensor:
            with torch.inference_mode():
                return probabilities(name, model(inputs(name, x)))

        return call

    def predict_compiled(self, x: np.ndarray) -> Callable[[], object]:
        """A compiled predict for this batch size alone (dynamic=False: one graph per size)."""
        model, name = self.model.eval(), self.name
        compiled = torch.compile(lambda t: probabilities(name, model(t)), dynamic=False)

        def call() -> torch.Tensor:
            with torch.inference_mode():
                return compiled(inputs(name, x))

        return call

    def onnx_session(self) -> tuple[object, str]:
        """An onnxruntime session on torch.onnx.export of the predict function (batch dim
        dynamic), with the session options kiln's onnxruntime backend uses; and which
        exporter made it."""
        import onnxruntime as ort

        from benchmarks.threads import THREADS

        name = self.name
        model = self.model.eval()

        class Predict(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.inner = model

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return probabilities(name, self.inner(x))

        wrapper = Predict().eval()
        example = inputs(name, np.zeros((2, *self._sample_shape()), self._dtype()))
        data, exporter = _export(wrapper, example)
        self.onnx_bytes = data  # what kiln's importer reads beside onnxruntime
        options = ort.SessionOptions()
        options.intra_op_num_threads = THREADS
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        return session, exporter

    def _sample_shape(self) -> tuple[int, ...]:
        return {"mlp": (784,), "convnet": (28, 28, 1), "lstm": (100,),
                "separable": (64, 64, 3), "transformer": (128,),
                "augmented": (64, 64, 3)}[self.name]

    def _dtype(self) -> type:
        return np.int32 if self.name in ("lstm", "transformer") else np.float32


def onnx_call(session: object, name: str, x: np.ndarray) -> Callable[[], object]:
    """One session.run on x already in torch's layout (what a user of the export feeds)."""
    xt = inputs(name, x).numpy()
    input_name = session.get_inputs()[0].name  # type: ignore[attr-defined]
    return lambda: session.run(None, {input_name: xt})  # type: ignore[attr-defined]


def _export(module: nn.Module, example: torch.Tensor) -> tuple[bytes, str]:
    """The ONNX bytes of `module` with a dynamic batch: the dynamo exporter when onnxscript
    is installed, else the legacy TorchScript exporter."""
    import warnings

    errors = []
    try:
        import onnxscript  # noqa: F401

        batch = torch.export.Dim("batch", min=1, max=4096)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(module, (example,), dynamo=True,
                                        input_names=["x"], output_names=["y"],
                                        dynamic_shapes=({0: batch},), verbose=False)
        return program.model_proto.SerializeToString(), "torch.onnx.export(dynamo=True)"
    except Exception as err:  # noqa: BLE001 - fall back to the legacy exporter, keep why
        errors.append(f"{type(err).__name__}: {err}"[:200])
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (example,), buffer, dynamo=False, input_names=["x"],
                          output_names=["y"], dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
                          opset_version=18)
    return buffer.getvalue(), f"torch.onnx.export(dynamo=False) (dynamo failed: {errors[0]})"
