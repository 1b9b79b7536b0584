"""How far kiln's image_dataset_from_directory pixels are from Keras's TensorFlow path
(`format="tf"`), the measurement quoted in kiln/frontends/keras/images.py. Not a test: it
needs TensorFlow, which kiln's environments do not install.

    python -c "from pathlib import Path; from tests.frontends.keras.image_files import \\
        make_tree; make_tree(Path('/tmp/tree'))"                   # in kiln's environment
    TF_PYTHON record /tmp/tree /tmp/tf.npz                          # tensorflow + keras 3
    python tests/frontends/keras/data/compare_keras_tf_images.py compare /tmp/tf.npz

`record` runs Keras's own _load_image_tf (TensorFlow decode, then resize) on every image of
the tree (hidden folder left out) in every colour mode, at 7x11 by both interpolations with
and without crop_to_aspect_ratio, and decoded at its own size; `compare` prints the largest
difference to kiln's loader per file, mode and case (or TensorFlow's refusal).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

SIZE = (7, 11)


def cases(root: str):  # noqa: ANN201
    formats = (".bmp", ".gif", ".jpeg", ".jpg", ".png")
    for path in sorted(str(p) for p in Path(root).rglob("*")):
        if not path.lower().endswith(formats) or "/." in path:
            continue
        for channels in (1, 3, 4):
            yield path, channels, "decoded", "bilinear", False
            for interpolation in ("bilinear", "nearest"):
                for crop in (False, True):
                    yield path, channels, "resized", interpolation, crop


def key(path: str, channels: int, kind: str, interpolation: str, crop: bool) -> str:
    return "|".join([path.replace("/", "~"), str(channels), kind, interpolation, str(crop)])


def record(root: str, out: str) -> None:
    os.environ["KERAS_BACKEND"] = "tensorflow"
    import tensorflow as tf
    from keras.src.utils import image_dataset_utils

    results = {}
    for path, channels, kind, interpolation, crop in cases(root):
        try:
            if kind == "decoded":
                image = tf.image.decode_image(tf.io.read_file(path), channels=channels,
                                              expand_animations=False).numpy()
            else:
                image = image_dataset_utils._load_image_tf(
                    path, SIZE, channels, interpolation, "channels_last", crop, False).numpy()
            results[key(path, channels, kind, interpolation, crop)] = image.astype(np.float32)
        except Exception as exc:  # noqa: BLE001 - TensorFlow's refusal is the result
            results[key(path, channels, kind, interpolation, crop)] = np.array(
                type(exc).__name__ + ": " + str(exc).splitlines()[0][-80:])
    np.savez(out, **results)


def compare(recorded: str) -> None:
    from kiln.frontends.keras.images import load_image, resize_image

    data = np.load(recorded)
    for name in data.files:
        path, channels, kind, interpolation, crop = name.split("|")
        path, channels, crop = path.replace("~", "/"), int(channels), crop == "True"
        theirs = data[name]
        label = f"{Path(path).name:8} {channels} {kind:8} {interpolation:8} crop={crop}"
        if theirs.dtype.kind in "US":
            print(f"{label}  TensorFlow refuses: {theirs}")
            continue
        ours = load_image(path, channels)
        if kind == "resized":
            ours = resize_image(ours, SIZE, interpolation, crop_to_aspect_ratio=crop)
        print(f"{label}  max |kiln - keras tf| = {float(np.abs(ours - theirs).max()):g}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["record"]:
        record(sys.argv[2], sys.argv[3])
    elif sys.argv[1:2] == ["compare"]:
        compare(sys.argv[2])
    else:
        sys.exit(__doc__)
