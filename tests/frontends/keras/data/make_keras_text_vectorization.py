"""Records data/keras_text_vectorization.json: Keras 3.15's TextVectorization on TensorFlow
(KERAS_BACKEND=tensorflow; needs tensorflow and keras, not in kiln's extras). Run it with
`python tests/frontends/keras/data/make_keras_text_vectorization.py OUT.json`."""

# ruff: noqa: E501 (the cases' notes go into the JSON verbatim)

import json
import os
import sys

os.environ["KERAS_BACKEND"] = "tensorflow"
import keras
import numpy as np
import tensorflow as tf

TV = keras.layers.TextVectorization

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "The dog barks; the fox runs!",
    "Don't stop \u2014 keep going...",
    "Caf\u00e9 au lait, s'il vous pla\u00eet: 2 euros 50.",
    "\u00c9COLE \u00e9cole Ecole ecole",
    "A b c a b c",
    "  leading and   trailing   spaces  ",
    "tab\tseparated\nnewline words",
    "",
    "   ",
    "123 456 123 ... 7.5 3,000",
]

TIE_CORPUS = ["b a c", "a b d", "c d", "zz yy", "\u00e4 z Z"]

UNICODE_TEXTS = [
    "Don't!",
    "\u00e9 \u00c9 e\u0301",
    "\u2014 ... \u2014 \u2026",
    "na\u00efve CAF\u00c9 Stra\u00dfe",
    "x\u2014y x-y x_y",
    "1,000 3.14 42 \u00bfqu\u00e9?",
    "nbsp\u00a0here ideo\u3000space",
]

CALL_INPUTS = [
    "The fox, the DOG and the unicorn!",
    "caf\u00e9 \u00c9COLE ecole 123",
    "",
    "   ",
    "zebra quick",
]


def to_py(x):
    if isinstance(x, tf.RaggedTensor):
        return x.to_list()
    if isinstance(x, tf.SparseTensor):
        x = tf.sparse.to_dense(x)
    a = np.asarray(x)
    return a.tolist()


def vocab_py(v):
    return [str(t) for t in v]


def run_case(name, config, adapt=None, inputs=None, input_format="list", note=None):
    layer = TV(**config)
    if adapt is not None:
        layer.adapt(adapt)
    if input_format == "list":
        x = inputs
    elif input_format == "column":  # shape (N, 1)
        x = tf.constant([[s] for s in inputs])
    elif input_format == "scalar":
        x = tf.constant(inputs)
    else:
        raise ValueError(input_format)
    out = layer(x)
    case = {
        "name": name,
        "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in config.items()},
        "adapt": adapt,
        "inputs": inputs,
        "input_format": input_format,
        "vocabulary": vocab_py(layer.get_vocabulary()),
        "vocabulary_no_special": vocab_py(layer.get_vocabulary(include_special_tokens=False)),
        "vocabulary_size": int(layer.vocabulary_size()),
        "output": to_py(out),
        "shape": list(out.shape),
        "dtype": out.dtype.name,
        "idf": None,
    }
    if config.get("output_mode") == "tf_idf":
        case["idf"] = layer._lookup_layer.idf_weights_const.numpy().astype(float).tolist()
    if note:
        case["note"] = note
    return case


def main():
    cases = []

    def add(*a, **k):
        return cases.append(run_case(*a, **k))

    # --- int mode, defaults ---
    add(
        "default_int",
        {},
        CORPUS,
        CALL_INPUTS,
        note="no output_sequence_length: padded with 0 to the longest row in the batch",
    )
    add(
        "default_int_osl_short",
        {"output_sequence_length": 3},
        CORPUS,
        CALL_INPUTS,
        note="truncation keeps the first 3 tokens",
    )
    add(
        "default_int_osl_long",
        {"output_sequence_length": 10},
        CORPUS,
        CALL_INPUTS,
        note="padding with 0 at the end",
    )
    add(
        "int_max_tokens_8",
        {"max_tokens": 8},
        CORPUS,
        CALL_INPUTS,
        note="int mode: 8 - 2 = 6 learned tokens",
    )
    add(
        "int_ties",
        {},
        TIE_CORPUS,
        ["a b c d z zz yy \u00e4 q"],
        note="equal counts: ties broken by token bytes, descending",
    )
    add(
        "int_ties_max_tokens_5",
        {"max_tokens": 5},
        TIE_CORPUS,
        ["a b c d z zz yy \u00e4 q"],
        note="truncation after the tie sort",
    )
    add(
        "unicode_default",
        {},
        UNICODE_TEXTS,
        UNICODE_TEXTS,
        note="lower is ASCII-only; only ASCII punctuation is stripped; split on ASCII whitespace only",
    )
    # --- ngrams ---
    add(
        "ngrams_2",
        {"ngrams": 2},
        CORPUS,
        ["the fox runs", "dog", "", "the lazy dog"],
        note="ngrams=2 -> widths (1, 2): all unigrams, then all bigrams",
    )
    add("ngrams_1_3", {"ngrams": (1, 3)}, CORPUS, ["the quick brown fox", "dog barks", "the"])
    add(
        "ngrams_3_1_order",
        {"ngrams": (3, 1)},
        ["a b c d"],
        ["a b c d", "a b"],
        note="tuple order decides output order: trigrams before unigrams",
    )
    add(
        "ngrams_2_osl",
        {"ngrams": 2, "output_sequence_length": 6},
        CORPUS,
        ["the fox runs", "the quick brown fox jumps"],
    )
    # --- multi_hot / count / tf_idf ---
    add(
        "multi_hot",
        {"output_mode": "multi_hot"},
        CORPUS,
        CALL_INPUTS,
        note="index 0 is the OOV token [UNK]; there is no mask index",
    )
    add(
        "multi_hot_pad_to_max_tokens",
        {"output_mode": "multi_hot", "max_tokens": 50, "pad_to_max_tokens": True},
        CORPUS,
        CALL_INPUTS,
        note="width = max_tokens even though vocabulary is smaller",
    )
    add(
        "multi_hot_max_tokens_6",
        {"output_mode": "multi_hot", "max_tokens": 6},
        CORPUS,
        CALL_INPUTS,
        note="non-int mode: 6 - 1 = 5 learned tokens",
    )
    add("count", {"output_mode": "count"}, CORPUS, CALL_INPUTS)
    add(
        "count_pad_to_max_tokens",
        {"output_mode": "count", "max_tokens": 12, "pad_to_max_tokens": True},
        CORPUS,
        CALL_INPUTS,
    )
    add(
        "tf_idf",
        {"output_mode": "tf_idf"},
        CORPUS,
        CALL_INPUTS,
        note="idf = log(1 + N/(1 + df)), N = number of adapt documents (incl. empty ones); idf[0] (OOV) = mean of learned idfs",
    )
    add(
        "tf_idf_max_tokens_pad",
        {"output_mode": "tf_idf", "max_tokens": 10, "pad_to_max_tokens": True},
        CORPUS,
        CALL_INPUTS,
        note="idf padded with zeros up to max_tokens; OOV idf = mean over the kept tokens only",
    )
    # --- split / standardize variants ---
    add(
        "split_character",
        {"split": "character"},
        ["Hello, World!", "h\u00e9 h\u00e9", "ab  c"],
        ["hello", "h\u00e9!", "xyz", ""],
        note="space is a token; punctuation is stripped before splitting",
    )
    add(
        "split_character_ngrams_2",
        {"split": "character", "ngrams": 2},
        ["abab", "ba"],
        ["abc", "a"],
    )
    add("standardize_none", {"standardize": None}, CORPUS, CALL_INPUTS)
    add("standardize_lower", {"standardize": "lower"}, CORPUS, CALL_INPUTS)
    add("standardize_strip_punctuation", {"standardize": "strip_punctuation"}, CORPUS, CALL_INPUTS)
    add(
        "split_none_column",
        {"split": None},
        ["red", "blue", "red", "dark red", "RED!"],
        ["red", "dark red", "Dark Red.", "green", ""],
        input_format="column",
        note="split=None: whole string is one token; (N,1) input gives (N,1) output; empty string -> 0 (mask)",
    )
    add(
        "split_none_column_multi_hot",
        {"split": None, "output_mode": "multi_hot"},
        ["red", "blue", "red", "dark red"],
        ["red", "dark red", "green", ""],
        input_format="column",
        note="the mask token '' is dropped in non-int modes (row of zeros, not counted as OOV)",
    )
    add(
        "split_none_1d_multi_hot",
        {"split": None, "output_mode": "multi_hot"},
        ["red", "blue", "red", "dark red"],
        ["red", "dark red", "green", ""],
        input_format="list",
        note="GOTCHA: split=None with 1-D input treats the whole batch as ONE sample -> shape (depth,)",
    )
    add(
        "split_none_1d_int_osl",
        {"split": None, "output_sequence_length": 2},
        ["red", "blue", "red"],
        ["red", "blue", "green"],
        input_format="list",
        note="GOTCHA: split=None with 1-D input: output_sequence_length slices the batch axis -> shape (2,)",
    )
    add(
        "unk_literal_in_corpus",
        {"standardize": None},
        ["[UNK] a [UNK] b"],
        ["[UNK] a b c"],
        note="literal '[UNK]' (and '') are removed from counts during adapt",
    )
    # --- given vocabulary ---
    add(
        "vocabulary_given_int",
        {"vocabulary": ["earth", "wind", "and", "fire", "Fire"], "output_sequence_length": 6},
        None,
        ["Earth, wind & FIRE!", "water and earth", "fire fire fire fire fire fire fire", ""],
        note="given vocabulary is not standardized: 'Fire' can never match after lowercasing",
    )
    add(
        "vocabulary_given_with_special_tokens",
        {"vocabulary": ["", "[UNK]", "earth", "wind"]},
        None,
        ["earth wind fire"],
        note="leading ['', '[UNK]'] is recognized and not duplicated",
    )
    add(
        "vocabulary_given_multi_hot",
        {"vocabulary": ["earth", "wind", "and", "fire"], "output_mode": "multi_hot"},
        None,
        ["earth and fire", "water", "wind wind"],
    )
    add(
        "vocabulary_given_tf_idf",
        {
            "vocabulary": ["earth", "wind", "fire"],
            "idf_weights": [0.5, 1.0, 2.0],
            "output_mode": "tf_idf",
        },
        None,
        ["earth earth fire", "water water wind"],
        note="idf for [UNK] (index 0) = average of the given idf_weights",
    )
    # --- batch shapes ---
    add("batch_of_one", {}, CORPUS, ["the quick brown fox"])
    add(
        "column_input_int",
        {"output_sequence_length": 4},
        CORPUS,
        ["the fox", "dog"],
        input_format="column",
        note="(N,1) input is squeezed to (N,) before splitting; output (N, L)",
    )
    add(
        "scalar_input_int",
        {},
        CORPUS,
        "the lazy unicorn",
        input_format="scalar",
        note="a scalar string gives a 1-D output of length = number of tokens",
    )
    add(
        "scalar_input_multi_hot",
        {"output_mode": "multi_hot"},
        CORPUS,
        "the lazy unicorn",
        input_format="scalar",
    )
    add("all_empty_batch", {}, CORPUS, ["", "  ", "\t"], note="no tokens anywhere: shape (N, 0)")
    add("all_empty_batch_osl", {"output_sequence_length": 3}, CORPUS, ["", "  "])
    add(
        "oov_only",
        {"output_mode": "count"},
        CORPUS,
        ["unicorn zebra unicorn", "!!!"],
        note="OOV tokens counted at index 0; '!!!' becomes '' after stripping and yields no token",
    )

    doc = {
        "generator": f"keras {keras.__version__} / tensorflow {tf.__version__}, KERAS_BACKEND=tensorflow",
        "corpus": CORPUS,
        "tie_corpus": TIE_CORPUS,
        "unicode_texts": UNICODE_TEXTS,
        "call_inputs": CALL_INPUTS,
        "input_format_legend": {
            "list": "inputs passed as a Python list of strings, shape (N,)",
            "column": "inputs passed as tf.constant([[s] for s in inputs]), shape (N, 1)",
            "scalar": "inputs is a single string passed as a rank-0 tf.constant",
        },
        "cases": cases,
    }
    with open(sys.argv[1], "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=1)
    print(len(cases), "cases written")


if __name__ == "__main__":
    main()
