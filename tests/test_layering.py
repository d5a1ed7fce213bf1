"""The import rules of docs/architecture.md, checked on the code itself: a package may
import only the packages listed for it, so the layering stays true after the next feature."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# package -> the project packages it may import (besides itself and the bare ``agent``)
ALLOWED: dict[str, set[str]] = {
    "agent.core": set(),
    "agent.protocol": {"agent.core"},
    "agent.store": {"agent.core", "agent.protocol"},
    "agent.sync": {"agent.core"},
    "hw": {"agent.core"},
    "agent.gate": {"agent.core", "agent.protocol", "agent.store"},
    "agent.centre": {"agent.core", "agent.protocol", "agent.sync"},
    "agent.runtime": {"agent.core", "agent.protocol", "agent.store", "agent.gate",
                      "agent.sync", "hw"},
    "agent.demo": {"agent.core", "agent.protocol", "agent.store", "agent.gate",
                   "agent.sync", "agent.runtime", "hw"},
    "agent.cli": {"agent.core", "agent.protocol", "agent.store", "agent.gate", "agent.sync",
                  "agent.runtime", "agent.centre", "agent.demo", "hw"},
}


def _package_of(module: str) -> str:
    parts = module.split(".")
    return parts[0] if parts[0] == "hw" or len(parts) == 1 else ".".join(parts[:2])


def _imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
    return [(n, m) for n, m in found if m.split(".")[0] in ("agent", "hw")]


def test_every_package_imports_only_what_the_architecture_allows() -> None:
    broken = []
    for path in sorted([*ROOT.glob("agent/**/*.py"), *ROOT.glob("hw/**/*.py")]):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        own = _package_of(module)
        if module == "agent.__init__":
            continue
        assert own in ALLOWED, f"{path}: package {own} has no import rule in this test"
        for line, target in _imports(path):
            other = _package_of(target)
            if other in (own, "agent") or other in ALLOWED[own]:
                continue
            broken.append(f"{path.relative_to(ROOT)}:{line} imports {target}")
    assert not broken, "imports against docs/architecture.md:\n" + "\n".join(broken)


def test_every_package_says_what_it_is_for_and_who_may_import_it() -> None:
    for package in ALLOWED:
        init = ROOT.joinpath(*package.split("."), "__init__.py")
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc, f"{init} has no docstring"
        assert "import" in doc.lower(), f"{init}'s docstring does not say who may import it"


def test_the_gate_never_imports_the_centre_and_the_centre_never_the_gate() -> None:
    assert "agent.centre" not in ALLOWED["agent.gate"] | ALLOWED["agent.runtime"]
    assert not {"agent.gate", "agent.store", "agent.runtime"} & ALLOWED["agent.centre"]
