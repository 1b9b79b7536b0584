"""TextVectorization, as Keras 3's (the book's chapter 11): strings to token indices
("int"), or to one row per text over the vocabulary ("multi_hot", "count", "tf_idf").

Strings are not tensors of kiln's IR, so this layer runs on the host, in Python, on lists or
arrays of str (or bytes): vectorize the texts, then feed the arrays to a model, as
`model.fit(vectorizer(texts), labels)`. Called on a model's symbolic input it raises and says
so. It computes what Keras 3.15 (on TensorFlow) computes, checked case by case in
tests/frontends/keras/test_layers_text.py against outputs recorded from it:

- standardize "lower_and_strip_punctuation" (the default), "lower", "strip_punctuation" or
  None: lowercasing is ASCII-only and only the 32 ASCII punctuation characters are removed,
  before splitting ("Don't" -> "dont", "x-y" -> "xy"), as TensorFlow's string ops do;
- split "whitespace" (runs of ASCII whitespace), "character" (code points) or None (the
  whole text is one token); ngrams n (widths 1..n) or a tuple of widths, each width's n-grams
  in turn, joined by a space;
- adapt counts tokens over the texts and keeps the most frequent (equal counts: the token's
  UTF-8 bytes in descending order), max_tokens in all with the special tokens: "" (padding,
  index 0) and "[UNK]" (1) in "int" mode; "[UNK]" (0) in the others. tf_idf weighs a count by
  log(1 + documents / (1 + documents containing the token)), "[UNK]" by the mean of those;
- "int" pads with 0 and truncates at the end, to output_sequence_length or to the batch's
  longest text; the other modes give max_tokens columns with pad_to_max_tokens, else one per
  vocabulary entry.

Where kiln departs from Keras: the "multi_hot" and "count" rows are float32 (Keras declares
float32 and returns int64 when eager); with split=None a 1-D batch is still one text per
entry (Keras treats the whole batch as one text); a later adapt or set_vocabulary may change
the vocabulary's size (there is no graph to keep it for); get_config holds the learned
vocabulary and weights, so a config alone rebuilds the layer (Keras keeps them as assets);
callables for standardize and split take and return Python strings, and a layer with one
cannot be saved in a config; sparse outputs are not offered.
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from kiln.frontends.keras.layer import Layer, is_symbolic
from kiln.ir import KilnValueError

_STANDARDIZE = ("lower_and_strip_punctuation", "lower", "strip_punctuation")
_SPLIT = ("whitespace", "character")
_MODES = ("int", "multi_hot", "count", "tf_idf")
_ALIASES = {"binary": "multi_hot", "tf-idf": "tf_idf"}
_PUNCTUATION = re.compile("[" + re.escape(string.punctuation) + "]")
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
_MASK, _OOV = "", "[UNK]"


def _ngram_widths(layer: str, ngrams: Any) -> tuple[int, ...] | None:
    if ngrams is None:
        return None
    if isinstance(ngrams, int) and not isinstance(ngrams, bool):
        return tuple(range(1, ngrams + 1))
    if isinstance(ngrams, tuple | list) and all(
            isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in ngrams):
        return tuple(ngrams)
    raise KilnValueError(f"layer {layer!r}: expected ngrams as None, an int or a tuple of "
                         f"positive ints. Received: ngrams={ngrams!r}")


class TextVectorization(Layer):
    """Texts to token indices or to vocabulary rows, on the host (see the module docstring).

    Args (Keras 3's): max_tokens (the vocabulary's size with its special tokens, None for no
    limit); standardize; split; ngrams; output_mode "int", "multi_hot", "count" or "tf_idf";
    output_sequence_length ("int" only); pad_to_max_tokens; vocabulary (a list, or a path to
    a file of one token per line); idf_weights ("tf_idf" with a vocabulary); ragged ("int":
    a list of one array per text instead of a padded array); encoding (of bytes inputs).
    """

    def __init__(self, max_tokens: int | None = None,
                 standardize: str | Callable[[str], str] | None =
                 "lower_and_strip_punctuation",
                 split: str | Callable[[str], list[str]] | None = "whitespace",
                 ngrams: int | tuple[int, ...] | None = None, output_mode: str = "int",
                 output_sequence_length: int | None = None, pad_to_max_tokens: bool = False,
                 vocabulary: Any = None, idf_weights: Any = None, sparse: bool = False,
                 ragged: bool = False, encoding: str = "utf-8", **kwargs: Any):
        kwargs.pop("vocabulary_size", None)  # in Keras's configs; the vocabulary says it
        super().__init__(**kwargs)
        where = f"layer {self.name!r}"
        if not (standardize is None or callable(standardize) or standardize in _STANDARDIZE):
            raise KilnValueError(f"{where}: expected standardize in {_STANDARDIZE}, None or a "
                                 f"callable. Received: standardize={standardize!r}")
        if not (split is None or callable(split) or split in _SPLIT):
            raise KilnValueError(f"{where}: expected split in {_SPLIT}, None or a callable. "
                                 f"Received: split={split!r}")
        output_mode = _ALIASES.get(output_mode, output_mode)
        if output_mode not in _MODES:
            raise KilnValueError(f"{where}: expected output_mode in {_MODES}. "
                                 f"Received: output_mode={output_mode!r}")
        if output_sequence_length is not None and (
                output_mode != "int" or isinstance(output_sequence_length, bool)
                or not isinstance(output_sequence_length, int) or output_sequence_length < 0):
            raise KilnValueError(f"{where}: expected output_sequence_length as None or an "
                                 f"int >= 0, with output_mode='int'. Received: "
                                 f"output_sequence_length={output_sequence_length!r}, "
                                 f"output_mode={output_mode!r}")
        if max_tokens is not None and (isinstance(max_tokens, bool)
                                       or not isinstance(max_tokens, int) or max_tokens <= 1):
            raise KilnValueError(f"{where}: expected max_tokens as None or an int greater "
                                 f"than 1. Received: max_tokens={max_tokens!r}")
        if pad_to_max_tokens and max_tokens is None:
            raise KilnValueError(f"{where}: pad_to_max_tokens=True needs max_tokens")
        if sparse:
            raise KilnValueError(f"{where}: sparse outputs are not supported by kiln; "
                                 f"expected sparse=False")
        if ragged and output_mode != "int":
            raise KilnValueError(f"{where}: ragged=True needs output_mode='int'. "
                                 f"Received: output_mode={output_mode!r}")
        if idf_weights is not None and output_mode != "tf_idf":
            raise KilnValueError(f"{where}: idf_weights are for output_mode='tf_idf'. "
                                 f"Received: output_mode={output_mode!r}")
        if output_mode == "tf_idf" and vocabulary is not None and idf_weights is None:
            raise KilnValueError(f"{where}: output_mode='tf_idf' with a vocabulary needs "
                                 f"idf_weights")
        self.max_tokens, self.standardize, self.split = max_tokens, standardize, split
        self.ngrams, self._widths = ngrams, _ngram_widths(self.name, ngrams)
        self.output_mode = output_mode
        self.output_sequence_length = output_sequence_length
        self.pad_to_max_tokens = bool(pad_to_max_tokens)
        self.ragged, self.encoding = bool(ragged), encoding
        self._tokens: list[str] = []
        self._index: dict[str, int] = {}
        self._idf: np.ndarray | None = None  # with the "[UNK]" slot and any padding
        self._static = False  # a vocabulary given, not learned: adapt refuses
        if vocabulary is not None:
            self.set_vocabulary(vocabulary, idf_weights)
            self._static = True

    # -- text to tokens ------------------------------------------------------------------
    @property
    def _start(self) -> int:
        """Where the learned tokens start: after "" and "[UNK]" ("int"), after "[UNK]"."""
        return 2 if self.output_mode == "int" else 1

    def _texts(self, inputs: Any, what: str) -> list[str]:
        """One str per text: a str, or a list, tuple or array of shape (N,) or (N, 1)."""
        if isinstance(inputs, str | bytes):
            return [self._decode(inputs, what)]
        array = np.asarray(inputs, dtype=object)
        if array.ndim == 2 and array.shape[1] == 1:
            array = array[:, 0]
        if array.ndim != 1:
            raise KilnValueError(f"layer {self.name!r}: {what} expects texts of shape (N,) "
                                 f"or (N, 1). Received: shape {array.shape}")
        return [self._decode(t, what) for t in array]

    def _decode(self, text: Any, what: str) -> str:
        if isinstance(text, bytes):
            return text.decode(self.encoding)
        if isinstance(text, str):
            return text
        raise KilnValueError(f"layer {self.name!r}: {what} expects strings (str or bytes). "
                             f"Received: {type(text).__name__} {text!r:.60}")

    def tokens(self, text: str) -> list[str]:
        """The tokens of one text: standardized, split, then n-grams."""
        if callable(self.standardize):
            text = self.standardize(text)
        else:
            if self.standardize in ("lower", "lower_and_strip_punctuation"):
                text = text.translate(_ASCII_LOWER)
            if self.standardize in ("strip_punctuation", "lower_and_strip_punctuation"):
                text = _PUNCTUATION.sub("", text)
        if callable(self.split):
            parts = list(self.split(text))
        elif self.split == "whitespace":  # ASCII whitespace only, as TensorFlow splits
            parts = [p.decode("utf-8") for p in text.encode("utf-8").split()]
        elif self.split == "character":
            parts = list(text)
        else:
            parts = [text]
        if self._widths is None:
            return parts
        return [" ".join(parts[i:i + w]) for w in self._widths
                for i in range(len(parts) - w + 1)]

    # -- the vocabulary ------------------------------------------------------------------
    def adapt(self, data: Any, batch_size: int | None = None, steps: int | None = None) -> None:
        """Learn the vocabulary (and the idf weights) from texts: a list or array of them,
        or an iterable of batches (each a list or array of texts, or an (x, y) tuple of
        which x is used). Replaces what an earlier adapt learned."""
        if self._static:
            raise KilnValueError(f"layer {self.name!r}: was given its vocabulary; adapt has "
                                 f"nothing to learn")
        counts: Counter[str] = Counter()
        documents, frequency = 0, Counter()
        for k, batch in enumerate(self._batches(data)):
            if steps is not None and k >= steps:
                break
            for text in self._texts(batch, "adapt"):
                found = self.tokens(text)
                counts.update(found)
                documents += 1
                if self.output_mode == "tf_idf":
                    frequency.update(set(found))
        counts.pop(_MASK, None)
        counts.pop(_OOV, None)
        ranked = sorted(counts.items(), key=lambda kv: (kv[1], kv[0].encode("utf-8")),
                        reverse=True)
        if self.max_tokens is not None:
            ranked = ranked[:self.max_tokens - self._start]
        self._set_tokens([t for t, _ in ranked])
        if self.output_mode == "tf_idf":
            idf = np.array([math.log(1 + documents / (1 + frequency[t])) for t, _ in ranked],
                           np.float32)
            self._set_idf(idf, None)

    @staticmethod
    def _batches(data: Any) -> Iterable[Any]:
        if isinstance(data, str | bytes | np.ndarray):
            return [data]
        if isinstance(data, list | tuple) and all(isinstance(t, str | bytes) for t in data):
            return [data]
        if isinstance(data, Iterable):
            return (b[0] if isinstance(b, tuple) else b for b in data)
        raise KilnValueError(f"adapt expects texts or an iterable of batches of them. "
                             f"Received: {type(data).__name__}")

    def set_vocabulary(self, vocabulary: Any, idf_weights: Any = None) -> None:
        """Set the vocabulary (a list of tokens, with or without the special ones first, or a
        file of one token per line) and, for "tf_idf", one idf weight per entry given."""
        where = f"layer {self.name!r}"
        if self.output_mode == "tf_idf" and idf_weights is None:
            raise KilnValueError(f"{where}: output_mode='tf_idf' needs idf_weights")
        if self.output_mode != "tf_idf" and idf_weights is not None:
            raise KilnValueError(f"{where}: idf_weights are for output_mode='tf_idf'")
        if isinstance(vocabulary, str | Path):
            path = Path(vocabulary)
            if not path.is_file():
                raise KilnValueError(f"{where}: the vocabulary file {str(path)!r} does not "
                                     f"exist")
            vocabulary = path.read_text(encoding=self.encoding).split("\n")
            if vocabulary and vocabulary[-1] == "":
                vocabulary = vocabulary[:-1]
        tokens = [self._decode(t, "set_vocabulary") for t in list(vocabulary)]
        if not tokens:
            raise KilnValueError(f"{where}: cannot set an empty vocabulary")
        special = [_MASK, _OOV][2 - self._start:]
        prefixed = tokens[:len(special)] == special
        learned = tokens[len(special):] if prefixed else tokens
        repeated = sorted(t for t, n in Counter(learned).items() if n > 1)
        if repeated:
            raise KilnValueError(f"{where}: the vocabulary repeats {repeated[:5]}")
        if _MASK in learned:
            raise KilnValueError(f"{where}: the padding token '' may only come first, before "
                                 f"'[UNK]' (output_mode='int')")
        if self.max_tokens is not None and self._start + len(learned) > self.max_tokens:
            raise KilnValueError(f"{where}: a vocabulary of {self._start + len(learned)} "
                                 f"entries (with the special tokens) is larger than "
                                 f"max_tokens={self.max_tokens}")
        weights = None
        if idf_weights is not None:
            weights = np.asarray(idf_weights, np.float32)
            if weights.ndim != 1 or len(weights) != len(tokens):
                raise KilnValueError(f"{where}: expected one idf weight per vocabulary entry "
                                     f"({len(tokens)}). Received: shape {weights.shape}")
        self._set_tokens(learned)
        if weights is not None:
            self._set_idf(weights[len(special):] if prefixed else weights,
                          weights[0] if prefixed else None)

    def _set_tokens(self, tokens: list[str]) -> None:
        self._tokens = list(tokens)
        self._index = {t: k + self._start for k, t in enumerate(self._tokens)}
        if self.output_mode == "int":
            self._index[_MASK] = 0  # an empty token (split=None) is padding

    def _set_idf(self, weights: np.ndarray, oov: Any) -> None:
        """The weights of the learned tokens; "[UNK]"'s their mean unless given."""
        oov = np.float32(weights.mean() if len(weights) else 0.0) if oov is None else oov
        idf = np.concatenate([[oov], weights]).astype(np.float32)
        if self.pad_to_max_tokens:
            idf = np.concatenate([idf, np.zeros(self.max_tokens - len(idf), np.float32)])
        self._idf = idf

    def get_vocabulary(self, include_special_tokens: bool = True) -> list[str]:
        special = [_MASK, _OOV][2 - self._start:] if include_special_tokens else []
        return [*special, *self._tokens]

    def vocabulary_size(self) -> int:
        return self._start + len(self._tokens)

    # -- the call ------------------------------------------------------------------------
    def __call__(self, inputs: Any, **kwargs: Any) -> Any:
        if is_symbolic(inputs):
            raise KilnValueError(f"layer {self.name!r} (TextVectorization) runs on the host, "
                                 f"on strings, which kiln's graphs do not hold: call it on "
                                 f"the texts (a list or array of str) and feed its output to "
                                 f"the model")
        scalar = isinstance(inputs, str | bytes)
        rows = [self.tokens(t) for t in self._texts(inputs, "the call")]
        if self.output_mode == "int":
            out = self._int_rows(rows)
        else:
            out = self._vocabulary_rows(rows)
        return out[0] if scalar else out

    def _int_rows(self, rows: list[list[str]]) -> Any:
        if not self._tokens and not self._static:
            raise KilnValueError(f"layer {self.name!r}: has no vocabulary yet: adapt it or "
                                 f"give it one")
        ids = [np.array([self._index.get(t, 1) for t in row], np.int64) for row in rows]
        length = self.output_sequence_length
        if self.ragged:
            return [i if length is None else i[:length] for i in ids]
        if length is None:
            length = max((len(i) for i in ids), default=0)
        out = np.zeros((len(ids), length), np.int64)
        for k, i in enumerate(ids):
            kept = i[:length]
            out[k, :len(kept)] = kept
        return out

    def _vocabulary_rows(self, rows: list[list[str]]) -> np.ndarray:
        if (not self.pad_to_max_tokens and not self._tokens) or (
                self.output_mode == "tf_idf" and self._idf is None):
            raise KilnValueError(f"layer {self.name!r}: has no vocabulary yet: adapt it or "
                                 f"give it one (or set pad_to_max_tokens)")
        depth = self.max_tokens if self.pad_to_max_tokens else self.vocabulary_size()
        out = np.zeros((len(rows), depth), np.float32)
        for k, row in enumerate(rows):
            for t in row:
                if t != _MASK:  # Keras drops the padding token here
                    out[k, self._index.get(t, 0)] += 1
        if self.output_mode == "multi_hot":
            return np.minimum(out, 1)
        if self.output_mode == "tf_idf":
            return out * self._idf[:depth]
        return out

    # -- config --------------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        for name in ("standardize", "split"):
            if callable(getattr(self, name)):
                raise KilnValueError(f"layer {self.name!r}: a callable {name} cannot be "
                                     f"saved in a config")
        idf = None
        if self._idf is not None:
            idf = self._idf[1:1 + len(self._tokens)].tolist()
        return {**super().get_config(), "max_tokens": self.max_tokens,
                "standardize": self.standardize, "split": self.split,
                "ngrams": list(self.ngrams) if isinstance(self.ngrams, tuple) else self.ngrams,
                "output_mode": self.output_mode,
                "output_sequence_length": self.output_sequence_length,
                "pad_to_max_tokens": self.pad_to_max_tokens, "sparse": False,
                "ragged": self.ragged, "vocabulary": list(self._tokens) or None,
                "idf_weights": idf, "encoding": self.encoding,
                "vocabulary_size": self.vocabulary_size()}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> TextVectorization:
        config = dict(config)
        if isinstance(config.get("ngrams"), list):
            config["ngrams"] = tuple(config["ngrams"])
        learned = config.pop("vocabulary", None), config.pop("idf_weights", None)
        layer = cls(**config)
        if learned[0]:
            layer.set_vocabulary(*learned)
        return layer
