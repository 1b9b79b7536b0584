"""Algebraic simplification: a table of named local rewrites, applied until none fires.

Each rule looks at one node (its inputs already rewritten) and the nodes producing its
inputs, and returns the value that replaces the node's output, or None. The replacement has
the node's exact type; when it is built from new nodes, the last one takes the replaced
node's name, so dumps keep the user's names, and outputs and updates follow the replacement.

Exact rules (the same numbers, up to the sign of a zero and rounding of the stable forms):
    mul_one         x*1, 1*x -> x          div_one        x/1 -> x
    add_zero        x+0, 0+x -> x (x+0 turns -0.0 into +0.0; nothing else changes)
    sub_zero        x-0 -> x               double_neg     neg(neg(x)) -> x
    transpose_chain transpose(transpose(x)) -> one transpose with the composed perm; an
                    identity transpose -> x
    gather_transpose  transpose(gather(x, i)) that only reorders the index axes ->
                    gather(x, transpose(i)): the indices move instead of the rows (an RNN's
                    embeddings gathered straight into time-major order)
    scatter_transpose  scatter_add(transpose(u), i) that only reorders the index axes ->
                    scatter_add(u, transpose(i)) (the updates to one row summed in another
                    order: equal up to rounding)
    reshape_chain   reshape of a reshape / expand_dims / squeeze -> one reshape of the source
    reshape_noop    reshape or squeeze to x's own shape -> x
    broadcast_noop  broadcast_to x's own shape -> x
    cast_noop       cast to x's own dtype -> x
    broadcast_scalar  broadcast_to / expand_dims / reshape / squeeze / transpose of a constant
                    holding one value -> a constant of that value filled to the new shape
    pool_activation  max_pool2d(f(x)) -> f(max_pool2d(x)) for a chain f of relu, clip, and
                    add, sub (x - b), maximum, minimum with a b constant over batch, rows and
                    columns (a bias): a max commutes with a nondecreasing function, and each
                    of these is nondecreasing as rounded. Only where the chain's values are
                    read by nothing else (a predict graph; a train step's gradients read
                    them), so f runs on the pooled image, a quarter of the size at 2x2. The
                    same numbers but for the sign of a zero, and a NaN where an infinite b
                    meets an infinite x of the other sign.
    log_softmax     log(softmax(x)) -> log_softmax(x) (finite where softmax underflows to 0)
    log_sigmoid     log(sigmoid(x)) -> -softplus(-x), log(1 - sigmoid(x)) -> -softplus(x)
                    (finite where sigmoid rounds to 0 or 1)

Rules for the probability forms of the losses (kiln/ir/training/losses.py), which clip
probabilities to [1e-7, 1 - 1e-7] as Keras does. They give the stable logits forms; results
change exactly where the clip was active (a probability within 1e-7 of 0 or 1): there the
loss is the true -log p instead of -log(1e-7) ~ 16.1. Because they change results (and, run
after autodiff, would make the loss disagree with the gradient built from the clipped form),
they are off unless asked for: `simplify(graph, fast_math=True)`, or the pass manager's
`options={"simplify": {"fast_math": True}}`.
    softmax_cross_entropy  log(clip(softmax(x))) and log(clip(s / sum(s))) with s = softmax(x)
                    (over the softmax axes) -> log_softmax(x)
    sigmoid_cross_entropy  log(clip(sigmoid(x))) -> -softplus(-x),
                    log(1 - clip(sigmoid(x))) -> -softplus(x)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from kiln.compiler.passes import register
from kiln.compiler.rewrite import GraphEditor, constant_scalar, map_bodies
from kiln.ir.errors import KilnValueError
from kiln.ir.graph import Graph, Node, Value
from kiln.ir.types import normalize_axes

RuleFn = Callable[[GraphEditor, Node], "Value | None"]
MAX_SWEEPS = 8
CLIP_SLACK = 1e-6  # the clip bounds the loss rules accept: [0, 1e-6] and [1 - 1e-6, 1]


@dataclass(frozen=True)
class Rule:
    name: str
    ops: frozenset[str]  # the ops of the nodes it looks at
    fn: RuleFn
    exact: bool  # False: changes results in the cases the module docstring names


RULES: dict[str, Rule] = {}


def rule(name: str, *ops: str, exact: bool = True) -> Callable[[RuleFn], RuleFn]:
    def add(fn: RuleFn) -> RuleFn:
        RULES[name] = Rule(name, frozenset(ops), fn, exact)
        return fn

    return add


@register("simplify")
def simplify(graph: Graph, disable: Iterable[str] = (), fast_math: bool = False) -> Graph:
    """Algebraic simplification: identities, transpose/reshape chains, and (fast_math) the
    stable loss forms that change results where Keras's clip is active."""
    disabled = set(disable) | (set() if fast_math else set(STABLE_LOSS_RULES))
    unknown = sorted(disabled - set(RULES))
    if unknown:
        raise KilnValueError(f"simplify: expected rule names among {', '.join(RULES)}. "
                             f"Received: disable={unknown}")
    by_op: dict[str, list[Rule]] = {}
    for r in RULES.values():
        if r.name not in disabled:
            for op in sorted(r.ops):
                by_op.setdefault(op, []).append(r)
    graph = map_bodies(graph, lambda body: simplify(body, disabled, fast_math=True))
    for _ in range(MAX_SWEEPS):
        rewritten = _sweep(graph, by_op)
        if rewritten is graph:
            break
        graph = rewritten
    return graph


def _sweep(graph: Graph, by_op: dict[str, list[Rule]]) -> Graph:
    ed = GraphEditor(graph)
    for node in graph.nodes:
        node = ed.remap(node)
        for r in by_op.get(node.op, ()):
            emitted = len(ed.nodes)
            new = r.fn(ed, node)
            if new is not None:
                if len(ed.nodes) > emitted and new.name != node.output.name:
                    new = ed.rename_last(new, node.output.name)
                ed.replace(node.output, new)
                break
            assert len(ed.nodes) == emitted, f"rule {r.name} emitted nodes and then declined"
        else:
            ed.emit(node)
    return ed.finish()


# -- matching helpers ------------------------------------------------------------------------
def _scalar(ed: GraphEditor, v: Value) -> float | int | bool | None:
    return constant_scalar(ed.producer(v))


def _is(ed: GraphEditor, v: Value, number: float) -> bool:
    value = _scalar(ed, v)
    return value is not None and not isinstance(value, bool) and value == number


def _made_by(ed: GraphEditor, v: Value, *ops: str) -> Node | None:
    node = ed.producer(v)
    return node if node is not None and node.op in ops else None


def _as_output(ed: GraphEditor, node: Node, v: Value) -> Value:
    """`v` standing for the node's output, broadcast when the other operand widened it."""
    out = node.output
    if v.type == out.type:
        return v
    return ed.op("broadcast_to", v, shape=out.type.shape, name=f"{out.name}.broadcast_to")


def _clip_of(ed: GraphEditor, v: Value) -> Value | None:
    """The operand of a probability clip (bounds within CLIP_SLACK of 0 and 1)."""
    clip = _made_by(ed, v, "clip")
    if clip is None:
        return None
    low, high = clip.attr["min"], clip.attr["max"]
    if 0 <= low <= CLIP_SLACK and 1 - CLIP_SLACK <= high <= 1:
        return clip.inputs[0]
    return None


def _neg_softplus(ed: GraphEditor, node: Node, x: Value, negate_x: bool) -> Value:
    """-softplus(-x) (= log sigmoid x) or -softplus(x) (= log(1 - sigmoid x))."""
    name = node.output.name
    if negate_x:
        x = ed.op("neg", x, name=f"{name}.neg")
    return ed.op("neg", ed.op("softplus", x, name=f"{name}.softplus"), name=f"{name}.neg")


# -- identities ------------------------------------------------------------------------------
@rule("mul_one", "mul")
def _mul_one(ed: GraphEditor, node: Node) -> Value | None:
    x, y = node.inputs
    if _is(ed, y, 1):
        return _as_output(ed, node, x)
    if _is(ed, x, 1):
        return _as_output(ed, node, y)
    return None


@rule("add_zero", "add")
def _add_zero(ed: GraphEditor, node: Node) -> Value | None:
    x, y = node.inputs
    if _is(ed, y, 0):
        return _as_output(ed, node, x)
    if _is(ed, x, 0):
        return _as_output(ed, node, y)
    return None


@rule("sub_zero", "sub")
def _sub_zero(ed: GraphEditor, node: Node) -> Value | None:
    x, y = node.inputs
    return _as_output(ed, node, x) if _is(ed, y, 0) else None


@rule("div_one", "div")
def _div_one(ed: GraphEditor, node: Node) -> Value | None:
    x, y = node.inputs
    return _as_output(ed, node, x) if _is(ed, y, 1) else None


@rule("double_neg", "neg")
def _double_neg(ed: GraphEditor, node: Node) -> Value | None:
    inner = _made_by(ed, node.inputs[0], "neg")
    return inner.inputs[0] if inner is not None else None


# -- movement chains ---------------------------------------------------------------------------
def _perm(node: Node) -> tuple[int, ...]:
    perm = node.attr["perm"]
    rank = node.inputs[0].type.rank
    return tuple(range(rank - 1, -1, -1)) if perm is None else tuple(perm)


@rule("transpose_chain", "transpose")
def _transpose_chain(ed: GraphEditor, node: Node) -> Value | None:
    x, perm = node.inputs[0], _perm(node)
    inner = _made_by(ed, x, "transpose")
    if inner is not None:
        x, perm = inner.inputs[0], tuple(_perm(inner)[p] for p in perm)
    if perm == tuple(range(len(perm))):
        return x
    if inner is None:
        return None
    return ed.op("transpose", x, perm=perm, name=f"{node.output.name}.transpose")


def _index_block_perm(perm: tuple[int, ...], axis: int, rank: int) -> tuple[int, ...] | None:
    """The permutation of the index axes [axis, axis + rank) when `perm` moves only those
    (every other axis stays); None otherwise, or when it moves none."""
    block = range(axis, axis + rank)
    if any(perm[d] != d for d in range(len(perm)) if d not in block):
        return None
    inner = tuple(perm[d] - axis for d in block)
    return None if inner == tuple(range(rank)) else inner


def reordered_from(graph: Graph, v: Value) -> Value:
    """The value whose elements `v` holds in another order: v itself, or the operand of the
    transposes that made it (gather_transpose and scatter_transpose transpose indices, and a
    backend that checks an input's indices before any node runs checks that input)."""
    made = {n.output.name: n for n in graph.nodes if n.op == "transpose"}
    while v.name in made:
        v = made[v.name].inputs[0]
    return v


@rule("gather_transpose", "transpose")
def _gather_transpose(ed: GraphEditor, node: Node) -> Value | None:
    gather = _made_by(ed, node.inputs[0], "gather")
    if gather is None:
        return None
    x, indices = gather.inputs
    axis = gather.attr["axis"] % x.type.rank
    inner = _index_block_perm(_perm(node), axis, indices.type.rank)
    if inner is None:
        return None
    moved = ed.op("transpose", indices, perm=inner, name=f"{node.output.name}.indices")
    return ed.op("gather", x, moved, axis=axis, name=f"{node.output.name}.gather")


@rule("scatter_transpose", "scatter_add")
def _scatter_transpose(ed: GraphEditor, node: Node) -> Value | None:
    transpose = _made_by(ed, node.inputs[0], "transpose")
    if transpose is None:
        return None
    updates, indices = transpose.inputs[0], node.inputs[1]
    axis = node.attr["axis"] % node.output.type.rank
    inner = _index_block_perm(_perm(transpose), axis, indices.type.rank)
    if inner is None:
        return None
    inverse = tuple(inner.index(k) for k in range(len(inner)))
    moved = ed.op("transpose", indices, perm=inverse, name=f"{node.output.name}.indices")
    return ed.op("scatter_add", updates, moved, axis=axis, size=node.attr["size"],
                 name=f"{node.output.name}.scatter_add")


@rule("reshape_chain", "reshape")
def _reshape_chain(ed: GraphEditor, node: Node) -> Value | None:
    inner = _made_by(ed, node.inputs[0], "reshape", "expand_dims", "squeeze")
    if inner is None:
        return None
    source, out = inner.inputs[0], node.output
    if source.type == out.type:
        return source
    return ed.op("reshape", source, shape=out.type.shape, name=f"{out.name}.reshape")


@rule("reshape_noop", "reshape", "squeeze")
def _reshape_noop(ed: GraphEditor, node: Node) -> Value | None:
    return node.inputs[0] if node.inputs[0].type == node.output.type else None


@rule("broadcast_noop", "broadcast_to")
def _broadcast_noop(ed: GraphEditor, node: Node) -> Value | None:
    return node.inputs[0] if node.inputs[0].type == node.output.type else None


@rule("cast_noop", "cast")
def _cast_noop(ed: GraphEditor, node: Node) -> Value | None:
    return node.inputs[0] if node.inputs[0].type == node.output.type else None


@rule("broadcast_scalar", "broadcast_to", "expand_dims", "reshape", "squeeze", "transpose")
def _broadcast_scalar(ed: GraphEditor, node: Node) -> Value | None:
    value = _scalar(ed, node.inputs[0])
    if value is None:
        return None
    t = node.output.type
    return ed.op("constant", value=value, dtype=t.dtype, shape=t.shape,
                 name=f"{node.output.name}.constant")


# -- pooling before activation -------------------------------------------------------------
# Elementwise ops f(x, b) nondecreasing in x, as rounded (NaN in, NaN out, as max pooling).
_MONOTONE_UNARY = frozenset({"relu", "clip"})
_MONOTONE_BINARY = frozenset({"add", "sub", "maximum", "minimum"})


def _pool_invariant(b: Value, image: Value) -> bool:
    """b broadcasts into the NHWC image along the channel axis only (a per-channel bias)."""
    shape = b.type.shape
    rank = image.type.rank
    return (len(shape) <= rank and b.type.dtype == image.type.dtype
            and all(d == 1 for d in shape[:len(shape) - 1]))


def _monotone_step(ed: GraphEditor, v: Value) -> tuple[Node, int] | None:
    """(node, k) when v = node(...) is nondecreasing in its operand k, of v's type, and v is
    read once."""
    node = ed.producer(v)
    if node is None or ed.reads(v) != 1:
        return None
    if node.op in _MONOTONE_UNARY and node.inputs[0].type == v.type:
        return node, 0
    if node.op in _MONOTONE_BINARY:
        for k in (0, 1) if node.op != "sub" else (0,):
            x, b = node.inputs[k], node.inputs[1 - k]
            if x.type == v.type and _pool_invariant(b, x):
                return node, k
    return None


@rule("pool_activation", "max_pool2d")
def _pool_activation(ed: GraphEditor, node: Node) -> Value | None:
    chain, v = [], node.inputs[0]
    while (step := _monotone_step(ed, v)) is not None:
        chain.append(step)
        v = step[0].inputs[step[1]]
    if not chain:
        return None
    out = ed.op("max_pool2d", v, name=f"{node.output.name}.max_pool2d", **node.attr)
    for f, k in reversed(chain):  # each under its own name (its layer's), made unique
        operands = list(f.inputs)
        operands[k] = out
        out = ed.op(f.op, *operands, name=f.output.name, **f.attr)
    return out


# -- stable forms ------------------------------------------------------------------------------
@rule("log_softmax", "log")
def _log_softmax(ed: GraphEditor, node: Node) -> Value | None:
    softmax = _made_by(ed, node.inputs[0], "softmax")
    if softmax is None:
        return None
    return ed.op("log_softmax", softmax.inputs[0], axis=softmax.attr["axis"],
                 name=f"{node.output.name}.log_softmax")


def _one_minus(ed: GraphEditor, v: Value) -> Value | None:
    """p when v = 1 - p (with p of v's type)."""
    sub = _made_by(ed, v, "sub")
    if sub is None or not _is(ed, sub.inputs[0], 1) or sub.inputs[1].type != v.type:
        return None
    return sub.inputs[1]


@rule("log_sigmoid", "log")
def _log_sigmoid(ed: GraphEditor, node: Node) -> Value | None:
    p = node.inputs[0]
    complement = _one_minus(ed, p)
    sigmoid = _made_by(ed, complement if complement is not None else p, "sigmoid")
    if sigmoid is None:
        return None
    return _neg_softplus(ed, node, sigmoid.inputs[0], negate_x=complement is None)


@rule("softmax_cross_entropy", "log", exact=False)
def _softmax_cross_entropy(ed: GraphEditor, node: Node) -> Value | None:
    p = _clip_of(ed, node.inputs[0])
    if p is None:
        return None
    softmax = _made_by(ed, p, "softmax")
    div = _made_by(ed, p, "div")
    if softmax is None and div is not None:
        # Keras renormalizes the probabilities first: s / sum(s, softmax axes, keepdims).
        softmax = _made_by(ed, div.inputs[0], "softmax")
        total = _made_by(ed, div.inputs[1], "sum")
        if (softmax is None or total is None or total.inputs[0] != softmax.output
                or not total.attr["keepdims"] or div.output.type != softmax.output.type):
            return None
        rank = softmax.output.type.rank
        if (normalize_axes(total.attr["axes"], rank, "sum")
                != normalize_axes(softmax.attr["axis"], rank, "softmax")):
            return None
    if softmax is None:
        return None
    return ed.op("log_softmax", softmax.inputs[0], axis=softmax.attr["axis"],
                 name=f"{node.output.name}.log_softmax")


@rule("sigmoid_cross_entropy", "log", exact=False)
def _sigmoid_cross_entropy(ed: GraphEditor, node: Node) -> Value | None:
    p = node.inputs[0]
    complement = _one_minus(ed, p)
    x = _clip_of(ed, complement if complement is not None else p)
    sigmoid = _made_by(ed, x, "sigmoid") if x is not None else None
    if sigmoid is None:
        return None
    return _neg_softplus(ed, node, sigmoid.inputs[0], negate_x=complement is None)


# The rules that change results where Keras's clip was active (see the module docstring).
STABLE_LOSS_RULES = tuple(r.name for r in RULES.values() if not r.exact)
