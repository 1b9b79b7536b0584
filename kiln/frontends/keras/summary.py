"""`model.summary()`: Keras 3's table of layers, output shapes and parameter counts.

Sequential-like models get three columns (Layer (type), Output Shape, Param #); other
functional models a fourth, "Connected to". The totals count trainable, non-trainable and,
once the model has trained, optimizer parameters, with their size in memory.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from kiln.ir import KilnValueError


def readable_size(nbytes: float) -> str:
    """Bytes as Keras prints them: 1024-based, two decimals (B, KB, MB, GB, TB, PB)."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if nbytes / 1024 < 1:
            return f"{nbytes:.2f} {unit}"
        nbytes /= 1024
    return f"{nbytes:.2f} PB"


def _shape_text(shapes: list[tuple]) -> str:
    texts = [str(tuple(s)) for s in shapes]
    return texts[0] if len(texts) == 1 else "[" + ", ".join(texts) + "]"


def _calls_in(model: Any, layer: Any) -> list[Any]:
    return [r for r in model._records if r.layer is layer]


def _output_shape(model: Any, layer: Any) -> str:
    if type(layer).__name__ == "InputLayer":
        return _shape_text([layer._batch_input_shape])
    calls = _calls_in(model, layer)
    if not calls:
        return "?"
    shapes = {tuple(tuple(t.shape) for t in call.outputs) for call in calls}
    if len(shapes) > 1:
        return "multiple"
    return _shape_text(list(shapes.pop()))


def _connected_to(model: Any, layer: Any) -> list[str]:
    if type(layer).__name__ == "InputLayer":
        return ["-"]
    names = []
    for call in _calls_in(model, layer):
        for t in call.inputs:
            source, index, k = t.history
            names.append(f"{source.name}[{index}][{k}]")
    return names or ["-"]


def is_sequential_like(model: Any) -> bool:
    """A chain: one input, one output, every layer called once on the previous output."""
    if type(model).__name__ == "Sequential" or getattr(model, "_subclassed", False):
        return True  # a subclassed model's layers have no calls to show, as in Keras
    if len(model._inputs) != 1 or len(model._outputs) != 1:
        return False
    previous = model._inputs[0]
    seen = set()
    for record in model._records:
        if len(record.inputs) != 1 or record.inputs[0] is not previous or \
                id(record.layer) in seen or len(record.outputs) != 1:
            return False
        seen.add(id(record.layer))
        previous = record.outputs[0]
    return True


def _table(header: list[str], rows: list[list[list[str]]], widths: list[int],
           align: list[str]) -> list[str]:
    """Box-drawn table (heavy header, a rule between rows) of exact total width."""
    inner = [w - 3 for w in widths]
    inner[-1] -= 1

    def line(left: str, fill: str, mid: str, right: str) -> str:
        return left + mid.join(fill * (c + 2) for c in inner) + right

    def cells(texts: list[list[str]], edge: str) -> list[str]:
        wrapped = [[part for text in cell for part in (textwrap.wrap(text, c) or [""])]
                   for cell, c in zip(texts, inner)]
        height = max(len(w) for w in wrapped)
        out = []
        for i in range(height):
            parts = []
            for w, c, a in zip(wrapped, inner, align):
                text = w[i] if i < len(w) else ""
                parts.append(" " + (text.rjust(c) if a == "right" else text.ljust(c)) + " ")
            out.append(edge + edge.join(parts) + edge)
        return out

    lines = [line("┏", "━", "┳", "┓"), *cells([[h] for h in header], "┃"),
             line("┡", "━", "╇", "┩")]
    for i, row in enumerate(rows):
        if i:
            lines.append(line("├", "─", "┼", "┤"))
        lines.extend(cells(row, "│"))
    lines.append(line("└", "─", "┴", "┘"))
    return lines


def summary_lines(model: Any, line_length: int | None = None,
                  positions: Sequence[float] | None = None) -> list[str]:
    sequential_like = is_sequential_like(model) if model._inputs else True
    if sequential_like:
        line_length = line_length or 88
        positions = positions or [0.45, 0.80, 1.0]
        header = ["Layer (type)", "Output Shape", "Param #"]
    else:
        line_length = line_length or 108
        positions = positions or [0.3, 0.56, 0.74, 1.0]
        header = ["Layer (type)", "Output Shape", "Param #", "Connected to"]
    if len(positions) != len(header):
        raise KilnValueError(f"summary: expected {len(header)} positions. "
                             f"Received: positions={list(positions)!r}")
    if positions[-1] <= 1:
        positions = [int(line_length * p) for p in positions]
    widths, previous = [], 0
    for p in positions:
        widths.append(int(p) - previous)
        previous = int(p)
    if min(widths) < 5:
        raise KilnValueError(f"Insufficient console width to print summary. "
                             f"Received: line_length={line_length!r}")
    rows = []
    for layer in model.layers:
        built = layer.built
        params = f"{layer.count_params():,}" if built else "0 (unbuilt)"
        row = [[f"{layer.name} ({type(layer).__name__})"],
               [_output_shape(model, layer) if model._inputs else "?"], [params]]
        if not sequential_like:
            row.append(_connected_to(model, layer))
        rows.append(row)
    align = ["left", "left", "right", "left"]
    lines = [f'Model: "{model.name}"', *_table(header, rows, widths, align)]

    weights = model.weights
    trainable_ids = {id(v) for v in model.trainable_weights} if model.trainable else set()
    trainable = [v for v in weights if id(v) in trainable_ids]
    frozen = [v for v in weights if id(v) not in trainable_ids]
    counts = {"trainable": sum(int(np.prod(v.shape)) for v in trainable),
              "frozen": sum(int(np.prod(v.shape)) for v in frozen)}
    sizes = {"trainable": sum(v.storage.nbytes for v in trainable),
             "frozen": sum(v.storage.nbytes for v in frozen)}
    optimizer = getattr(model, "optimizer", None)
    opt_count = optimizer.count_params() if optimizer is not None and optimizer.built else 0
    opt_size = sum(a.nbytes for a in optimizer.storage.values()) if opt_count else 0
    total = counts["trainable"] + counts["frozen"] + opt_count
    total_size = sizes["trainable"] + sizes["frozen"] + opt_size
    lines += [f" Total params: {total:,} ({readable_size(total_size)})",
              f" Trainable params: {counts['trainable']:,} "
              f"({readable_size(sizes['trainable'])})",
              f" Non-trainable params: {counts['frozen']:,} ({readable_size(sizes['frozen'])})"]
    if opt_count:
        lines.append(f" Optimizer params: {opt_count:,} ({readable_size(opt_size)})")
    return lines


def print_summary(model: Any, line_length: int | None = None,
                  positions: Sequence[float] | None = None,
                  print_fn: Callable[[str], Any] | None = None) -> None:
    """Print the summary; `print_fn` (default: print) receives the whole text at once, as
    Keras 3 gives it."""
    text = "\n".join(summary_lines(model, line_length, positions))
    (print_fn or print)(text)
