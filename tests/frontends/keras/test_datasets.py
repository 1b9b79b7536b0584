"""kiln.datasets: Keras's file formats read back from tiny files written here with NumPy,
Keras's preprocessing semantics on handmade examples, refusal of hostile pickles, the digits
loader, and the synthetic sets. No test touches the network: any attempt raises."""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import socket
import urllib.error
import urllib.request
import zipfile

import numpy as np
import pytest

from kiln.datasets import (
    DatasetNotFoundError,
    UnsafePickleError,
    boston_housing,
    imdb,
    mnist,
    reuters,
    synthetic,
    to_categorical,
    vectorize_sequences,
)
from kiln.frontends.keras.datasets import cache
from kiln.ir.errors import KilnValueError


@pytest.fixture(autouse=True)
def no_network(monkeypatch, tmp_path):
    """Downloads off, an empty Keras home, and any network use an error."""

    def refuse(*args, **kwargs):
        raise AssertionError("a test tried to use the network")

    monkeypatch.setenv("KILN_OFFLINE", "1")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.chdir(tmp_path)


def objects(lists):
    out = np.empty(len(lists), dtype=object)
    for i, x in enumerate(lists):
        out[i] = list(x)
    return out


def permutation(n, rng):
    # Keras: indices = np.arange(n); rng.shuffle(indices)
    indices = np.arange(n)
    rng.shuffle(indices)
    return indices


# --- mnist and boston_housing -----------------------------------------------------------------


def write_mnist(path):
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.integers(0, 256, (5, 28, 28), dtype=np.uint8),
        "y_train": rng.integers(0, 10, 5, dtype=np.uint8),
        "x_test": rng.integers(0, 256, (3, 28, 28), dtype=np.uint8),
        "y_test": rng.integers(0, 10, 3, dtype=np.uint8),
    }
    np.savez_compressed(path, **arrays)
    return arrays


def test_mnist_from_path(tmp_path):
    arrays = write_mnist(tmp_path / "m.npz")
    (x_train, y_train), (x_test, y_test) = mnist.load_data(path=str(tmp_path / "m.npz"))
    for got, key in [(x_train, "x_train"), (y_train, "y_train"), (x_test, "x_test")]:
        np.testing.assert_array_equal(got, arrays[key])
        assert got.dtype == np.uint8
    np.testing.assert_array_equal(y_test, arrays["y_test"])


def test_mnist_from_keras_home_cache(tmp_path):
    folder = tmp_path / "keras_home" / "datasets"
    folder.mkdir(parents=True)
    arrays = write_mnist(folder / "mnist.npz")
    (x_train, _), (_, y_test) = mnist.load_data()
    np.testing.assert_array_equal(x_train, arrays["x_train"])
    np.testing.assert_array_equal(y_test, arrays["y_test"])


def test_missing_file_names_where_to_put_it(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        mnist.load_data()
    message = str(info.value)
    assert str(tmp_path / "keras_home" / "datasets" / "mnist.npz") in message
    assert "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz" in message
    assert isinstance(info.value, FileNotFoundError)


def test_missing_keys_are_named(tmp_path):
    np.savez(tmp_path / "m.npz", x_train=np.zeros(2))
    with pytest.raises(KilnValueError, match="y_train"):
        mnist.load_data(path=str(tmp_path / "m.npz"))


def test_boston_housing_split_as_keras(tmp_path):
    x = np.arange(10 * 13, dtype=np.float64).reshape(10, 13)
    y = np.arange(10, dtype=np.float64) * 1.5
    np.savez(tmp_path / "b.npz", x=x, y=y)
    (x_train, y_train), (x_test, y_test) = boston_housing.load_data(
        path=str(tmp_path / "b.npz"), test_split=0.25, seed=7
    )
    order = permutation(10, np.random.RandomState(7))
    np.testing.assert_array_equal(x_train, x[order[:7]])  # int(10 * 0.75) = 7
    np.testing.assert_array_equal(y_train, y[order[:7]])
    np.testing.assert_array_equal(x_test, x[order[7:]])
    np.testing.assert_array_equal(y_test, y[order[7:]])
    # np.random.seed(seed) then a permutation draws the same order (older Keras did that).
    np.random.seed(7)
    np.testing.assert_array_equal(order, np.random.permutation(10))


def test_boston_housing_rejects_bad_split(tmp_path):
    with pytest.raises(KilnValueError, match="test_split=1.5"):
        boston_housing.load_data(test_split=1.5)


# --- imdb and reuters -------------------------------------------------------------------------

IMDB_TRAIN = [[1, 2, 3], [4, 5, 1, 2, 9, 9], [7], [10, 11, 1, 5]]
IMDB_TEST = [[3, 3], [8, 1, 4, 6, 2, 2, 2], [6, 12]]


def write_imdb(path):
    np.savez(
        path,
        x_train=objects(IMDB_TRAIN),
        y_train=np.array([0, 1, 0, 1], dtype=np.int64),
        x_test=objects(IMDB_TEST),
        y_test=np.array([1, 0, 1], dtype=np.int64),
    )


def expected_imdb(seed, num_words, skip_top, maxlen, start_char, oov_char, index_from):
    """Keras's documented preprocessing, written out independently."""
    rng = np.random.RandomState(seed)
    parts = []
    for data, labels in [(IMDB_TRAIN, [0, 1, 0, 1]), (IMDB_TEST, [1, 0, 1])]:
        order = permutation(len(data), rng)
        xs = [([start_char] if start_char is not None else []) + [w + index_from for w in data[i]]
              for i in order]  # fmt: skip
        ys = [labels[i] for i in order]
        if maxlen:
            keep = [i for i, x in enumerate(xs) if len(x) < maxlen]
            xs, ys = [xs[i] for i in keep], [ys[i] for i in keep]
        parts.append((xs, ys))
    every = parts[0][0] + parts[1][0]
    top = num_words or max(max(x) for x in every)

    def limit(x):
        if oov_char is None:
            return [w for w in x if skip_top <= w < top]
        return [w if skip_top <= w < top else oov_char for w in x]

    return [([limit(x) for x in xs], ys) for xs, ys in parts]


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"num_words": 8},
        {"num_words": 10, "skip_top": 5},
        {"maxlen": 5},
        {"num_words": 9, "oov_char": None},
        {"start_char": None, "index_from": 0, "seed": 1},
        {"index_from": 5, "oov_char": 3, "num_words": 12, "skip_top": 2, "maxlen": 7},
    ],
)
def test_imdb_preprocessing_matches_keras_rules(tmp_path, options):
    write_imdb(tmp_path / "imdb.npz")
    args = {"seed": 113, "num_words": None, "skip_top": 0, "maxlen": None, "start_char": 1,
            "oov_char": 2, "index_from": 3, **options}  # fmt: skip
    (x_train, y_train), (x_test, y_test) = imdb.load_data(path=str(tmp_path / "imdb.npz"), **args)
    (want_x_train, want_y_train), (want_x_test, want_y_test) = expected_imdb(**args)
    assert x_train.dtype == object and x_train.ndim == 1
    assert [list(x) for x in x_train] == want_x_train
    assert [list(x) for x in x_test] == want_x_test
    assert y_train.tolist() == want_y_train
    assert y_test.tolist() == want_y_test


def test_imdb_handmade_example():
    """One case spelled out: no shuffle effect to compute, the expected lists by hand."""
    os.makedirs("keras_home/datasets")
    np.savez(
        "keras_home/datasets/imdb.npz",
        x_train=objects([[1, 2, 3, 4, 5]]),
        y_train=np.array([1]),
        x_test=objects([[5, 6, 7, 1]]),
        y_test=np.array([0]),
    )
    # ranks + 3, start 1: train [1, 4, 5, 6, 7, 8], test [1, 8, 9, 10, 4]. num_words=9 turns
    # 9 and 10 into 2; skip_top=5 turns 1 (the start) and 4 into 2.
    (x_train, y_train), (x_test, y_test) = imdb.load_data(num_words=9, skip_top=5)
    assert list(x_train[0]) == [2, 2, 5, 6, 7, 8]
    assert list(x_test[0]) == [2, 8, 2, 2, 2]
    # maxlen=6 drops the 6-long training review, leaving nothing: Keras's error.
    with pytest.raises(KilnValueError, match="Increase maxlen"):
        imdb.load_data(maxlen=6)
    # num_words=None: the largest index (10) itself falls outside [0, 10) and becomes oov.
    (x_train, _), (x_test, _) = imdb.load_data()
    assert list(x_test[0]) == [1, 8, 9, 2, 4]


def test_imdb_rejects_bad_arguments():
    with pytest.raises(KilnValueError, match="num_words=-1"):
        imdb.load_data(num_words=-1)
    with pytest.raises(KilnValueError, match="skip_top"):
        imdb.load_data(skip_top=1.5)


def test_reuters_split_and_rules(tmp_path):
    data = [[1, 2], [3, 4, 5], [6], [2, 2, 2, 2], [7, 8], [9, 1, 1], [4], [5, 5]]
    labels = np.array([0, 1, 2, 3, 4, 5, 0, 1], dtype=np.int64)
    np.savez(tmp_path / "reuters.npz", x=objects(data), y=labels)
    (x_train, y_train), (x_test, y_test) = reuters.load_data(
        path=str(tmp_path / "reuters.npz"), num_words=9, maxlen=4, test_split=0.25
    )
    order = permutation(8, np.random.RandomState(113))
    xs = [[1] + [w + 3 for w in data[i]] for i in order]
    ys = [int(labels[i]) for i in order]
    kept = [i for i, x in enumerate(xs) if len(x) < 4]
    xs = [[w if w < 9 else 2 for w in xs[i]] for i in kept]
    ys = [ys[i] for i in kept]
    idx = int(len(xs) * 0.75)
    assert [list(x) for x in x_train] == xs[:idx]
    assert [list(x) for x in x_test] == xs[idx:]
    assert y_train.tolist() == ys[:idx] and y_test.tolist() == ys[idx:]
    assert len(reuters.get_label_names()) == 46


def test_word_index_from_cache(tmp_path):
    folder = tmp_path / "keras_home" / "datasets"
    folder.mkdir(parents=True)
    (folder / "imdb_word_index.json").write_text(json.dumps({"the": 1, "film": 19}))
    (folder / "reuters_word_index.json").write_text(json.dumps({"said": 1}))
    assert imdb.get_word_index() == {"the": 1, "film": 19}
    assert reuters.get_word_index() == {"said": 1}


def test_relative_path_in_working_directory():
    write_imdb("local_imdb.npz")
    (x_train, _), _ = imdb.load_data(path="local_imdb.npz")
    assert len(x_train) == 4


# --- safety of object arrays ------------------------------------------------------------------


def test_numpy1_era_pickle_loads(tmp_path):
    """Files written by NumPy 1 name numpy.core.multiarray._reconstruct; they load."""
    payload = pickle.dumps(objects([[1, 2], [3]]), protocol=2)
    payload = payload.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert b"numpy.core.multiarray\n_reconstruct" in payload
    npy = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        npy, {"descr": "|O", "fortran_order": False, "shape": (2,)}
    )
    npy.write(payload)
    np.savez(tmp_path / "r.npz", y=np.array([0, 1]))
    with zipfile.ZipFile(tmp_path / "r.npz", "a") as archive:
        archive.writestr("x.npy", npy.getvalue())
    (x_train, _), (x_test, _) = reuters.load_data(
        path=str(tmp_path / "r.npz"), test_split=0.5, seed=0, num_words=100
    )
    assert sorted([list(x_train[0]), list(x_test[0])]) == [[1, 4, 5], [1, 6]]


class _OpenFile:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


class _System:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


@pytest.mark.parametrize("payload", [_OpenFile, _System])
def test_hostile_pickle_is_refused_and_never_runs(tmp_path, payload):
    marker = tmp_path / "pwned"
    hostile = np.empty(2, dtype=object)
    hostile[0] = [1, 2]
    hostile[1] = payload(str(marker))
    np.savez(
        tmp_path / "evil.npz", x_train=hostile, y_train=np.array([0, 1]),
        x_test=objects([[1]]), y_test=np.array([0]),
    )  # fmt: skip
    assert not marker.exists()
    with pytest.raises(UnsafePickleError, match=r"Refusing to load .*(open|system)"):
        imdb.load_data(path=str(tmp_path / "evil.npz"))
    assert not marker.exists()
    if payload is _OpenFile:  # the control: NumPy's own pickle loading does run it
        np.load(tmp_path / "evil.npz", allow_pickle=True)["x_train"]
        assert marker.exists()


def write_raw_object_npz(path, payload, shape):
    """An .npz whose x.npy is an object-array header followed by the given pickle bytes."""
    npy = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        npy, {"descr": "|O", "fortran_order": False, "shape": shape}
    )
    npy.write(payload)
    labels = io.BytesIO()
    np.lib.format.write_array(labels, np.arange(shape[0]))
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("y.npy", labels.getvalue())
        archive.writestr("x.npy", npy.getvalue())


def test_unpickled_object_must_match_its_header(tmp_path):
    """A pickle that builds something other than the array its header announces is refused."""
    write_raw_object_npz(tmp_path / "odd.npz", pickle.dumps([1, 2, 3]), (3,))
    with pytest.raises(UnsafePickleError, match="unpickle to an array"):
        reuters.load_data(path=str(tmp_path / "odd.npz"))


def test_codecs_encode_only_as_pickle_uses_it(tmp_path):
    # protocol 2: GLOBAL _codecs.encode, args ("x", "rot13"), REDUCE, STOP
    payload = b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00xX\x05\x00\x00\x00rot13\x86R."
    write_raw_object_npz(tmp_path / "codec.npz", payload, (1,))
    with pytest.raises(UnsafePickleError, match="rot13"):
        reuters.load_data(path=str(tmp_path / "codec.npz"))


# --- downloads (with a fake urlopen: never the network) ---------------------------------------


class _FakeResponse(io.BytesIO):
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def test_download_when_allowed_verifies_hash(monkeypatch, tmp_path):
    body = b"some bytes"
    monkeypatch.delenv("KILN_OFFLINE")
    seen = []

    def fake_urlopen(url, timeout):
        seen.append((url, timeout))
        return _FakeResponse(body)

    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    good = hashlib.sha256(body).hexdigest()
    path = cache.get_file("a.bin", "https://example.invalid/a.bin", good)
    assert open(path, "rb").read() == body
    assert path == str(tmp_path / "keras_home" / "datasets" / "a.bin")
    assert seen == [("https://example.invalid/a.bin", cache.DOWNLOAD_TIMEOUT_S)]

    with pytest.raises(DatasetNotFoundError, match="does not match its hash"):
        cache.get_file("b.bin", "https://example.invalid/b.bin", "0" * 64)
    assert os.listdir(tmp_path / "keras_home" / "datasets") == ["a.bin"]


def test_download_failure_is_one_clear_error(monkeypatch):
    monkeypatch.setenv("KILN_OFFLINE", "0")

    def unreachable(url, timeout):
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(urllib.request, "urlopen", unreachable)
    with pytest.raises(DatasetNotFoundError, match="download failed.*place it at"):
        boston_housing.load_data()


# --- digits -----------------------------------------------------------------------------------


def test_digits_shapes_and_dtypes():
    pytest.importorskip("sklearn")
    from kiln.datasets import digits

    (x_train, y_train), (x_test, y_test) = digits.load_data()
    assert x_train.shape == (1437, 64) and x_test.shape == (360, 64)
    assert x_train.dtype == np.float32 and y_train.dtype == np.int64
    assert 0 <= x_train.min() and x_train.max() == 16
    assert set(np.unique(np.concatenate([y_train, y_test]))) == set(range(10))
    (x_again, _), _ = digits.load_data()
    np.testing.assert_array_equal(x_train, x_again)


# --- encoding and synthetic data --------------------------------------------------------------


def test_vectorize_sequences_as_the_book():
    got = vectorize_sequences([[1, 3, 3], [], [0, 4]], dimension=5)
    want = np.zeros((3, 5))
    for i, seq in enumerate([[1, 3, 3], [], [0, 4]]):
        for j in seq:
            want[i, j] = 1.0
    np.testing.assert_array_equal(got, want)
    assert got.dtype == np.float32
    with pytest.raises(KilnValueError, match="index=5"):
        vectorize_sequences([[5]], dimension=5)


def test_to_categorical_as_keras():
    import kiln.utils

    assert kiln.utils.to_categorical is to_categorical
    got = to_categorical([0, 2, 1, 2])
    np.testing.assert_array_equal(got, np.eye(3)[[0, 2, 1, 2]])
    assert got.dtype == np.float64
    assert to_categorical(np.array([[1], [0]]), num_classes=4).shape == (2, 4)
    assert to_categorical(np.zeros((2, 3), dtype=int), 2).shape == (2, 3, 2)
    with pytest.raises(KilnValueError, match="label=3"):
        to_categorical([0, 3], num_classes=3)


def test_imdb_like_shape_and_determinism():
    (x_train, y_train), (x_test, y_test) = synthetic.imdb_like(200, num_words=500, maxlen=40)
    assert len(x_train) == 160 and len(x_test) == 40
    assert x_train.dtype == object and y_train.dtype == np.int64
    assert all(x[0] == 1 and len(x) <= 40 and max(x) < 500 for x in x_train)
    assert set(y_train.tolist()) | set(y_test.tolist()) == {0, 1}
    (again, _), _ = synthetic.imdb_like(200, num_words=500, maxlen=40)
    assert [list(x) for x in again] == [list(x) for x in x_train]


def test_imdb_like_is_learnable_by_logistic_regression():
    (x_train, y_train), (x_test, y_test) = synthetic.imdb_like(
        1000, num_words=2000, maxlen=100, seed=3
    )
    a_train = vectorize_sequences(x_train, 2000)
    a_test = vectorize_sequences(x_test, 2000)
    target = y_train.astype(np.float32)
    w, b = np.zeros(2000, dtype=np.float32), 0.0
    for _ in range(150):
        p = 1 / (1 + np.exp(-(a_train @ w + b)))
        w -= 0.5 * a_train.T @ (p - target) / len(target)
        b -= 0.5 * np.mean(p - target)
    accuracy = np.mean(((a_test @ w + b) > 0) == y_test)
    assert accuracy > 0.8


def test_reuters_like_and_boston_like():
    (x_train, y_train), _ = synthetic.reuters_like(300, num_words=1000, num_classes=46)
    assert x_train.dtype == object and y_train.dtype == np.int64
    assert y_train.min() >= 0 and y_train.max() < 46
    assert all(max(x) < 1000 for x in x_train)
    (x_train, y_train), (x_test, y_test) = synthetic.boston_like()
    assert x_train.shape == (404, 13) and x_test.shape == (102, 13)
    assert x_train.dtype == np.float64 and 5 <= y_train.min() and y_train.max() <= 50
    # A least-squares fit explains most of the price: the features carry it.
    design = np.hstack([x_train, np.ones((len(x_train), 1))])
    coef, *_ = np.linalg.lstsq(design, y_train, rcond=None)
    pred = np.hstack([x_test, np.ones((len(x_test), 1))]) @ coef
    r2 = 1 - np.sum((pred - y_test) ** 2) / np.sum((y_test - y_test.mean()) ** 2)
    assert r2 > 0.6
