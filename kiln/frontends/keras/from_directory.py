"""keras.utils.text_dataset_from_directory, as Keras 3 defines it: files found in one
subdirectory per class (classes in sorted order, or `class_names`' order), shuffled with
NumPy's RandomState(seed) as Keras shuffles them, so that a seeded validation_split puts the
same files in each subset as Keras does, then read batch by batch into a BatchDataset.

Where kiln differs: the texts are a NumPy array of str (TensorFlow gives bytes); shuffling
each pass is a full permutation (tf.data shuffles within a buffer of 8 batches)."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from kiln.frontends.keras.batches import BatchDataset
from kiln.frontends.keras.data import check_positive_int
from kiln.ir import KilnValueError


def index_directory(directory: str, labels: Any, formats: tuple[str, ...],
                    class_names: Sequence[str] | None, shuffle: bool, seed: int,
                    follow_links: bool, verbose: bool,
                    ) -> tuple[list[str], np.ndarray | None, list[str] | None]:
    """(file paths, int32 labels or None, class names or None), as Keras's index_directory:
    files of the allowed extensions under each class directory, walked in sorted order."""
    if not os.path.isdir(directory):
        raise KilnValueError(f"Expected a directory of files. Received: directory="
                             f"{directory!r}, which is not a directory")
    if labels == "inferred":
        subdirs = [d for d in sorted(os.listdir(directory))
                   if os.path.isdir(os.path.join(directory, d)) and not d.startswith(".")]
        if class_names is not None:
            if not set(class_names) <= set(subdirs):
                raise KilnValueError(f"The `class_names` passed did not match the names of the "
                                     f"subdirectories of the target directory. Expected: "
                                     f"{subdirs} (or a subset of it), but received: "
                                     f"class_names={list(class_names)}")
            subdirs = list(class_names)
    else:
        if class_names is not None:
            raise KilnValueError("You can only pass `class_names` if `labels=\"inferred\"`. "
                                 f"Received: labels={labels!r}, and class_names="
                                 f"{list(class_names)}")
        subdirs = [""]
    paths: list[str] = []
    found: list[int] = []
    for index, subdir in enumerate(subdirs):
        root = os.path.join(directory, subdir)
        walk = sorted(os.walk(root, followlinks=follow_links), key=lambda entry: entry[0])
        for folder, _, files in walk:
            for name in sorted(files):
                if name.lower().endswith(formats):
                    paths.append(os.path.join(folder, name))
                    found.append(index)
    if labels == "inferred":
        label_array: np.ndarray | None = np.array(found, np.int32)
        names: list[str] | None = subdirs
    elif labels is None:
        label_array, names = None, None
    else:
        if len(labels) != len(paths):
            raise KilnValueError(f"Expected the lengths of `labels` to match the number of "
                                 f"files in the target directory. len(labels) is "
                                 f"{len(labels)} while we found {len(paths)} files in "
                                 f"directory {directory}.")
        label_array = np.asarray(labels, np.int32)
        names = [str(label) for label in sorted(set(np.asarray(labels).tolist()))]
    if verbose:
        print(f"Found {len(paths)} files." if label_array is None else
              f"Found {len(paths)} files belonging to {len(names)} classes.")
    if shuffle:
        np.random.RandomState(seed).shuffle(paths)
        if label_array is not None:
            np.random.RandomState(seed).shuffle(label_array)
    return paths, label_array, names


def check_split(validation_split: float | None, subset: str | None, shuffle: bool,
                seed: int | None) -> None:
    if validation_split and not 0 < validation_split < 1:
        raise KilnValueError(f"`validation_split` must be between 0 and 1, received: "
                             f"{validation_split}")
    if (validation_split or subset) and not (validation_split and subset):
        raise KilnValueError("If `subset` is set, `validation_split` must be set, and "
                             "inversely.")
    if subset not in ("training", "validation", "both", None):
        raise KilnValueError(f"`subset` must be either \"training\", \"validation\" or "
                             f"\"both\", received: {subset}")
    if validation_split and shuffle and seed is None:
        raise KilnValueError("If using `validation_split` and shuffling the data, you must "
                             "provide a `seed` argument, to make sure that there is no "
                             "overlap between the training and validation subset.")


def split(paths: list[str], labels: np.ndarray | None, validation_split: float | None,
          subset: str, verbose: bool) -> tuple[list[str], np.ndarray | None]:
    """Keras's split: the last int(validation_split * n) files are the validation subset."""
    if not validation_split:
        return paths, labels
    count = int(validation_split * len(paths))
    if subset == "training":
        if verbose:
            print(f"Using {len(paths) - count} files for training.")
        keep = slice(0, len(paths) - count)
    else:
        if verbose:
            print(f"Using {count} files for validation.")
        keep = slice(len(paths) - count, len(paths))
    return paths[keep], None if labels is None else labels[keep]


def encode_labels(labels: np.ndarray, label_mode: str, classes: int) -> np.ndarray:
    if label_mode == "binary":
        return labels.astype(np.float32).reshape(-1, 1)
    if label_mode == "categorical":
        return np.eye(classes, dtype=np.float32)[labels]
    return labels


def dataset(paths: list[str], labels: np.ndarray | None, label_mode: str | None,
            classes: int, batch_size: int | None, shuffle: bool, seed: int,
            read: Any, class_names: list[str] | None) -> BatchDataset:
    """A BatchDataset of (read(paths of a batch), labels) (or the read samples alone where
    there are no labels), in a new order each pass when shuffling."""
    order_rng = np.random.default_rng(seed)
    size = batch_size or 1

    def make() -> Iterator[Any]:
        order = order_rng.permutation(len(paths)) if shuffle else np.arange(len(paths))
        for start in range(0, len(paths), size):
            index = order[start:start + size]
            samples = read([paths[i] for i in index])
            if batch_size is None:
                samples = samples[0]
            if labels is None:
                yield samples
                continue
            target = encode_labels(labels[index], label_mode, classes)
            yield samples, (target[0] if batch_size is None else target)
    length = len(paths) if batch_size is None else -(-len(paths) // batch_size)
    return BatchDataset(make, length, class_names=class_names, file_paths=list(paths))


def check_labels(labels: Any, label_mode: str | None, what: str) -> None:
    if labels not in ("inferred", None) and not isinstance(labels, (list, tuple, np.ndarray)):
        raise KilnValueError(f"`labels` argument should be a list/tuple of integer labels, of "
                             f"the same size as the number of {what} files in the target "
                             f"directory. If you wish to infer the labels from the "
                             f"subdirectory names in the target directory, pass "
                             f"`labels=\"inferred\"`. If you wish to get a dataset that only "
                             f"contains {what} samples (no labels), pass `labels=None`. "
                             f"Received: labels={labels!r}")
    if label_mode not in ("int", "categorical", "binary", None):
        raise KilnValueError(f"`label_mode` argument must be one of \"int\", \"categorical\", "
                             f"\"binary\", or None. Received: label_mode={label_mode!r}")


def load_subsets(directory: str, labels: Any, label_mode: str | None,
              class_names: Sequence[str] | None, batch_size: int | None, shuffle: bool,
              seed: int | None, validation_split: float | None, subset: str | None,
              follow_links: bool, verbose: bool, formats: tuple[str, ...], missing: str,
              read: Any) -> Any:
    """What the *_dataset_from_directory functions share, after their own checks: the
    files indexed, labelled and split as Keras does, read batch by batch by `read(paths)`.
    `missing` names the files in the error when a subset has none."""
    if labels is None or label_mode is None:
        labels, label_mode = None, None
    check_split(validation_split, subset, shuffle, seed)
    if seed is None:
        seed = int(np.random.randint(1e6))
    paths, label_array, names = index_directory(directory, labels, formats, class_names,
                                                shuffle, seed, follow_links, verbose)
    if label_mode == "binary" and len(names) != 2:
        raise KilnValueError(f"When passing `label_mode=\"binary\"`, there must be exactly 2 "
                             f"class_names. Received: class_names={names}")

    def subset_of(which: str | None, shuffled: bool) -> BatchDataset:
        chosen, chosen_labels = split(paths, label_array, validation_split, which, verbose)
        if not chosen:
            what = {"training": "training ", "validation": "validation "}.get(which or "", "")
            raise KilnValueError(missing.format(what=what, directory=directory))
        return dataset(chosen, chosen_labels, label_mode, len(names or ()), batch_size,
                       shuffled, seed, read, names)
    if subset == "both":
        return subset_of("training", shuffle), subset_of("validation", False)
    return subset_of(subset, shuffle)


def text_dataset_from_directory(directory: str, labels: Any = "inferred",
                                label_mode: str | None = "int",
                                class_names: Sequence[str] | None = None,
                                batch_size: int | None = 32, max_length: int | None = None,
                                shuffle: bool = True, seed: int | None = None,
                                validation_split: float | None = None,
                                subset: str | None = None, follow_links: bool = False,
                                verbose: bool = True) -> Any:
    """Batches of (texts, labels) from `directory`'s .txt files, one subdirectory per class:
    texts a (batch,) array of str, labels int32 (label_mode "int"), float32 one-hot
    ("categorical") or float32 of shape (batch, 1) ("binary"); label_mode None or labels
    None: the texts alone. max_length cuts each text to that many bytes. subset "both"
    returns (training, validation)."""
    check_labels(labels, label_mode, "text")
    batch_size = check_positive_int(batch_size, "batch_size")
    max_length = check_positive_int(max_length, "max_length")

    def read(batch: list[str]) -> np.ndarray:
        texts = np.empty(len(batch), object)
        for i, path in enumerate(batch):
            with open(path, "rb") as file:
                raw = file.read() if max_length is None else file.read(max_length)
            texts[i] = raw.decode("utf-8", errors="ignore" if max_length else "strict")
        return texts

    return load_subsets(directory, labels, label_mode, class_names, batch_size, shuffle, seed,
                        validation_split, subset, follow_links, verbose, (".txt",),
                        "No {what}text files found in directory {directory}. Allowed format: "
                        ".txt", read)
