"""The Lark grammar and its transformer agree: every rule the parser can build has a method."""

from __future__ import annotations

from wafercc.ir.parser import _LARK, _Builder


def test_every_grammar_rule_has_a_builder_method():
    """Lark builds a Tree for a rule without a method, and a Tree inside a Module is a bug that only shows
    where that rule is used: name every rule that reaches the transformer, aliases included."""
    reaching = set()
    for rule in _LARK.rules:
        name = rule.alias or rule.origin.name
        if name.startswith("_") or (rule.options.expand1 and not rule.alias):
            continue  # inlined by Lark: never reaches the transformer as itself
        reaching.add(name)
    assert reaching, "the grammar has no rules?"
    assert sorted(n for n in reaching if not callable(getattr(_Builder, n, None))) == []
