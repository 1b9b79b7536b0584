"""The book's first Keras model (section 3.2), written directly in kiln's IR and trained on the
reference runtime: Dense(32, relu, input 784) -> Dense(10, softmax), RMSprop(lr=0.001),
loss 'mse', metric accuracy, batch_size=128, epochs=10.

The data are generated (no network needed): 784-feature vectors whose class (one of 10, one-hot
targets as the book's mse loss wants) comes from a hidden linear map. The IR of the forward
graph and of the training step are written to out/ and the forward graph is printed.

    python examples/book_mlp_ir.py
"""

from __future__ import annotations

import pathlib

import numpy as np

from kiln.ir import GraphBuilder, f32, parse
from kiln.ir.training import LOSSES, METRICS, LossSpec, MetricSpec, RMSprop, build_train_step
from kiln.runtimes.reference import ReferenceExecutable


def forward_graph() -> tuple:
    rng = np.random.default_rng(0)
    b = GraphBuilder("predict")
    x = b.input("x", f32["N", 784])
    params = {}
    h = x
    for name, units, activation in (("dense", 32, "relu"), ("dense_1", 10, "softmax")):
        fan_in = h.type.shape[-1]
        kernel = b.state(f"{name}.kernel", f32[fan_in, units])
        bias = b.state(f"{name}.bias", f32[units])
        limit = np.sqrt(6 / (fan_in + units))  # glorot_uniform, Keras's default
        params[kernel.name] = rng.uniform(-limit, limit, (fan_in, units)).astype(np.float32)
        params[bias.name] = np.zeros(units, np.float32)
        with b.scope(name):
            h = b.op(activation, b.add(b.matmul(h, kernel), bias))
    b.output(h, "dense_1")
    return b.build(), params


def main() -> None:
    out = pathlib.Path("out")
    out.mkdir(exist_ok=True)
    forward, params = forward_graph()
    optimizer = RMSprop(learning_rate=0.001)
    step = build_train_step(forward, [LossSpec("dense_1", LOSSES["mean_squared_error"])],
                            optimizer,
                            [MetricSpec("dense_1", "accuracy", METRICS["categorical_accuracy"])])
    (out / "predict.kir").write_text(str(forward) + "\n")
    (out / "train_step.kir").write_text(str(step.graph) + "\n")
    assert parse((out / "train_step.kir").read_text()) == step.graph

    rng = np.random.default_rng(1)
    x = rng.standard_normal((2048, 784)).astype(np.float32)
    y = np.eye(10, dtype=np.float32)[np.argmax(x @ rng.standard_normal((784, 10)), axis=1)]
    runtime = ReferenceExecutable({"train_step": step.graph, "predict": forward},
                                  {**params, **step.initial_state})
    batch_size, epochs = 128, 10
    for epoch in range(1, epochs + 1):
        order = rng.permutation(len(x))
        totals = {"loss": 0.0, "accuracy": 0.0}
        for start in range(0, len(x), batch_size):
            idx = order[start:start + batch_size]
            result = runtime.run("train_step", {"x": x[idx], "y": y[idx]})
            for key in totals:
                totals[key] += float(result[key]) * len(idx)
        print(f"Epoch {epoch}/{epochs} - loss: {totals['loss'] / len(x):.4f} - "
              f"accuracy: {totals['accuracy'] / len(x):.4f}")
    probs = runtime.run("predict", {"x": x[:5]})["dense_1"]
    print("predicted classes of the first 5 samples:", probs.argmax(axis=1).tolist(),
          "labels:", y[:5].argmax(axis=1).tolist())
    print(f"\nIR of the forward graph (the training step, {len(step.graph.nodes)} nodes, is in "
          f"{out / 'train_step.kir'}):\n")
    print(forward)


if __name__ == "__main__":
    main()
