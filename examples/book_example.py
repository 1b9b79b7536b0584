"""The book's first example (section 3.2) with `keras` replaced by `kiln`, on real data that
needs no network: scikit-learn's 1,797 handwritten 8x8 digits (64 features, 10 classes).

    model = models.Sequential()
    model.add(layers.Dense(32, activation='relu', input_shape=(64,)))
    model.add(layers.Dense(10, activation='softmax'))
    model.compile(optimizer=optimizers.RMSprop(lr=0.001), loss='mse', metrics=['accuracy'])
    model.fit(input_tensor, target_tensor, batch_size=128, epochs=10)

Then it compiles the trained model to an artifact (`out/book.kiln`, with the IR after every
pass dumped into out/ir/), writes the held-out digits as `.npy`/`.npz` files, and drives the
`kiln` command line on them: `info`, `run` (its predictions must equal the model's), `train`
for two more epochs into `out/book-trained.kiln`, and `ir` at a stage of the pipeline.

    python examples/book_example.py [--epochs 10] [--out out] [--backend numba]
"""

from __future__ import annotations

import argparse
import pathlib
import shlex
import subprocess
import sys

import numpy as np

from kiln import get_backend, layers, models, optimizers
from kiln.compiler.pass_manager import CompileOptions
from kiln.datasets import digits
from kiln.utils import set_random_seed, to_categorical


def kiln_cli(*args: str) -> str:
    """Run the `kiln` command line (as `python -m kiln.tools`, the same program as the
    console script), echo the command and its output, and return the output."""
    print(f"\n$ kiln {shlex.join(args)}", flush=True)
    done = subprocess.run([sys.executable, "-m", "kiln.tools", *args], text=True,
                          capture_output=True)
    print(done.stdout, end="")
    if done.returncode != 0:
        raise SystemExit(f"kiln {args[0]} failed: {done.stderr.strip()}")
    return done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--out", default="out")
    parser.add_argument("--backend", default=None, help="default: kiln.get_backend()")
    args = parser.parse_args()
    backend = args.backend or get_backend()
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    set_random_seed(0)

    (x_train, y_train), (x_test, y_test) = digits.load_data()
    input_tensor, x_test = (x_train / 16.0).astype("float32"), (x_test / 16.0).astype("float32")
    target_tensor, y_test = to_categorical(y_train, 10), to_categorical(y_test, 10)

    model = models.Sequential()
    model.add(layers.Dense(32, activation="relu", input_shape=(64,)))
    model.add(layers.Dense(10, activation="softmax"))
    model.compile(optimizer=optimizers.RMSprop(lr=0.001), loss="mse", metrics=["accuracy"],
                  backend=backend)
    model.summary()
    model.fit(input_tensor, target_tensor, batch_size=128, epochs=args.epochs, verbose=2)
    loss, accuracy = model.evaluate(x_test, y_test, verbose=0)
    print(f"test loss {loss:.4f}, test accuracy {accuracy:.4f} on {len(x_test)} held-out digits"
          f" ({backend} backend)")

    # Compile to an artifact, dumping the IR after every pass of each entry point.
    artifact = out / "book.kiln"
    model.compile_options = CompileOptions(level=2, dump_dir=str(out / "ir"), dump_after="all")
    model.save(artifact)
    print(f"\nwrote {artifact}; IR after every pass of each entry point in {out / 'ir'}/")
    np.save(out / "digits_test.npy", x_test)
    np.savez(out / "digits_train.npz", x=input_tensor, y=target_tensor)

    kiln_cli("info", str(artifact))
    kiln_cli("run", str(artifact), "--input", str(out / "digits_test.npy"),
             "--output", str(out / "predictions.npz"))
    with np.load(out / "predictions.npz") as f:
        predictions = next(iter(f.values()))
    expected = model.predict(x_test, verbose=0)
    np.testing.assert_allclose(predictions, expected, rtol=1e-5, atol=1e-6)
    agree = np.mean(predictions.argmax(1) == y_test.argmax(1))
    print(f"kiln run: {predictions.shape[0]} predictions equal model.predict's; "
          f"accuracy {agree:.4f}")
    kiln_cli("train", str(artifact), "--data", str(out / "digits_train.npz"), "--epochs", "2",
             "--batch-size", "128", "--verbose", "2", "-o", str(out / "book-trained.kiln"))
    kiln_cli("ir", str(artifact), "--entry", "predict", "--stage", "optimized")
    print(f"(the training step after each pass: kiln ir {artifact} --entry train_step "
          f"--stage after:PASS, or the files in {out / 'ir' / 'train_step'}/)")


if __name__ == "__main__":
    main()
