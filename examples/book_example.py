"""The book's first example (section 3.2) with `keras` replaced by `kiln`, on real data that
needs no network: scikit-learn's 1,797 handwritten 8x8 digits (64 features, 10 classes).

    model = models.Sequential()
    model.add(layers.Dense(32, activation='relu', input_shape=(64,)))
    model.add(layers.Dense(10, activation='softmax'))
    model.compile(optimizer=optimizers.RMSprop(lr=0.001), loss='mse', metrics=['accuracy'])
    model.fit(input_tensor, target_tensor, batch_size=128, epochs=10)

Then it shows the IR: the model's forward graph, and the training step through the compiler's
pass pipeline with the IR dumped after every pass into out/ir/ and the compile statistics.

    python examples/book_example.py [--epochs 10]
"""

from __future__ import annotations

import argparse
import pathlib

from kiln import layers, models, optimizers
from kiln.compiler import compile_graph
from kiln.datasets import digits
from kiln.utils import set_random_seed, to_categorical


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--out", default="out")
    args = parser.parse_args()
    set_random_seed(0)

    (x_train, y_train), (x_test, y_test) = digits.load_data()
    input_tensor, x_test = x_train / 16.0, x_test / 16.0
    target_tensor, y_test = to_categorical(y_train, 10), to_categorical(y_test, 10)

    model = models.Sequential()
    model.add(layers.Dense(32, activation="relu", input_shape=(64,)))
    model.add(layers.Dense(10, activation="softmax"))
    model.compile(optimizer=optimizers.RMSprop(lr=0.001), loss="mse", metrics=["accuracy"])
    model.summary()
    model.fit(input_tensor, target_tensor, batch_size=128, epochs=args.epochs, verbose=2)
    loss, accuracy = model.evaluate(x_test, y_test, verbose=0)
    print(f"test loss {loss:.4f}, test accuracy {accuracy:.4f} on {len(x_test)} held-out digits")

    print("\nThe model's forward graph (inference mode):\n")
    print(model.forward_graph(training=False).graph)
    dumps = pathlib.Path(args.out) / "ir"
    train_step = model.compiled_graphs()["train_step"]
    optimized, stats = compile_graph(train_step, level=2, dump_dir=dumps)
    print(f"\nThe training step through the pass pipeline (IR after every pass in {dumps}/):\n")
    print(stats.format())


if __name__ == "__main__":
    main()
