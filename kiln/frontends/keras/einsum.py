"""Two-operand einsum lowered to the IR's transpose, reshape, sum and batched matmul.

`einsum(b, "abc,cde->abde", x, y)` classifies each label: in both operands and the output
(batch), in both but not the output (contracted), in one operand and the output (that
operand's free labels), in one operand only (summed away first). x becomes (batch..., its
free..., K) and y (batch..., K, its free...) with the contracted labels merged into K, one
matmul multiplies them, and a transpose puts the labels in the output's order.

Free labels are kept as axes where they can be: with no batch labels, x's free axes are
matmul's leading (batch) axes against a 2-D y, which the backends run as one GEMM of stacked
rows. A group of axes is merged into one only where the IR can name the product (known
sizes, or a single symbol); otherwise the other free axes become broadcast batch axes of
the matmul, so every equation of this form lowers, only some less fast.

An ellipsis ("...") stands for the same leading or trailing axes in every term it appears
in, broadcasting as NumPy's einsum does. Repeated labels within one term (diagonals) and the
implicit form (no "->") are refused with an error naming the equation.
"""

from __future__ import annotations

import math
import re
from typing import Any

from kiln.ir import KilnValueError

_TERM = re.compile(r"^[A-Za-z]*(\.\.\.)?[A-Za-z]*$")
_ELLIPSIS = "0123456789"  # the labels an ellipsis expands to (never user labels)


def parse(equation: str, ranks: tuple[int, int]) -> tuple[str, str, str]:
    """The three terms of `equation` with any ellipsis expanded to digit labels, one per axis
    it covers (right-aligned across the terms, as NumPy broadcasts them)."""
    where = f"einsum {equation!r}"
    if not isinstance(equation, str) or "->" not in equation:
        raise KilnValueError(f"{where}: expected an equation of the form 'x,y->out'. "
                             f"Received: {equation!r}")
    lhs, out = equation.replace(" ", "").split("->", 1)
    terms = lhs.split(",")
    if len(terms) != 2:
        raise KilnValueError(f"{where}: expected two operands. Received: {len(terms)} terms")
    for term in (*terms, out):
        if not _TERM.match(term):
            raise KilnValueError(f"{where}: a term may hold letters and one '...'. "
                                 f"Received: {term!r}")
    spans = []
    for term, rank in zip(terms, ranks):
        letters = len(term.replace("...", ""))
        if "..." not in term and letters != rank:
            raise KilnValueError(f"{where}: the term {term!r} names {letters} axes, but its "
                                 f"operand has rank {rank}")
        if letters > rank:
            raise KilnValueError(f"{where}: the term {term!r} names more axes than its "
                                 f"operand's rank {rank}")
        spans.append(rank - letters if "..." in term else 0)
    width = max(spans)
    if width > len(_ELLIPSIS):
        raise KilnValueError(f"{where}: an ellipsis of more than {len(_ELLIPSIS)} axes")

    def expand(term: str, span: int) -> str:
        return term.replace("...", _ELLIPSIS[width - span:width])

    x, y = expand(terms[0], spans[0]), expand(terms[1], spans[1])
    if "..." in out:
        out = expand(out, width)
    elif width and any(spans):
        raise KilnValueError(f"{where}: the output must hold '...' when an operand does")
    for term in (x, y, out):
        repeated = sorted({c for c in term if term.count(c) > 1})
        if repeated:
            raise KilnValueError(f"{where}: a label repeated within one term (a diagonal) is "
                                 f"not supported. Received: {', '.join(repeated)}")
    missing = [c for c in out if c not in x and c not in y]
    if missing:
        raise KilnValueError(f"{where}: the output names {', '.join(missing)}, which no "
                             f"operand has")
    return x, y, out


def _check_label_sizes(equation: str, terms: tuple[str, str],
                       shapes: tuple[tuple, tuple]) -> None:
    """Each label has one size in both operands (1 broadcasts, for ellipsis axes)."""
    sizes: dict[str, Any] = {}
    for term, shape in zip(terms, shapes):
        for label, size in zip(term, shape):
            seen = sizes.get(label)
            if seen is None or seen == 1:
                sizes[label] = size
            elif size != 1 and size != seen:
                raise KilnValueError(f"einsum {equation!r}: label {label!r} has size {seen} "
                                     f"in one operand and {size} in the other")


def einsum(b: Any, equation: str, x: Any, y: Any) -> Any:
    """x and y (IR values) contracted as `equation` says; see the module's docstring."""
    tx, ty, out = parse(equation, (x.type.rank, y.type.rank))
    _check_label_sizes(equation, (tx, ty), (x.type.shape, y.type.shape))
    # Labels in one operand only: summed away before the product.
    x, tx = _sum_unused(b, x, tx, ty + out)
    y, ty = _sum_unused(b, y, ty, tx + out)
    batch = [c for c in out if c in tx and c in ty]
    contracted = [c for c in tx if c in ty and c not in out]
    free_x = [c for c in tx if c not in ty]
    free_y = [c for c in ty if c not in tx]
    # Put first the operand whose free labels come first in the output, so the product's
    # axes are in the output's order and most equations need no transpose of it at the end.
    rest = [c for c in out if c not in batch]
    if free_y and free_x and rest.index(free_y[0]) < rest.index(free_x[0]):
        x, tx, free_x, y, ty, free_y = y, ty, free_y, x, tx, free_x
    free_x = [c for c in rest if c in free_x]
    free_y = [c for c in rest if c in free_y]
    k = len(contracted)
    a = _arrange(b, x, tx, [*batch, *free_x, *contracted])
    w = _arrange(b, y, ty, [*batch, *contracted, *free_y])
    xs, ws = list(a.type.shape), list(w.type.shape)
    nb = len(batch)
    # K: the contracted axes as one (1 when there are none: an outer product).
    a = _reshape(b, a, [*xs[:nb + len(free_x)], _merged(xs[nb + len(free_x):])])
    w = _reshape(b, w, [*ws[:nb], _merged(ws[nb:nb + k]), *ws[nb + k:]])
    x_free_dims, y_free_dims = xs[nb:nb + len(free_x)], ws[nb + k:]
    # N: y's free axes as one where the IR can name their product, else all but the last
    # become batch axes (x gets size-1 axes to broadcast against them).
    y_lead: list = []
    if _mergeable(y_free_dims):
        w = _reshape(b, w, [*ws[:nb], w.type.shape[nb], _merged(y_free_dims)])
    else:
        y_lead = y_free_dims[:-1]
        w = b.transpose(w, perm=(*range(nb), *range(nb + 1, nb + len(y_lead) + 1), nb,
                                 w.type.rank - 1))
    # M: x's free axes. With no batch axes and no y_lead they stay as matmul's leading axes
    # (against a 2-D y: one GEMM of stacked rows); else merged, or all but the last made
    # batch axes in front of y_lead's size-1 places.
    x_lead: list = []
    if not x_free_dims:
        a = b.expand_dims(a, axes=(nb,))  # M = 1
    elif (batch or y_lead) and _mergeable(x_free_dims):
        a = _reshape(b, a, [*xs[:nb], _merged(x_free_dims), a.type.shape[-1]])
    else:
        x_lead = x_free_dims[:-1]
    if batch or y_lead:
        # x (batch..., x_lead..., 1 per y_lead, M, K) against
        # w (batch..., 1 per x_lead, y_lead..., K, N): their batch axes broadcast.
        lead = nb + len(x_lead)
        a = _reshape(b, a, [*a.type.shape[:lead], *[1] * len(y_lead), *a.type.shape[lead:]])
        w = _reshape(b, w, [*w.type.shape[:nb], *[1] * len(x_lead), *w.type.shape[nb:]])
    product = b.matmul(a, w)
    # The product's axes: batch, x_lead, y_lead, M, N; back to each label's own axis.
    dims = [*product.type.shape[:nb], *x_lead, *y_lead,
            *x_free_dims[len(x_lead):], *y_free_dims[len(y_lead):]]
    labels = [*batch, *free_x[:len(x_lead)], *free_y[:len(y_lead)], *free_x[len(x_lead):],
              *free_y[len(y_lead):]]
    result = _reshape(b, product, dims)
    perm = tuple(labels.index(c) for c in out)
    return result if perm == tuple(range(len(perm))) else b.transpose(result, perm=perm)


def _sum_unused(b: Any, v: Any, term: str, others: str) -> tuple[Any, str]:
    axes = tuple(i for i, c in enumerate(term) if c not in others)
    if not axes:
        return v, term
    return b.sum(v, axes=axes), "".join(c for c in term if c in others)


def _arrange(b: Any, v: Any, term: str, order: list[str]) -> Any:
    perm = tuple(term.index(c) for c in order)
    return v if perm == tuple(range(len(perm))) else b.transpose(v, perm=perm)


def _reshape(b: Any, v: Any, shape: list) -> Any:
    return v if tuple(shape) == tuple(v.type.shape) else b.reshape(v, shape=tuple(shape))


def _mergeable(dims: list) -> bool:
    """Whether one IR dimension can stand for these axes: known sizes, or one symbol among
    sizes of 1."""
    symbols = [d for d in dims if isinstance(d, str)]
    return not symbols or (len(symbols) == 1 and all(d == 1 for d in dims
                                                     if not isinstance(d, str)))


def _merged(dims: list) -> Any:
    if not _mergeable(dims):  # only contracted axes get here: both operands have them
        raise KilnValueError(f"einsum: cannot contract over several axes of unknown size "
                             f"together. Received sizes {dims}")
    symbols = [d for d in dims if isinstance(d, str)]
    return symbols[0] if symbols else math.prod(dims)
