"""TextVectorization against Keras 3.15 (on TensorFlow): every recorded case of
data/keras_text_vectorization.json (made by running Keras's layer on its corpus: the
vocabularies, outputs and idf weights) on kiln's, plus its API, configs and errors.

The recorded cases of split=None on a 1-D batch are left out: Keras treats such a batch as
one text there, kiln as one text per entry (the layer's docstring lists the departures);
the multi_hot and count rows are float32 in kiln, int64 in Keras's eager call."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from kiln import layers, models
from kiln.ir import KilnValueError

CASES = json.loads((Path(__file__).parent / "data" / "keras_text_vectorization.json")
                   .read_text(encoding="utf-8"))["cases"]
DEPARTED = {"split_none_1d_multi_hot", "split_none_1d_int_osl"}


def _make(config: dict) -> layers.TextVectorization:
    config = dict(config)
    if isinstance(config.get("ngrams"), list):
        config["ngrams"] = tuple(config["ngrams"])
    return layers.TextVectorization(**config)


def _inputs(case: dict):  # noqa: ANN202
    if case["input_format"] == "scalar":
        return case["inputs"] if isinstance(case["inputs"], str) else case["inputs"][0]
    if case["input_format"] == "column":
        return np.array(case["inputs"], dtype=object).reshape(-1, 1)
    return case["inputs"]


@pytest.mark.parametrize("case", [c for c in CASES if c["name"] not in DEPARTED],
                         ids=lambda c: c["name"])
def test_each_recorded_case_computes_what_keras_computed(case: dict) -> None:
    layer = _make(case["config"])
    if case["adapt"] is not None:
        layer.adapt(case["adapt"])
    assert layer.get_vocabulary() == case["vocabulary"]
    assert layer.get_vocabulary(include_special_tokens=False) == case["vocabulary_no_special"]
    assert layer.vocabulary_size() == case["vocabulary_size"]
    out = layer(_inputs(case))
    assert list(out.shape) == case["shape"]
    expected = np.array(case["output"], dtype=np.float64).reshape(case["shape"])
    if case["config"].get("output_mode", "int") == "int":
        assert out.dtype == np.int64
        np.testing.assert_array_equal(out, expected)
    else:
        assert out.dtype == np.float32
        np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-6)
    if case.get("idf") is not None:
        np.testing.assert_allclose(layer._idf, case["idf"], rtol=1e-6)


def test_the_books_bag_of_bigrams_feeds_a_model_and_its_config_rebuilds_it() -> None:
    texts = ["this movie was great", "this movie was terrible", "great acting, great plot",
             "terrible, terrible plot"] * 4
    labels = np.array([1, 0, 1, 0] * 4, np.float32)
    vectorizer = layers.TextVectorization(ngrams=2, max_tokens=20, output_mode="multi_hot")
    vectorizer.adapt(texts)
    x = vectorizer(texts)
    assert x.shape == (16, vectorizer.vocabulary_size()) and x.dtype == np.float32
    assert vectorizer.get_vocabulary()[:4] == ["[UNK]", "terrible", "great", "was"]
    inputs = layers.Input((x.shape[1],))
    model = models.Model(inputs, layers.Dense(1, activation="sigmoid")(inputs))
    model.compile(optimizer="rmsprop", loss="binary_crossentropy", metrics=["accuracy"],
                  backend="reference")
    model.fit(x, labels, epochs=1, batch_size=8, verbose=0)
    again = layers.TextVectorization.from_config(json.loads(json.dumps(
        vectorizer.get_config())))
    np.testing.assert_array_equal(again(texts), x)
    assert again.get_vocabulary() == vectorizer.get_vocabulary()


def test_tf_idf_and_int_configs_round_trip_and_adapt_batches_like_one_corpus() -> None:
    corpus = ["a a b", "a c", "d", "", "b d d"]
    whole = layers.TextVectorization(output_mode="tf_idf", max_tokens=8, pad_to_max_tokens=True)
    whole.adapt(corpus)
    batched = layers.TextVectorization(output_mode="tf_idf", max_tokens=8,
                                       pad_to_max_tokens=True)
    batched.adapt((np.array(corpus[i:i + 2]), None) for i in range(0, 5, 2))
    np.testing.assert_array_equal(batched(corpus), whole(corpus))
    again = layers.TextVectorization.from_config(whole.get_config())
    np.testing.assert_allclose(again(corpus), whole(corpus), rtol=1e-6)
    ints = layers.TextVectorization(output_sequence_length=4, ragged=False)
    ints.adapt(corpus)
    np.testing.assert_array_equal(layers.TextVectorization.from_config(
        ints.get_config())(corpus), ints(corpus))
    ragged = layers.TextVectorization(vocabulary=["a", "b"], ragged=True)
    assert [list(r) for r in ragged(["a b c", ""])] == [[2, 3, 1], []]


def test_a_vocabulary_file_and_bytes_inputs(tmp_path: Path) -> None:
    path = tmp_path / "vocab.txt"
    path.write_text("\n[UNK]\nearth\nwind\n", encoding="utf-8")
    layer = layers.TextVectorization(vocabulary=str(path))
    assert layer.get_vocabulary() == ["", "[UNK]", "earth", "wind"]
    np.testing.assert_array_equal(layer([b"Wind, EARTH!", "fire"]), [[3, 2], [1, 0]])


def test_errors_name_the_layer_and_what_was_expected() -> None:
    for kwargs, message in [({"standardize": "upper"}, "expected standardize"),
                            ({"split": "comma"}, "expected split"),
                            ({"output_mode": "one_hot"}, "expected output_mode"),
                            ({"output_mode": "count", "output_sequence_length": 3},
                             "output_sequence_length"),
                            ({"max_tokens": 1}, "greater than 1"),
                            ({"pad_to_max_tokens": True}, "needs max_tokens"),
                            ({"sparse": True}, "sparse"),
                            ({"ngrams": [1, 2]}, None),
                            ({"ngrams": "2"}, "expected ngrams"),
                            ({"idf_weights": [1.0]}, "idf_weights are for"),
                            ({"output_mode": "tf_idf", "vocabulary": ["a"]}, "needs idf_weights"),
                            ({"vocabulary": ["a", "a"]}, "repeats"),
                            ({"vocabulary": ["a", ""]}, "padding token"),
                            ({"vocabulary": ["a", "b", "c"], "max_tokens": 4}, "larger than"),
                            ({"vocabulary": []}, "empty vocabulary")]:
        if message is None:
            layers.TextVectorization(**kwargs)  # a list of widths is taken as a tuple
            continue
        with pytest.raises(KilnValueError, match=message):
            layers.TextVectorization(name="vec", **kwargs)
    layer = layers.TextVectorization(name="vec")
    with pytest.raises(KilnValueError, match="'vec': has no vocabulary yet"):
        layer(["a b"])
    with pytest.raises(KilnValueError, match="expects strings"):
        layer.adapt([["a"], [3]])
    with pytest.raises(KilnValueError, match="runs on the host, on strings"):
        layer(layers.Input((1,)))
    with pytest.raises(KilnValueError, match="nothing to learn"):
        layers.TextVectorization(vocabulary=["a"]).adapt(["a"])
    with pytest.raises(KilnValueError, match="callable standardize cannot be saved"):
        layers.TextVectorization(standardize=str.upper).get_config()
