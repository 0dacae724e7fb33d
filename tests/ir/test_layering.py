"""The IR core is the bottom layer: it imports nothing else of wafercc, and not torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import wafercc.ir

IR = Path(wafercc.ir.__file__).parent
ROOT = IR.parents[1]


def test_importing_the_ir_loads_nothing_beyond_lark():
    # Whatever `import lark` (and site) loads is allowed; the IR itself may add only its own modules.
    code = (
        "import sys; import lark; before = set(sys.modules); import wafercc.ir; "
        "print(' '.join(sorted(set(sys.modules) - before))); print('torch' in sys.modules, 'numpy' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    added, heavy = out.stdout.splitlines()
    others = [m for m in added.split() if m.split(".")[0] not in {"wafercc", *sys.stdlib_module_names}]
    assert not others, f"importing wafercc.ir loads {others}"
    assert heavy == "False False", "importing wafercc.ir loads torch or numpy"


def imports(path: Path) -> list[tuple[int, str, int]]:
    """(line, absolute module name or '.'-relative spelling, relative level) of every import in a file."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name, 0) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            out.append((node.lineno, node.module or "", node.level))
    return out


def test_ir_modules_import_nothing_of_wafercc_outside_the_ir():
    bad = []
    for path in sorted(IR.rglob("*.py")):
        for line, name, level in imports(path):
            outside = (level == 0 and name.split(".")[0] == "wafercc" and not name.startswith("wafercc.ir")) or (
                level > 1
            )
            if outside or name.split(".")[0] == "torch":
                bad.append(f"{path.relative_to(ROOT)}:{line}: {'.' * level}{name}")
    assert not bad, "wafercc.ir must not import:\n" + "\n".join(bad)
