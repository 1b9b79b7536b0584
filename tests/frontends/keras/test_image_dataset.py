"""kiln.utils.image_dataset_from_directory: files found, labelled and split as Keras does
(the index is text_dataset_from_directory's, checked there against recorded Keras cases),
images decoded by Pillow and resized as keras.ops.image.resize on torch (checked against
Keras itself in tests/oracle/test_keras3_image_dataset.py; here against kiln's Resizing
layer, an independent resampling through affine_transform), every error, and the book's
chapter-8 flow: fit on the training subset with the validation subset."""

from __future__ import annotations

import builtins
import re
from pathlib import Path

import numpy as np
import pytest

from kiln import KilnError, layers, models, utils
from kiln.frontends.keras.images import load_image, resize_image
from tests.frontends.keras.image_files import FILES, make_tree, pixels

Image = pytest.importorskip("PIL.Image")

@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tree(tmp_path_factory.mktemp("images"))


def expected_order(root: Path) -> list[str]:
    return [str(root / f) for f in ("cats/a.png", "cats/b.PNG", "cats/c.bmp",
                                    "cats/nested/d.png", "dogs/e.jpg", "dogs/f.gif",
                                    "dogs/g.png", "dogs/h.jpeg")]


def resized_by_layer(image: np.ndarray, size: tuple[int, int], **kwargs) -> np.ndarray:
    model = models.Sequential([layers.Input(image.shape),
                               layers.Resizing(*size, **kwargs)])
    return model.predict(image[None], verbose=0)[0]


def test_files_labels_and_batches_in_keras_order(tree: Path) -> None:
    ds = utils.image_dataset_from_directory(tree, image_size=(6, 5), batch_size=3,
                                            shuffle=False, verbose=False)
    assert ds.class_names == ["cats", "dogs"] and len(ds) == 3
    assert ds.file_paths == expected_order(tree)
    batches = list(ds)
    assert [b[0].shape for b in batches] == [(3, 6, 5, 3)] * 2 + [(2, 6, 5, 3)]
    assert all(b[0].dtype == np.float32 and b[1].dtype == np.int32 for b in batches)
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]),
                                  [0, 0, 0, 0, 1, 1, 1, 1])
    for i, path in enumerate(expected_order(tree)):
        got = batches[i // 3][0][i % 3]
        np.testing.assert_array_equal(got, resize_image(load_image(path, 3), (6, 5)))


@pytest.mark.parametrize("color_mode,channels", [("rgb", 3), ("grayscale", 1), ("rgba", 4)])
def test_decoding_keeps_lossless_pixels_and_converts_as_pillow(tree: Path, color_mode: str,
                                                               channels: int) -> None:
    """At its own size an image is its pixels: the PNG and BMP files' exact values, a GIF's
    first frame, converted to the colour mode as Keras's Pillow path converts."""
    for seed, (folder, name, shape, mode, fmt) in enumerate(FILES):
        if mode is None or folder.startswith("."):
            continue
        got = load_image(str(tree / folder / name), channels)
        assert got.shape == (*shape, channels) and got.dtype == np.float32
        with Image.open(tree / folder / name) as image:
            if channels == 1:
                want = image.convert("L") if image.mode != "L" else image
            else:
                want = image.convert("RGB" if channels == 3 else "RGBA")
            want = np.asarray(want, np.float32).reshape(got.shape)
        np.testing.assert_array_equal(got, want)
        if fmt in ("PNG", "BMP") and mode == {1: "L", 3: "RGB", 4: "RGBA"}[channels]:
            np.testing.assert_array_equal(got.reshape(pixels(shape, mode, seed).shape),
                                          pixels(shape, mode, seed))


@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
@pytest.mark.parametrize("size", [(6, 5), (20, 31), (12, 10), (1, 1)])
def test_resize_matches_the_resizing_layer(size: tuple[int, int], interpolation: str) -> None:
    image = pixels((12, 10), "RGB", 3).astype(np.float32)
    got = resize_image(image, size, interpolation)
    want = resized_by_layer(image, size, interpolation=interpolation)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("aspect", ["crop_to_aspect_ratio", "pad_to_aspect_ratio"])
@pytest.mark.parametrize("shape,size", [((12, 10), (6, 9)), ((7, 15), (8, 8)),
                                        ((9, 14), (10, 5))])
def test_crop_and_pad_to_aspect_ratio_match_the_resizing_layer(shape, size, aspect) -> None:
    image = pixels(shape, "RGB", 4).astype(np.float32)
    got = resize_image(image, size, **{aspect: True})
    np.testing.assert_allclose(got, resized_by_layer(image, size, **{aspect: True}),
                               rtol=1e-5, atol=1e-3)


def test_label_modes_color_modes_and_channels_first(tree: Path) -> None:
    kw = {"image_size": 4, "batch_size": 8, "shuffle": False, "verbose": False}
    x, y = next(iter(utils.image_dataset_from_directory(tree, label_mode="categorical", **kw)))
    np.testing.assert_array_equal(y, np.eye(2, dtype=np.float32)[[0] * 4 + [1] * 4])
    x, y = next(iter(utils.image_dataset_from_directory(tree, label_mode="binary", **kw)))
    assert y.shape == (8, 1) and y.dtype == np.float32
    gray = next(iter(utils.image_dataset_from_directory(tree, label_mode=None,
                                                        color_mode="grayscale", **kw)))
    assert gray.shape == (8, 4, 4, 1)
    first = next(iter(utils.image_dataset_from_directory(
        tree, labels=None, color_mode="rgba", data_format="channels_first", **kw)))
    last = next(iter(utils.image_dataset_from_directory(tree, labels=None, color_mode="rgba",
                                                        **kw)))
    np.testing.assert_array_equal(first, last.transpose(0, 3, 1, 2))
    # Labels given: the whole tree is walked, hidden folders too, as Keras walks it (9 files)
    one = utils.image_dataset_from_directory(tree, labels=[1, 0] * 4 + [1], image_size=4,
                                             batch_size=None, shuffle=False, verbose=False)
    items = list(one)
    assert len(items) == 9 and items[0][0].shape == (4, 4, 3) and items[0][1] == 1
    assert one.file_paths[0] == str(tree / ".hidden" / "x.png")


def test_seeded_split_and_messages(tree: Path, capsys: pytest.CaptureFixture) -> None:
    train, val = utils.image_dataset_from_directory(tree, image_size=4, batch_size=2, seed=7,
                                                    validation_split=0.25, subset="both")
    out = capsys.readouterr().out
    assert out.splitlines() == ["Found 8 files belonging to 2 classes.",
                                "Using 6 files for training.", "Using 2 files for validation."]
    assert sorted(train.file_paths + val.file_paths) == sorted(expected_order(tree))
    assert len(val.file_paths) == 2
    again = utils.image_dataset_from_directory(tree, image_size=4, batch_size=2, seed=7,
                                               validation_split=0.25, subset="validation",
                                               verbose=False)
    assert again.file_paths == val.file_paths


@pytest.mark.parametrize("kwargs,message", [
    ({"color_mode": "cmyk"}, "`color_mode` must be one of"),
    ({"interpolation": "bicubic"}, "'bicubic' is one of Keras's, which kiln does not"),
    ({"interpolation": "sinc"}, "Argument `interpolation` should be one of"),
    ({"crop_to_aspect_ratio": True, "pad_to_aspect_ratio": True}, "Only one of"),
    ({"image_size": (3,)}, "Invalid `image_size` value"),
    ({"image_size": (0, 4)}, "Invalid `image_size` value"),
    ({"format": "jpeg"}, "`format` should be either"),
    ({"data_format": "nhwc"}, "The `data_format` argument must be one of"),
    ({"batch_size": 0}, "Expected batch_size to be a positive integer"),
    ({"class_names": ["cats", "birds"]}, "did not match the names of the subdirectories"),
    ({"label_mode": "binary", "labels": [0, 1, 2] * 3}, "there must be exactly 2"),
    ({"labels": "folders"}, "number of image files"),
    ({"labels": [0] * 9, "class_names": ["cats"]}, "only pass `class_names`"),
    ({"labels": [0, 1]}, "we found 9 files"),
    ({"validation_split": 0.5}, "If `subset` is set, `validation_split` must be set"),
])
def test_errors_name_the_argument(tree: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(KilnError, match=re.escape(message)):
        utils.image_dataset_from_directory(tree, verbose=False, **kwargs)


def test_no_images_and_an_unreadable_image_are_named(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.txt").write_text("text")
    with pytest.raises(KilnError, match=f"No images found in directory {tmp_path}"):
        utils.image_dataset_from_directory(tmp_path, verbose=False)
    (tmp_path / "a" / "broken.png").write_bytes(b"\x89PNG not really")
    ds = utils.image_dataset_from_directory(tmp_path, verbose=False)
    with pytest.raises(KilnError, match="cannot read the image file .*broken.png"):
        next(iter(ds))


def test_missing_pillow_is_said_at_once(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_pil(name, *args, **kwargs):  # noqa: ANN001, ANN202
        if name == "PIL" or name.startswith("PIL."):
            raise ImportError("No module named 'PIL'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pil)
    with pytest.raises(ImportError, match=r"pip install 'kiln\[images\]'"):
        utils.image_dataset_from_directory(tree, verbose=False)


def test_the_book_flow_fits_on_the_subsets(tree: Path) -> None:
    """Deep Learning with Python 8.2: datasets from the folders, a Rescaling convnet fit on
    the training subset with the validation subset, then evaluated, equal to evaluate on the
    same batches as arrays."""
    train, val = utils.image_dataset_from_directory(tree, image_size=(16, 16), batch_size=3,
                                                    seed=1, validation_split=0.25,
                                                    subset="both", verbose=False)
    model = models.Sequential([layers.Input((16, 16, 3)), layers.Rescaling(1 / 255),
                               layers.Conv2D(4, 3, activation="relu"), layers.MaxPooling2D(2),
                               layers.Flatten(), layers.Dense(1, activation="sigmoid")])
    model.compile("rmsprop", "binary_crossentropy", metrics=["accuracy"])
    history = model.fit(train, validation_data=val, epochs=2, verbose=0)
    assert len(history.history["loss"]) == 2 and len(history.history["val_loss"]) == 2
    x, y = (np.concatenate(parts) for parts in zip(*val, strict=True))
    np.testing.assert_allclose(model.evaluate(val, verbose=0),
                               model.evaluate(x, y, batch_size=3, verbose=0), rtol=1e-6)
