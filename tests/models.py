"""Small models written directly in IR (MLP, convnet, LSTM with scan), their parameters, and
learnable data for each. Tests of passes and backends use their train steps too."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kiln.ir import Graph, GraphBuilder, TensorType
from kiln.ir.training import LOSSES, METRICS, LossSpec, MetricSpec, UpdateRule, build_train_step
from kiln.ir.training import summed_metrics as sm
from kiln.ir.training.train_step import TrainStep


@dataclass
class Model:
    forward: Graph
    params: dict[str, np.ndarray]
    x: np.ndarray
    y: np.ndarray
    loss: str
    metric: str

    def train_step(self, optimizer: UpdateRule) -> TrainStep:
        return build_train_step(
            self.forward, [LossSpec("out", LOSSES[self.loss],
                                    target_type=TensorType(("N", *self.y.shape[1:]),
                                                           str(self.y.dtype)))],
            optimizer, [MetricSpec("out", "accuracy", METRICS[self.metric])])

    def initial_state(self, optimizer: UpdateRule) -> dict[str, np.ndarray]:
        return {**{k: v.copy() for k, v in self.params.items()},
                **self.train_step(optimizer).initial_state}


def glorot(rng: np.random.Generator, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    fan_in = int(np.prod(shape[:-1]))
    fan_out = shape[-1] if len(shape) == 2 else int(np.prod(shape[:-2])) * shape[-1]
    limit = np.sqrt(6 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, shape).astype(dtype)


def dense(b: GraphBuilder, x, name: str, units: int, activation: str | None,  # noqa: ANN001
          params: dict, rng: np.random.Generator, dtype: str):  # noqa: ANN201
    fan_in = x.type.shape[-1]
    kernel = b.state(f"{name}.kernel", TensorType((fan_in, units), dtype))
    bias = b.state(f"{name}.bias", TensorType((units,), dtype))
    params[kernel.name] = glorot(rng, (fan_in, units), dtype)
    params[bias.name] = np.zeros(units, dtype)
    with b.scope(name):
        y = b.add(b.matmul(x, kernel), bias)
        return b.op(activation, y) if activation else y


def mlp(dtype: str = "float32", samples: int = 256, features: int = 20, hidden: int = 32,
        classes: int = 3, seed: int = 0) -> Model:
    """Dense(hidden, relu) -> Dense(classes, softmax); labels from a hidden linear map."""
    rng = np.random.default_rng(seed)
    b = GraphBuilder("forward")
    params: dict[str, np.ndarray] = {}
    x = b.input("x", TensorType(("N", features), dtype))
    h = dense(b, x, "dense", hidden, "relu", params, rng, dtype)
    b.output(dense(b, h, "dense_1", classes, "softmax", params, rng, dtype), "out")
    data = rng.standard_normal((samples, features)).astype(dtype)
    labels = np.argmax(data @ rng.standard_normal((features, classes)), axis=1)
    return Model(b.build(), params, data, labels.astype(np.int64),
                 "sparse_categorical_crossentropy", "sparse_categorical_accuracy")


def convnet(dtype: str = "float32", samples: int = 64, size: int = 8, classes: int = 4,
            seed: int = 0) -> Model:
    """Conv2D(4, 3x3, relu) -> MaxPooling2D(2) -> Flatten -> Dense(classes, softmax) on noisy
    class templates."""
    rng = np.random.default_rng(seed)
    b = GraphBuilder("forward")
    params: dict[str, np.ndarray] = {}
    x = b.input("x", TensorType(("N", size, size, 1), dtype))
    kernel = b.state("conv2d.kernel", TensorType((3, 3, 1, 4), dtype))
    bias = b.state("conv2d.bias", TensorType((4,), dtype))
    params[kernel.name] = glorot(rng, (3, 3, 1, 4), dtype)
    params[bias.name] = np.zeros(4, dtype)
    with b.scope("conv2d"):
        h = b.relu(b.add(b.conv2d(x, kernel, padding="same"), bias))
    with b.scope("max_pooling2d"):
        h = b.max_pool2d(h, pool_size=(2, 2))
    with b.scope("flatten"):
        h = b.reshape(h, shape=("N", -1))
    b.output(dense(b, h, "dense", classes, "softmax", params, rng, dtype), "out")
    templates = rng.standard_normal((classes, size, size, 1))
    labels = rng.integers(0, classes, samples)
    data = (templates[labels] + 0.5 * rng.standard_normal((samples, size, size, 1)))
    return Model(b.build(), params, data.astype(dtype), labels.astype(np.int64),
                 "sparse_categorical_crossentropy", "sparse_categorical_accuracy")


def lstm(dtype: str = "float32", samples: int = 64, steps: int = 8, vocab: int = 12,
         embed: int = 6, units: int = 8, seed: int = 0) -> Model:
    """Embedding -> LSTM (Keras gate order i, f, c, o, written with scan) -> Dense(1, sigmoid).
    The label says whether the first token is in the lower half of the vocabulary, so the
    recurrent state has to carry it to the end."""
    rng = np.random.default_rng(seed)
    b = GraphBuilder("forward")
    params: dict[str, np.ndarray] = {}
    ids = b.input("x", TensorType(("N", steps), "int64"))
    table = b.state("embedding.embeddings", TensorType((vocab, embed), dtype))
    params[table.name] = rng.uniform(-0.05, 0.05, (vocab, embed)).astype(dtype)
    kernel = b.state("lstm.kernel", TensorType((embed, 4 * units), dtype))
    recurrent = b.state("lstm.recurrent_kernel", TensorType((units, 4 * units), dtype))
    bias = b.state("lstm.bias", TensorType((4 * units,), dtype))
    params[kernel.name] = glorot(rng, (embed, 4 * units), dtype)
    q, _ = np.linalg.qr(rng.standard_normal((4 * units, units)))
    params[recurrent.name] = q.T.astype(dtype)
    params[bias.name] = np.concatenate([np.zeros(units), np.ones(units),
                                        np.zeros(2 * units)]).astype(dtype)
    with b.scope("embedding"):
        seq = b.gather(table, ids, axis=0)
    with b.scope("lstm"):
        xw = b.add(b.matmul(b.transpose(seq, perm=(1, 0, 2)), kernel), bias)
        h0 = b.constant(0.0, dtype, shape=("N", units))
        h, _ = b.op("scan", h0, h0, xw, recurrent, num_carry=2, num_seq=1,
                    body=_lstm_cell(units, dtype))[:2]
    b.output(dense(b, h, "dense", 1, "sigmoid", params, rng, dtype), "out")
    data = rng.integers(0, vocab, (samples, steps))
    labels = (data[:, 0] < vocab // 2).astype(dtype)[:, None]
    return Model(b.build(), params, data.astype(np.int64), labels, "binary_crossentropy",
                 "binary_accuracy")


def _lstm_cell(units: int, dtype: str) -> Graph:
    b = GraphBuilder("lstm_cell")
    h = b.input("h", TensorType(("N", units), dtype))
    c = b.input("c", TensorType(("N", units), dtype))
    xw = b.input("xw", TensorType(("N", 4 * units), dtype))
    recurrent = b.input("recurrent_kernel", TensorType((units, 4 * units), dtype))
    z = b.add(xw, b.matmul(h, recurrent))
    i, f, g, o = b.split(z, axis=1, sizes=(units,) * 4)
    c_new = b.add(b.mul(b.sigmoid(f), c), b.mul(b.sigmoid(i), b.tanh(g)))
    h_new = b.mul(b.sigmoid(o), b.tanh(c_new))
    b.output(h_new, "h")
    b.output(c_new, "c")
    return b.build()


# -- every loss and metric at once ---------------------------------------------------------
# (loss, activation of its head, target kind); each head is act(x @ w) with its own kernel.
LOSS_HEADS = (
    ("mean_squared_error", None, "real"),
    ("mean_absolute_error", None, "real"),
    ("mean_absolute_percentage_error", None, "real"),
    ("mean_squared_logarithmic_error", "softplus", "counts"),
    ("huber", None, "real"),
    ("log_cosh", None, "real"),
    ("cosine_similarity", None, "real"),
    ("binary_crossentropy", "sigmoid", "binary"),
    ("categorical_crossentropy", "softmax", "onehot"),
    ("sparse_categorical_crossentropy", "softmax", "labels"),
    ("kl_divergence", "softmax", "onehot"),
    ("poisson", "softplus", "counts"),
    ("hinge", "tanh", "binary"),
    ("squared_hinge", "tanh", "signs"),
    ("categorical_hinge", None, "onehot"),
)
# metric -> (target kind, keyword arguments); each on the first head with that target kind
METRIC_TARGETS = {
    "accuracy": ("binary", {}), "binary_accuracy": ("binary", {}),
    "categorical_accuracy": ("onehot", {}),
    "sparse_categorical_accuracy": ("labels", {}),
    "top_k_categorical_accuracy": ("onehot", {"k": 2}),
    "sparse_top_k_categorical_accuracy": ("labels", {"k": 2}),
    "mean_absolute_error": ("real", {}), "mean_squared_error": ("real", {}),
    "mean_absolute_percentage_error": ("real", {}),
    "mean_squared_logarithmic_error": ("counts", {}), "log_cosh": ("real", {}),
    "cosine_similarity": ("real", {}), "kl_divergence": ("onehot", {}),
    "poisson": ("counts", {}), "hinge": ("binary", {}), "squared_hinge": ("signs", {}),
    "categorical_hinge": ("onehot", {}), "binary_crossentropy": ("binary", {}),
    "categorical_crossentropy": ("onehot", {}),
    "sparse_categorical_crossentropy": ("labels", {}),
    "pearson_correlation": ("real", {}), "concordance_correlation": ("counts", {}),
}

# summed metric -> (target kind, statistics builder, its keyword arguments, finish): every
# builder of kiln.ir.training.summed_metrics and each of its paths, on the first head with
# that target kind (the binary one has sigmoid scores)
SUMMED_TARGETS = {
    "precision": ("binary", sm.confusion_statistics,
                  {"thresholds": [0.3, 0.5, 0.7], "label_weights": [1.0, 0.5, 2.0]},
                  sm.finish_precision),
    "auc": ("binary", sm.confusion_statistics, {"thresholds": sm.auc_thresholds(7)},
            sm.finish_auc),
    "auc_multi": ("binary", sm.confusion_statistics,
                  {"thresholds": sm.auc_thresholds(5), "multi_label": True}, None),
    "recall_top_k": ("binary", sm.confusion_statistics,
                     {"thresholds": [sm.NEG_INF], "top_k": 2, "class_id": 1},
                     sm.finish_recall),
    "f1_score": ("onehot", sm.fbeta_statistics, {}, sm.finish_fbeta),
    "r2_score": ("real", sm.r2_statistics, {}, sm.finish_r2),
    "root_mean_squared_error": ("counts", sm.squared_error_statistics, {},
                                sm.finish_root_mean_squared),
    "mean_iou": ("labels", sm.class_confusion_statistics,
                 {"num_classes": 3, "sparse_y_pred": False, "ignore_class": 2},
                 lambda sums: sm.finish_iou(sums, [0, 1, 2])),
    "binary_iou": ("binary", sm.class_confusion_statistics,
                   {"num_classes": 2, "threshold": 0.5}, None),
}


def losses_and_metrics(samples: int = 24, features: int = 4, classes: int = 3,
                       seed: int = 5) -> tuple[TrainStep, dict[str, np.ndarray],
                                               dict[str, np.ndarray]]:
    """One train step with a head per loss of LOSS_HEADS, every metric of METRICS and each
    case of SUMMED_TARGETS: its step, its initial state (SGD) and its data (x and a target per
    head)."""
    from kiln.ir.training import SGD

    gen = np.random.default_rng(seed)
    b = GraphBuilder("forward")
    x = b.input("x", TensorType(("N", features), "float32"))
    for i, (_, act, _) in enumerate(LOSS_HEADS):
        with b.scope(f"head{i}"):
            z = b.matmul(x, b.state(f"head{i}.w", TensorType((features, classes), "float32")))
            b.output(b.op(act, z, **({"axis": -1} if act == "softmax" else {}))
                     if act else z, f"out{i}")
    forward = b.build()
    labels = gen.integers(0, classes, samples)
    data = {
        "real": gen.standard_normal((samples, classes)).astype(np.float32),
        "counts": gen.uniform(0.0, 3.0, (samples, classes)).astype(np.float32),
        "binary": gen.integers(0, 2, (samples, classes)).astype(np.float32),
        "signs": (2.0 * gen.integers(0, 2, (samples, classes)) - 1).astype(np.float32),
        "onehot": np.eye(classes, dtype=np.float32)[labels],
        "labels": labels.astype(np.int32),
    }
    kinds = [kind for _, _, kind in LOSS_HEADS]
    losses = [LossSpec(f"out{i}", LOSSES[name], target_type=TensorType(
        ("N", *data[kind].shape[1:]), str(data[kind].dtype)))
        for i, (name, _, kind) in enumerate(LOSS_HEADS)]
    metrics = []
    for name, (kind, kwargs) in METRIC_TARGETS.items():
        fn = METRICS[name]
        metrics.append(MetricSpec(f"out{kinds.index(kind)}", name,
                                  (lambda b, t, p, fn=fn, kw=kwargs: fn(b, t, p, **kw))))
    for name, (kind, fn, kwargs, finish) in SUMMED_TARGETS.items():
        metrics.append(MetricSpec(f"out{kinds.index(kind)}", name,
                                  (lambda b, t, p, fn=fn, kw=kwargs: fn(b, t, p, **kw)),
                                  finish or (lambda sums: sums)))
    step = build_train_step(forward, losses, SGD(0.1), metrics)
    state = {f"head{i}.w": glorot(gen, (features, classes), "float32")
             for i in range(len(LOSS_HEADS))}
    feed = {"x": gen.standard_normal((samples, features)).astype(np.float32),
            **{f"y.out{i}": data[kind] for i, kind in enumerate(kinds)}}
    return step, {**state, **step.initial_state}, feed
