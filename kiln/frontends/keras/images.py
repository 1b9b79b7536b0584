"""keras.utils.image_dataset_from_directory, as Keras 3 defines it, on Pillow.

Files are found, labelled, shuffled and split as text_dataset_from_directory finds them
(from_directory.py: Keras's index_directory and its seeded RandomState shuffle). Each image
is read as Keras's `format="grain"` reads it: Pillow decodes it (a GIF's first frame) and
converts it to the colour mode ("L" for grayscale unless already 8-, 16- or 32-bit gray,
"RGB", "RGBA"), then it is resized as keras.ops.image.resize resizes on the torch backend
(half-pixel centres, no antialiasing; "nearest" is nearest-exact), after the centred crop of
crop_to_aspect_ratio or the even padding (zeros) of pad_to_aspect_ratio. Batches are float32
(N, height, width, channels), or (N, channels, height, width) with data_format
"channels_first".

Keras's default `format="tf"` decodes and resizes with TensorFlow instead. Measured against
Keras 3.15 on TensorFlow 2.21 (tests/frontends/keras/image_files.py's tree, 7x11 and
native sizes, both interpolations, with and without crop_to_aspect_ratio): RGB from PNG, BMP
and GIF, and every resize of them, are equal; JPEG pixels differ by up to 3 levels (of 255:
TensorFlow's decoder settings), gray from a colour image by 1 level (6 from a colour JPEG,
whose luma TensorFlow takes from the decoder), and RGBA from a palette PNG in its alpha.
TensorFlow refuses grayscale BMP and GIF and RGBA JPEG and GIF, which Pillow converts. Its
pad_to_aspect_ratio is tf.image.resize_with_pad (resize to fit, then pad), where the Pillow
path pads first, as kiln does. Keras's "bicubic", "area", "lanczos3", "lanczos5",
"gaussian" and "mitchellcubic" are not offered (kiln resizes bilinear or nearest).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from kiln.frontends.keras.data import check_positive_int
from kiln.frontends.keras.from_directory import check_labels, load_subsets
from kiln.frontends.keras.layers.preprocessing import aspect_padding, aspect_window
from kiln.ir import KilnValueError

ALLOWLIST_FORMATS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")
COLOR_MODES = {"grayscale": 1, "rgb": 3, "rgba": 4}
INTERPOLATIONS = ("bilinear", "nearest")
KERAS_ONLY_INTERPOLATIONS = ("bicubic", "area", "lanczos3", "lanczos5", "gaussian",
                             "mitchellcubic")


def _pillow() -> Any:
    try:
        from PIL import Image
    except ImportError as exc:
        raise ImportError("image_dataset_from_directory reads images with Pillow, which is "
                          "not installed: pip install pillow (or kiln's extra: "
                          "pip install 'kiln[images]')") from exc
    return Image


def load_image(path: str, channels: int) -> np.ndarray:
    """The image at `path` as float32 (height, width, channels), decoded and converted to
    `channels` (1, 3 or 4) as Keras's Pillow path does."""
    image_module = _pillow()
    try:
        with image_module.open(path) as image:
            if channels == 1:
                if image.mode not in ("L", "I;16", "I"):
                    image = image.convert("L")
            elif image.mode != ("RGB" if channels == 3 else "RGBA"):
                image = image.convert("RGB" if channels == 3 else "RGBA")
            pixels = np.asarray(image, dtype=np.float32)
    except (OSError, ValueError, SyntaxError) as exc:  # Pillow's errors for a bad file
        raise KilnValueError(f"image_dataset_from_directory: cannot read the image file "
                             f"{path}: {exc}") from exc
    return pixels[..., None] if pixels.ndim == 2 else pixels


def _axis_taps(size: int, out: int, interpolation: str) -> tuple[np.ndarray, ...]:
    """Along one axis of `size` pixels resized to `out`: (first index, second index, weight
    of the second) per output pixel, half-pixel centres (nearest: the weight 0)."""
    scale = np.float32(size / out)
    centres = (np.arange(out, dtype=np.float32) + np.float32(0.5)) * scale
    if interpolation == "nearest":
        first = np.minimum(np.floor(centres).astype(np.int64), size - 1)
        return first, first, np.zeros(out, np.float32)
    source = np.maximum(centres - np.float32(0.5), np.float32(0))
    first = np.minimum(source.astype(np.int64), size - 1)
    second = np.minimum(first + 1, size - 1)
    return first, second, (source - first).astype(np.float32)


def resize_image(image: np.ndarray, size: tuple[int, int], interpolation: str = "bilinear",
                 crop_to_aspect_ratio: bool = False, pad_to_aspect_ratio: bool = False,
                 fill_value: float = 0.0) -> np.ndarray:
    """A float32 (height, width, channels) image resized to `size` as
    keras.ops.image.resize on torch resizes it: the largest centred window of the target's
    aspect ratio first (crop_to_aspect_ratio), or that ratio reached by even padding with
    fill_value (pad_to_aspect_ratio)."""
    h, w = image.shape[:2]
    if crop_to_aspect_ratio:
        top, left, h, w = aspect_window((h, w), size)
        image = image[top:top + h, left:left + w]
    elif pad_to_aspect_ratio:
        rows, cols = aspect_padding((h, w), size)
        image = np.pad(image, ((rows, rows), (cols, cols), (0, 0)), constant_values=fill_value)
        h, w = image.shape[:2]
    if (h, w) == tuple(size):
        return np.ascontiguousarray(image, dtype=np.float32)
    r0, r1, rl = _axis_taps(h, size[0], interpolation)
    c0, c1, cl = _axis_taps(w, size[1], interpolation)
    rl, cl = rl[:, None, None], cl[None, :, None]
    upper, lower = image[r0], image[r1]  # each row gathered once
    top = upper[:, c0] * (1 - cl) + upper[:, c1] * cl
    bottom = lower[:, c0] * (1 - cl) + lower[:, c1] * cl
    return (top * (1 - rl) + bottom * rl).astype(np.float32)


def _image_size(image_size: Any) -> tuple[int, int]:
    if isinstance(image_size, (int, np.integer)) and not isinstance(image_size, bool):
        image_size = (image_size, image_size)
    if not isinstance(image_size, (list, tuple)) or len(image_size) != 2 or not all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0
            for v in image_size):
        raise KilnValueError(f"Invalid `image_size` value. Expected a tuple of 2 positive "
                             f"integers. Received: image_size={image_size!r}")
    return int(image_size[0]), int(image_size[1])


def image_dataset_from_directory(directory: str, labels: Any = "inferred",
                                 label_mode: str | None = "int",
                                 class_names: Sequence[str] | None = None,
                                 color_mode: str = "rgb", batch_size: int | None = 32,
                                 image_size: Any = (256, 256), shuffle: bool = True,
                                 seed: int | None = None,
                                 validation_split: float | None = None,
                                 subset: str | None = None, interpolation: str = "bilinear",
                                 follow_links: bool = False, crop_to_aspect_ratio: bool = False,
                                 pad_to_aspect_ratio: bool = False,
                                 data_format: str | None = None, format: str = "tf",
                                 verbose: bool = True) -> Any:
    """Batches of (images, labels) from `directory`'s .bmp, .gif, .jpeg, .jpg and .png
    files, one subdirectory per class: images float32 (batch, height, width, channels),
    channels 1, 3 or 4 by color_mode "grayscale", "rgb", "rgba"; labels as
    text_dataset_from_directory gives them (int32, one-hot float32, or (batch, 1) float32
    for "binary"); label_mode None or labels None: the images alone. subset "both" returns
    (training, validation). `format` "tf" (Keras's default) or "grain": both read as
    Keras's "grain" reads, through Pillow (the module's notes say where "tf" differs)."""
    check_labels(labels, label_mode, "image")  # class_names beside given labels: the index
    if color_mode not in COLOR_MODES:
        raise KilnValueError(f"`color_mode` must be one of {{\"rgb\", \"rgba\", "
                             f"\"grayscale\"}}. Received: color_mode={color_mode!r}")
    channels = COLOR_MODES[color_mode]
    size = _image_size(image_size)
    interpolation = str(interpolation).lower()
    if interpolation not in INTERPOLATIONS:
        also = (f" ({interpolation!r} is one of Keras's, which kiln does not resize with)"
                if interpolation in KERAS_ONLY_INTERPOLATIONS else "")
        raise KilnValueError(f"Argument `interpolation` should be one of {INTERPOLATIONS}"
                             f"{also}. Received: interpolation={interpolation!r}")
    if crop_to_aspect_ratio and pad_to_aspect_ratio:
        raise KilnValueError("Only one of `pad_to_aspect_ratio`, `crop_to_aspect_ratio` can "
                             "be set to `True`.")
    if format not in ("tf", "grain"):
        raise KilnValueError(f"`format` should be either \"tf\" or \"grain\". Received: "
                             f"format={format!r}")
    if data_format not in (None, "channels_last", "channels_first"):
        raise KilnValueError(f"The `data_format` argument must be one of {{'channels_first', "
                             f"'channels_last'}}. Received: data_format={data_format!r}")
    batch_size = check_positive_int(batch_size, "batch_size")
    _pillow()  # before indexing: a missing Pillow is said at once

    def read(batch: list[str]) -> np.ndarray:
        images = np.empty((len(batch), *size, channels), np.float32)
        for i, path in enumerate(batch):
            images[i] = resize_image(load_image(path, channels), size, interpolation,
                                     bool(crop_to_aspect_ratio), bool(pad_to_aspect_ratio))
        return images.transpose(0, 3, 1, 2).copy() if data_format == "channels_first" \
            else images

    return load_subsets(directory, labels, label_mode, class_names, batch_size, shuffle, seed,
                        validation_split, subset, follow_links, verbose, ALLOWLIST_FORMATS,
                        "No {what}images found in directory {directory}. Allowed formats: "
                        f"{ALLOWLIST_FORMATS}", read)
