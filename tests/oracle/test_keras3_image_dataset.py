"""Real Keras 3 as the oracle for image_dataset_from_directory: Keras's own index (its
index_directory, seeded shuffle and split) and Keras's own Pillow image loader (the
`format="grain"` path's _load_image_grain: Pillow, then keras.ops.image.resize on torch)
give the files, labels and pixels of kiln's batches, in every colour mode, both
interpolations, crop_to_aspect_ratio and pad_to_aspect_ratio, and both data formats."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")
pytest.importorskip("PIL.Image")

from keras.src.utils import dataset_utils, image_dataset_utils  # noqa: E402

from kiln import utils  # noqa: E402
from kiln.frontends.keras import from_directory  # noqa: E402
from tests.frontends.keras.image_files import make_tree  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
FORMATS = image_dataset_utils.ALLOWLIST_FORMATS


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tree(tmp_path_factory.mktemp("images"))


@pytest.mark.parametrize("labels", ["inferred", None, "list"])
def test_index_and_split_are_keras(tree: Path, labels: str | None) -> None:
    given = [i % 3 for i in range(9)] if labels == "list" else labels
    theirs, their_labels, their_names = dataset_utils.index_directory(  # a copy: Keras
        str(tree), list(given) if isinstance(given, list) else given, formats=FORMATS,
        shuffle=True, seed=11, verbose=False)  # shuffles a list of labels in place
    ours, our_labels, our_names = from_directory.index_directory(
        str(tree), given, FORMATS, None, True, 11, False, False)
    assert ours == list(theirs) and our_names == their_names
    if their_labels is None:
        assert our_labels is None
    else:
        np.testing.assert_array_equal(our_labels, their_labels)
    for subset in ("training", "validation"):
        paths, _ = dataset_utils.get_training_or_validation_split(
            theirs, their_labels, 0.3, subset)
        ds = utils.image_dataset_from_directory(
            tree, labels=given, image_size=3, batch_size=2, seed=11, validation_split=0.3,
            subset=subset, verbose=False)
        assert ds.file_paths == list(paths) and ds.class_names == their_names


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("aspect", [None, "crop_to_aspect_ratio", "pad_to_aspect_ratio"])
@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
@pytest.mark.parametrize("color_mode,channels", [("rgb", 3), ("grayscale", 1), ("rgba", 4)])
def test_pixels_are_keras_pillow_loaders(tree: Path, color_mode: str, channels: int,
                                         interpolation: str, aspect: str | None,
                                         data_format: str) -> None:
    size = (7, 11)
    flags = {"crop_to_aspect_ratio": aspect == "crop_to_aspect_ratio",
             "pad_to_aspect_ratio": aspect == "pad_to_aspect_ratio"}
    ds = utils.image_dataset_from_directory(
        tree, color_mode=color_mode, image_size=size, interpolation=interpolation,
        shuffle=False, batch_size=3, data_format=data_format, verbose=False, **flags)
    images = np.concatenate([x for x, _ in ds])
    for path, ours in zip(ds.file_paths, images, strict=True):
        theirs = image_dataset_utils._load_image_grain(
            path, size, channels, interpolation, data_format, **flags)
        np.testing.assert_allclose(ours, keras.ops.convert_to_numpy(theirs), rtol=1e-5,
                                   atol=1e-3, err_msg=path)
