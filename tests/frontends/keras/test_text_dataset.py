"""text_dataset_from_directory against Keras 3.15 on TensorFlow (cases recorded by
data/make_keras_text_dataset.py on the tree of files kept in the same JSON): the same class
names, the same files in each subset of a seeded split, the same texts and labels in the
same order where Keras does not shuffle (the same multiset where it does), then the book's
chapter-11 pipeline: adapt a TextVectorization on the texts, map the dataset through it, fit
and evaluate. And BatchDataset's map, cache, prefetch, take and skip."""

from __future__ import annotations

import json
import threading
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from kiln import layers, models, utils
from kiln.frontends.keras.batches import AUTOTUNE, BatchDataset
from kiln.ir import KilnTypeError, KilnValueError

RECORDED = json.loads((Path(__file__).parent / "data" / "keras_text_dataset.json")
                      .read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("texts")
    for path, text in RECORDED["tree"].items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text, encoding="utf-8")
    return root


def _elements(dataset) -> list[dict]:  # noqa: ANN001
    out = []
    for element in dataset:
        if isinstance(element, tuple):
            texts, labels = element
            labels = np.asarray(labels)
            out.append({"texts": np.asarray(texts, object).tolist(), "labels": labels.tolist(),
                        "label_dtype": str(labels.dtype), "label_shape": list(labels.shape)})
        else:
            out.append({"texts": np.asarray(element, object).tolist()})
    return out


def _pairs(batches: list[dict]) -> Counter:
    found: Counter = Counter()
    for batch in batches:
        texts = batch["texts"] if isinstance(batch["texts"], list) else [batch["texts"]]
        labels = batch.get("labels", [None] * len(texts))
        found.update((t, json.dumps(label)) for t, label in zip(texts, labels))
    return found


@pytest.mark.parametrize("name", sorted(RECORDED["cases"]))
def test_matches_keras(tree: Path, name: str) -> None:
    case = RECORDED["cases"][name]
    kwargs = case["kwargs"]
    got = utils.text_dataset_from_directory(str(tree), verbose=False, **kwargs)
    subsets = got if isinstance(got, tuple) else (got,)
    assert len(subsets) == len(case["subsets"])
    for position, (ours, theirs) in enumerate(zip(subsets, case["subsets"], strict=True)):
        assert ours.class_names == theirs["class_names"]
        batches = _elements(ours)
        assert len(batches) == len(theirs["batches"]) == len(ours)
        shuffled = kwargs.get("shuffle", True) and not (kwargs.get("subset") == "both"
                                                        and position == 1)
        if shuffled:  # tf.data shuffles within a buffer: the same samples, another order
            assert _pairs(batches) == _pairs(theirs["batches"])
            assert [len(b["texts"]) for b in batches] == \
                [len(b["texts"]) for b in theirs["batches"]]
        else:
            assert batches == theirs["batches"]


def test_arguments_are_checked(tree: Path) -> None:
    make = utils.text_dataset_from_directory
    with pytest.raises(KilnValueError, match="must provide a `seed`"):
        make(str(tree), validation_split=0.2, subset="training")
    with pytest.raises(KilnValueError, match="If `subset` is set, `validation_split`"):
        make(str(tree), subset="training", seed=1)
    with pytest.raises(KilnValueError, match="`label_mode` argument must be one of"):
        make(str(tree), label_mode="sparse")
    with pytest.raises(KilnValueError, match="did not match the names of the subdirectories"):
        make(str(tree), class_names=["neg", "unknown"])
    with pytest.raises(KilnValueError, match="len\\(labels\\) is 2 while we found 14 files"):
        make(str(tree), labels=[0, 1], verbose=False)  # every .txt file, .hidden's too
    with pytest.raises(KilnValueError, match="not a directory"):
        make(str(tree / "missing"))
    with pytest.raises(KilnValueError, match="No text files found"):
        make(str(tree / "neg" / "sub"), verbose=False)  # files, but no class directories


def test_found_messages(tree: Path, capsys: pytest.CaptureFixture) -> None:
    utils.text_dataset_from_directory(str(tree), validation_split=0.3, subset="both", seed=7)
    assert capsys.readouterr().out.splitlines() == [
        "Found 13 files belonging to 2 classes.", "Using 10 files for training.",
        "Using 3 files for validation."]


def test_shuffling_draws_a_new_order_each_pass(tree: Path) -> None:
    dataset = utils.text_dataset_from_directory(str(tree), batch_size=13, seed=3,
                                                verbose=False)
    first, second = (next(iter(dataset))[0].tolist() for _ in range(2))
    assert sorted(first) == sorted(second) and first != second
    again = utils.text_dataset_from_directory(str(tree), batch_size=13, seed=3, verbose=False)
    assert next(iter(again))[0].tolist() == first


def test_the_books_chapter_11_pipeline(tree: Path) -> None:
    """text_dataset_from_directory -> adapt on the texts -> map through the vectorizer ->
    fit(validation_data=...) -> evaluate, as the book writes it."""
    utils.set_random_seed(0)
    train_ds, val_ds = utils.text_dataset_from_directory(
        str(tree), batch_size=4, validation_split=0.3, subset="both", seed=7, verbose=False)
    vectorizer = layers.TextVectorization(max_tokens=40, output_mode="multi_hot")
    vectorizer.adapt(train_ds.map(lambda x, y: x))
    binary_train = train_ds.map(lambda x, y: (vectorizer(x), y), num_parallel_calls=4)
    binary_val = val_ds.map(lambda x, y: (vectorizer(x), y), num_parallel_calls=4)
    inputs = layers.Input((vectorizer.vocabulary_size(),))
    outputs = layers.Dense(1, activation="sigmoid")(layers.Dense(8, activation="relu")(inputs))
    model = models.Model(inputs, outputs)
    model.compile("rmsprop", "binary_crossentropy", metrics=["accuracy"])
    history = model.fit(binary_train.cache(), validation_data=binary_val.cache(), epochs=3,
                        verbose=0)
    assert sorted(history.history) == ["accuracy", "loss", "val_accuracy", "val_loss"]
    assert len(history.history["loss"]) == 3
    x = np.concatenate([b[0] for b in binary_val])
    y = np.concatenate([b[1] for b in binary_val])
    np.testing.assert_allclose(model.evaluate(binary_val, verbose=0),
                               model.evaluate(x, y, batch_size=4, verbose=0), rtol=1e-6)


def _counting(n: int = 5) -> tuple[BatchDataset, list[int]]:
    made: list[int] = []

    def make():
        for i in range(n):
            made.append(i)
            yield np.full((2, 1), i, np.float32), np.array([i, i])
    return BatchDataset(make, n, class_names=["a"]), made


def test_map_cache_take_skip_and_prefetch() -> None:
    dataset, made = _counting()
    doubled = dataset.map(lambda x, y: (x * 2, y), num_parallel_calls=3)
    assert [int(x[0, 0]) for x, _ in doubled] == [0, 2, 4, 6, 8]  # order kept
    assert doubled.class_names == ["a"] and len(doubled) == 5
    cached = dataset.cache()
    made.clear()
    list(cached.take(2))  # an unfinished pass is not kept
    list(cached)
    list(cached)
    assert made == [0, 1, 0, 1, 2, 3, 4]
    assert [int(y[0]) for _, y in dataset.skip(3)] == [3, 4]
    assert len(dataset.skip(7)) == 0 and len(dataset.take(2)) == 2
    assert [int(y[0]) for _, y in dataset.prefetch(AUTOTUNE)] == [0, 1, 2, 3, 4]
    assert [int(y[0]) for _, y in dataset.prefetch(2).take(1)] == [0]
    assert not [t for t in threading.enumerate() if t.name == "kiln-prefetch" and t.is_alive()]

    def broken():
        yield np.zeros(1)
        raise OSError("disk gone")
    with pytest.raises(OSError, match="disk gone"):
        list(BatchDataset(broken, None).prefetch(1))
    with pytest.raises(KilnTypeError, match="map expects a function"):
        dataset.map(3)
    with pytest.raises(KilnTypeError, match="in memory"):
        dataset.cache("file.cache")
    with pytest.raises(TypeError, match="length is unknown"):
        len(BatchDataset(broken, None))
