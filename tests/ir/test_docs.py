"""The docs follow the code: the generated op reference is current, and the IR reference names every rule."""

from __future__ import annotations

import re
from pathlib import Path

import wafercc.ops
from wafercc.ops import docgen

ROOT = Path(__file__).parents[2]
DOCS = ROOT / "docs"


def test_ops_md_is_current():
    assert (DOCS / "ops.md").read_text() == docgen.render(), (
        "docs/ops.md is stale: run `python -m wafercc.ops.docgen > docs/ops.md` and commit the result"
    )


def test_ops_md_lists_every_op():
    text = (DOCS / "ops.md").read_text()
    missing = [name for name in wafercc.ops.OPS if f"| `{name}` |" not in text]
    assert not missing


def verifier_rules() -> set[str]:
    """Every rule name the verifiers can print: `[rule]` in messages and the rule argument of `fail`."""
    rules = set()
    for path in (ROOT / "wafercc/ir/verifier.py", ROOT / "wafercc/ops/registry.py"):
        src = path.read_text()
        rules |= set(re.findall(r"\[([a-z]+(?:-[a-z]+)+)\]", src))
        rules |= set(re.findall(r"fail\(\s*op,\s*\"([a-z-]+)\"", src))
    return rules


def test_wir_md_explains_every_verifier_rule():
    text = (DOCS / "wir.md").read_text()
    rules = verifier_rules()
    assert len(rules) >= 12
    assert not {r for r in rules if f"| `{r}` |" not in text}


def test_index_links_every_page():
    index = (DOCS / "index.md").read_text()
    for page in ["wir.md", "ops.md", "passes.md", "cli.md", "models.md", "runtime.md"]:
        assert f"]({page})" in index
