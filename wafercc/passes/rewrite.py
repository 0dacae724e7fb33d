"""Shared machinery for passes that edit a function in place: use-lists and a worklist pattern driver.

Use-lists are built once per pass run (``Rewriter(func)``); every edit keeps them up to date, so no pass
rescans the function to find the users of a value. Erased ops are only marked while the pass runs and the
op list is rebuilt once in ``finish()``, which keeps erasing and inserting O(1) each.

When an edit removes the last use of an op's results, that op is erased too (and so on up the chain):
a pass leaves behind no dead op that it made dead. Dead ops that were already in the input are left for
``dce``.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping, Sequence

from wafercc.ir import Func, NameGen, Op, Value

# A use is (user op, operand index), or (None, i) for the function's i-th returned value.
Use = tuple[Op | None, int]
# A pattern looks at one op; when it applies it rewrites through the Rewriter and returns True.
Pattern = Callable[[Op, "Rewriter"], bool]


class Rewriter:
    """Edits one function: replace values, rewire operands, insert and erase ops, with live use-lists."""

    def __init__(self, func: Func):
        self.func = func
        self.uses: dict[Value, dict[Use, None]] = {v: {} for v in func.values()}
        for op in func.ops:
            for i, v in enumerate(op.operands):
                self.uses[v][(op, i)] = None
        for i, v in enumerate(func.returns):
            self.uses[v][(None, i)] = None
        self.erased: set[Op] = set()
        self.before: dict[Op, list[Op]] = {}  # ops inserted in front of an existing op
        self.on_change: Callable[[Op], None] = lambda op: None  # the driver's hook: "look at op again"
        self._names: NameGen | None = None

    # -- queries -----------------------------------------------------------------------------
    def users(self, v: Value) -> list[Op]:
        """The ops that use ``v`` (each once, in no particular order that matters)."""
        return list(dict.fromkeys(op for op, _ in self.uses[v] if op is not None))

    def has_uses(self, v: Value) -> bool:
        return bool(self.uses[v])

    def is_dead(self, op: Op) -> bool:
        return all(not self.uses[r] for r in op.results)

    def new_name(self) -> str:
        if self._names is None:
            self._names = NameGen(self.func)
        return self._names()

    # -- edits -------------------------------------------------------------------------------
    def set_operand(self, op: Op, i: int, new: Value) -> None:
        old = op.operands[i]
        del self.uses[old][(op, i)]
        op.operands[i] = new
        self.uses[new][(op, i)] = None
        self.on_change(op)
        self._erase_if_dead(old)

    def replace_all_uses(self, old: Value, new: Value) -> None:
        """Every use of ``old`` (returns included) now uses ``new``; ``old``'s op goes if that left it dead."""
        # A rewrite must not change a type: that would change the function's signature or break a user.
        assert old.type == new.type, f"replacing %{old.name}: {old.type} with %{new.name}: {new.type}"
        if old is new:
            return
        moved = self.uses.pop(old)
        self.uses[old] = {}
        for use in moved:
            user, i = use
            if user is None:
                self.func.returns[i] = new
            else:
                user.operands[i] = new
                self.on_change(user)
            self.uses[new][use] = None
        self._erase_if_dead(old)

    def replace_op(self, op: Op, new_values: Sequence[Value]) -> None:
        """Replace each result of ``op`` by the matching value, then erase ``op``."""
        for r, v in zip(op.results, new_values, strict=True):
            self.replace_all_uses(r, v)
        if op not in self.erased:
            self.erase_op(op)

    def insert_before(self, anchor: Op, op: Op) -> Op:
        """Put a new op in front of ``anchor`` (it is placed there when the function is rebuilt)."""
        self.before.setdefault(anchor, []).append(op)
        for r in op.results:
            self.uses[r] = {}
        for i, v in enumerate(op.operands):
            self.uses[v][(op, i)] = None
        self.on_change(op)
        return op

    def erase_op(self, op: Op) -> None:
        assert self.is_dead(op), f"erasing {op.where()}, whose results are still used"
        self.erased.add(op)
        for i, v in enumerate(op.operands):
            del self.uses[v][(op, i)]
        for v in dict.fromkeys(op.operands):
            self._erase_if_dead(v)

    def _erase_if_dead(self, v: Value) -> None:
        owner = v.owner
        if owner is not None and owner not in self.erased and self.is_dead(owner):
            self.erase_op(owner)

    def finish(self) -> None:
        """Write the edited op list back into the function: inserted ops in place, erased ops gone."""
        out: list[Op] = []

        def emit(op: Op) -> None:
            for new in self.before.get(op, ()):
                emit(new)
            if op not in self.erased:
                out.append(op)

        for op in self.func.ops:
            emit(op)
        self.func.ops = out


def producer(v: Value, name: str | Iterable[str]) -> Op | None:
    """The op defining ``v`` if it is one of the named kinds, else None."""
    names = (name,) if isinstance(name, str) else name
    owner = v.owner
    return owner if owner is not None and owner.name in names else None


def apply_patterns(
    func: Func,
    patterns: Mapping[str, Sequence[Pattern]],
    stats: Counter | None = None,
    any_op: Sequence[Pattern] = (),
) -> int:
    """Apply ``patterns`` (by op name; ``any_op`` for every op) to a fixpoint with one worklist.

    The worklist starts as the ops in program order; an op goes back on it when its operands change or a
    pattern rewrites it, and so do the users of a rewritten op (their producer changed). Returns the number
    of rewrites; each one is counted in ``stats`` under its pattern's name.
    """
    rw = Rewriter(func)
    work: deque[Op] = deque(func.ops)
    queued: set[Op] = set(func.ops)

    def push(op: Op) -> None:
        if op not in queued and op not in rw.erased:
            queued.add(op)
            work.append(op)

    rw.on_change = push
    # Every pattern strictly simplifies, so this bound only trips on a pattern that undoes another.
    budget = 16 * (len(func.ops) + 1)
    count = 0
    while work:
        op = work.popleft()
        queued.discard(op)
        if op in rw.erased:
            continue
        for pattern in (*patterns.get(op.name, ()), *any_op):
            if not pattern(op, rw):
                continue
            count += 1
            if stats is not None:
                stats[f"{pattern.__name__}({op.name})"] += 1
            if count > budget:
                raise RuntimeError(f"rewrite patterns do not converge (last: {pattern.__name__} on {op.where()})")
            if op not in rw.erased:
                push(op)
                for r in op.results:
                    for user in rw.users(r):
                        push(user)
            break
    rw.finish()
    return count
