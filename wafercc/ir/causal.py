"""Causal attention, recognized from the graph: which batched products a constant causal mask makes half
useless, and by how much.

    %s = bmm %q, %kt : tensor<BxMxN>                 scores: M queries x N keys
    %v = view %s ... ; %x = mul %v, %scale            (views of B only, products with a scalar constant)
    %a = add %x, %mask                                 %mask computed from constants alone
      (or %a = where %c, %fill, %x: masked_fill, the fill masked where the constant %c holds)
    %p = softmax %a {dim = -1} ; %w = where %c, %zeros, %p   (optional: sdpa's all-masked-row guard)
    %o = bmm view(%w), %v                              P.V: P is exactly 0 where the mask masks

A mask is *causal with offset o* when every entry above the diagonal shifted by o (key j > query i + o) is
masked: -inf, or a finite value at most -2^64 (``torch.finfo(f32).min``, which HF models use). Then:

- the scores product (``on = "scores"``) need not compute a tile whose every entry lies above that diagonal:
  whatever it holds (the runtime fills 0.0), adding the mask gives the mask's value, as the computed score
  would (for -inf: any finite score; for a finite mask: a score smaller than half its unit in the last
  place, which the runtime checks from its operands before it skips);
- the product of the softmax with V (``on = "probs"``) need not multiply a block of P above the diagonal: it
  is exactly +0.0 (exp(-inf) = 0), and adding 0 x v changes no sum for finite v (checked at run time).

Recognized: torch's sdpa math decomposition (``is_causal=True``, or an explicit boolean ``tril`` mask or an
additive one), HF models' eager attention (a finfo.min additive mask after a scale) and ``masked_fill`` of
a constant causal condition with -inf (examples/gpt.py; a where's fill replaces the score whatever it
holds, so no bound on the scores is needed there). Not recognized: a mask given as an input of the model
(known only at run time), scores that reach anything besides the mask (returned, or read twice), masks
over ``MAX_MASK_ELEMENTS`` elements, and mask ops this evaluator does not know. What a mask masks below the
diagonal (a sliding window, padding) is computed as usual: only tiles above it are skipped. The mask's
value is evaluated here with numpy on the constants (no kernel of the runtime: the IR core imports nothing
of it); the runtime re-evaluates it with its own kernels.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from .core import Func, Op, Value

# Masks bigger than this (elements of any intermediate) are not evaluated: no causal skipping for them.
MAX_MASK_ELEMENTS = 1 << 26
# A finite mask value at most this is "masked": a score s with |s| < ulp(m) / 2 leaves s + m == m.
MASKED_AT_MOST = -(2.0**64)

ON = ("scores", "probs")


@dataclass(frozen=True)
class CausalUse:
    """What the graph justifies for one bmm anchor: ``on`` (scores or probs), the diagonal's ``offset``,
    and, for scores, the ops from the product to the masking add and the mask value."""

    on: str
    offset: int
    chain: tuple[Op, ...] = ()  # scores: the single-use ops from the bmm to the add (views, scalar products)
    add: Op | None = None  # scores: the masking op (an add of the mask, or a where selecting a masked fill)
    mask: Value | None = None  # scores: the mask operand of an add (None for a where)


def users(func: Func) -> dict[int, list[Op]]:
    """id(value) -> the ops that read it (a returned value gets None among them)."""
    out: dict[int, list] = {}
    for op in func.ops:
        for v in op.operands:
            out.setdefault(id(v), []).append(op)
    for v in func.returns:
        out.setdefault(id(v), []).append(None)
    return out


def analyze(func: Func, anchor: Op, uses: dict | None = None, memo: dict | None = None) -> CausalUse | None:
    """The causal skipping the graph justifies for ``anchor`` (a bmm), or None."""
    if anchor.name != "bmm" or len(anchor.operands) != 2:
        return None
    uses = users(func) if uses is None else uses
    memo = {} if memo is None else memo
    if _STATIC not in memo:
        memo[_STATIC] = static_values(func)
    return _scores(anchor, uses, memo) or _probs(anchor, memo)


_STATIC = "static values"  # the memo's key for the set of static_values(func)


def static_values(func: Func) -> frozenset[int]:
    """ids of the values computed from constants alone (no argument, no weight): what a mask can be."""
    out: set[int] = set()
    for op in func.ops:
        if op.name != "weight.get" and all(id(v) in out for v in op.operands):
            out.update(id(r) for r in op.results)
    return frozenset(out)


def _last2(v: Value) -> tuple[int, ...]:
    return tuple(v.type.shape[-2:])


def _scores(anchor: Op, uses: dict, memo: dict) -> CausalUse | None:
    s = anchor.results[0]
    M, N = s.type.shape[1], s.type.shape[2]
    chain: list[Op] = []
    v = s
    while True:
        readers = uses.get(id(v), [])
        if len(readers) != 1 or readers[0] is None:  # the raw scores must reach nothing but the mask
            return None
        op = readers[0]
        if op.name == "view" and _last2(op.results[0]) == (M, N):
            chain.append(op)
            v = op.results[0]
            continue
        if op.name in ("mul", "div") and op.operands[0] is v and _scalar_constant(op.operands[1]) is not None:
            chain.append(op)
            v = op.results[0]
            continue
        if op.name in ("add", "where") and op.results[0].type.shape == v.type.shape:
            off = masking_offset(op, v, M, N, memo)
            if off is None:
                return None
            mask = (op.operands[1] if op.operands[0] is v else op.operands[0]) if op.name == "add" else None
            return CausalUse("scores", off, tuple(chain), op, mask)
        return None


# Offsets found, by the structure of the masking op's constant operands: every block of a model, and every
# load of its plan (after each mapping pass), has the same mask; evaluating a 4K x 4K one takes a second.
_OFFSETS: dict[tuple, int | None] = {}


def masking_offset(op: Op, score: Value, M: int, N: int, memo: dict) -> int | None:
    """The diagonal offset of what the masking op masks (``masked_positions``) over [..., M, N], or None."""
    others = [v for v in op.operands if v is not score]
    if any(_STATIC in memo and id(v) not in memo[_STATIC] for v in others):
        return None
    key = (op.name, [v is score for v in op.operands].index(True), tuple(_structure(v, memo) for v in others), M, N)
    if key not in _OFFSETS:
        if len(_OFFSETS) > 4096:
            _OFFSETS.clear()
        _OFFSETS[key] = _offset(masked_positions(op, score, memo), M, N)
    return _OFFSETS[key]


def _structure(v: Value, memo: dict) -> str:
    """A fingerprint of how a constant value is computed: its ops, attributes and types, not its names."""
    k = ("structure", id(v))
    if k not in memo:
        op = v.owner
        if op is None:
            memo[k] = f"arg:{v.name}"
        else:
            attrs = sorted((a, repr(x)) for a, x in op.attrs.items() if not a.startswith("plan."))
            parts = (op.name, str(v.type), op.results.index(v), attrs, [_structure(x, memo) for x in op.operands])
            memo[k] = hashlib.sha1(repr(parts).encode()).hexdigest()
    return memo[k]


def masked_positions(op: Op, score: Value, memo: dict, evaluate=None) -> np.ndarray | None:
    """Where the masking op makes its result the mask's value whatever ``score`` holds (booleans,
    broadcastable to the result), or None when it is not a masking op of a constant mask: ``add(score,
    mask)`` where the mask is masked (-inf, or at most MASKED_AT_MOST: see ``masked``), ``where(c, fill,
    score)`` where c holds and the fill is masked, ``where(c, score, fill)`` where c does not. ``evaluate``
    gives a constant value (default ``static_value``; the runtime passes its own kernels')."""
    evaluate = evaluate or static_value
    ops = op.operands
    if op.name == "add" and len(ops) == 2 and score in ops and not (ops[0] is score and ops[1] is score):
        a = evaluate(ops[1] if ops[0] is score else ops[0], memo)
        return masked(a) if a is not None and np.asarray(a).dtype.kind == "f" else None
    if op.name == "where" and len(ops) == 3 and ops[0] is not score and (ops[1] is score) != (ops[2] is score):
        c = evaluate(ops[0], memo)
        fill = evaluate(ops[2] if ops[1] is score else ops[1], memo)
        if c is None or fill is None or np.asarray(fill).dtype.kind != "f":
            return None
        c = np.asarray(c).astype(bool)
        return (~c if ops[1] is score else c) & masked(np.asarray(fill))
    return None


def _offset(m: np.ndarray | None, M: int, N: int) -> int | None:
    """The offset of masked positions m (broadcastable to [..., M, N]), or None."""
    if m is None or m.ndim < 1:
        return None
    try:
        m = np.broadcast_to(m, m.shape[:-2] + (M, N) if m.ndim >= 2 else (M, N))
    except ValueError:
        return None
    return offset_of_masked(m.reshape(-1, M, N))


def _probs(anchor: Op, memo: dict) -> CausalUse | None:
    p = anchor.operands[0]
    M, K = p.type.shape[1], p.type.shape[2]
    v = p
    while v.owner is not None:
        op = v.owner
        if op.name == "view" and _last2(op.operands[0]) == (M, K):
            v = op.operands[0]
            continue
        if op.name == "where" and len(op.operands) == 3:
            # where(c, 0, p) or where(c, p, 0): zero where p is zero or elsewhere
            a, b = op.operands[1], op.operands[2]
            if _is_zero_constant(a, memo) and b.type.shape == v.type.shape:
                v = b
                continue
            if _is_zero_constant(b, memo) and a.type.shape == v.type.shape:
                v = a
                continue
            return None
        if op.name == "softmax" and op.attrs.get("dim") in (-1, len(v.type.shape) - 1):
            x = op.operands[0]
            masking = x.owner
            if masking is None or x.type.shape != v.type.shape:
                return None
            for score in masking.operands:  # whichever operand is the score the constant mask masks
                if score.type.shape == x.type.shape and id(score) not in memo[_STATIC]:
                    off = masking_offset(masking, score, M, K, memo)
                    if off is not None:
                        return CausalUse("probs", off)
            return None
        return None
    return None


def _scalar_constant(v: Value) -> float | None:
    op = v.owner
    if op is None or op.name != "constant" or v.type.numel != 1:
        return None
    val = np.asarray(op.attrs.get("value"), dtype=np.float64).reshape(-1)
    return float(val[0]) if val.size == 1 and np.isfinite(val[0]) else None


def _is_zero_constant(v: Value, memo: dict) -> bool:
    """v is +0.0 everywhere: a ``full`` of 0.0 (read from its attribute, whatever its size) or a constant
    value evaluated to all +0.0."""
    op = v.owner
    if op is not None and op.name == "full" and v.type.dtype.value.startswith(("f", "bf")):
        val = op.attrs.get("value")
        return isinstance(val, (int, float)) and not isinstance(val, bool) and val == 0 and not np.signbit(val)
    a = static_value(v, memo)
    return a is not None and a.dtype.kind == "f" and not a.any() and not np.signbit(a).any()


def masked(a: np.ndarray) -> np.ndarray:
    """Entries that mask a score: -inf, or finite and at most MASKED_AT_MOST."""
    return a <= MASKED_AT_MOST


def offset_of_masked(m: np.ndarray) -> int | None:
    """m: [G, M, N] booleans (True: masked). The smallest o with every (i, j > i + o) masked, or None when
    that leaves nothing to skip."""
    G, M, N = m.shape
    if M == 0 or N == 0:
        return None
    free = ~m.all(axis=0) if G > 1 else ~m[0]  # [M, N]: unmasked in some product
    rev = free[:, ::-1]
    last = N - 1 - rev.argmax(axis=1)  # last unmasked key of each query
    last = np.where(rev.any(axis=1), last, -1)  # -1: none
    o = int((last - np.arange(M)).max())
    return o if o < N - 1 else None


def static_value(v: Value, memo: dict) -> np.ndarray | None:
    """The value of v when computed from constants alone by ops this evaluator knows (numpy, float64 for
    floats), else None."""
    key = id(v)
    if key in memo:
        return memo[key]
    if _STATIC in memo and key not in memo[_STATIC]:  # not from constants alone: no need to walk back
        return None
    memo[key] = None
    op = v.owner
    out = None
    if op is not None and len(op.results) == 1 and v.type.numel <= MAX_MASK_ELEMENTS:
        args = [static_value(x, memo) for x in op.operands]
        if all(a is not None for a in args):
            try:
                out = _eval(op, args)
            except (ValueError, TypeError, KeyError, IndexError):
                out = None
            if out is not None:
                out = np.asarray(out)
                if out.shape != tuple(v.type.shape):
                    out = None
    memo[key] = out
    return out


def _float_or_int(v, dtype_name: str):
    if dtype_name == "bool":
        return np.asarray(v, dtype=bool)
    if dtype_name.startswith(("i", "u")):
        return np.asarray(v, dtype=np.int64)
    return np.asarray(v, dtype=np.float64)


_BINARY = {
    "add": np.add,
    "sub": np.subtract,
    "mul": np.multiply,
    "le": np.less_equal,
    "lt": np.less,
    "ge": np.greater_equal,
    "gt": np.greater,
    "eq": np.equal,
    "ne": np.not_equal,
    "logical_and": np.logical_and,
    "logical_or": np.logical_or,
    "bitwise_and": np.logical_and,  # on booleans only (checked below)
    "bitwise_or": np.logical_or,
    "minimum": np.minimum,
    "maximum": np.maximum,
}


def _moved(op: Op, x: np.ndarray, shape: tuple) -> np.ndarray:
    if op.name == "expand":
        return np.broadcast_to(x, shape)
    if op.name == "permute":
        return x.transpose(op.attrs["dims"])
    return x.reshape(shape)


def _eval(op: Op, args: list) -> np.ndarray | None:
    shape = tuple(op.results[0].type.shape)
    dt = op.results[0].type.dtype.value
    n = op.name
    if n == "constant":
        return np.broadcast_to(_float_or_int(op.attrs["value"], dt), shape)
    if n == "full":
        return np.full(shape, _float_or_int(op.attrs["value"], dt))
    if n == "arange":
        start, step = op.attrs.get("start", 0), op.attrs.get("step", 1)
        return _float_or_int(start + np.arange(shape[0]) * step, dt)
    if n in ("view", "unsqueeze", "squeeze", "expand", "permute"):
        return _moved(op, args[0], shape)
    if n == "convert":
        return _float_or_int(args[0], dt)
    if n in ("tril", "triu"):
        f = np.tril if n == "tril" else np.triu
        return f(args[0], op.attrs.get("diagonal", 0))
    if n == "logical_not" or n == "bitwise_not" and args[0].dtype == bool:
        return np.logical_not(args[0])
    if n == "where":
        return _float_or_int(np.where(args[0].astype(bool), args[1], args[2]), dt)
    if n in _BINARY:
        if n.startswith("bitwise") and (args[0].dtype != bool or args[1].dtype != bool):
            return None
        return np.broadcast_to(_float_or_int(_BINARY[n](args[0], args[1]), dt), shape)
    return None


__all__ = ["CausalUse", "ON", "analyze", "masked", "masked_positions", "offset_of_masked", "static_value", "users"]
