"""STYLE.md §2 as a test: imports point down the layers, syscalls stay in linux/."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[2] / "berth"

# package prefix -> prefixes it must never import
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "berth.linux": ("berth.api", "berth.engine", "berth.daemon", "berth.cli", "berth.client", "berth.image",
                    "berth.runtime", "berth.network", "berth.registry"),
    "berth.oci": ("berth.api", "berth.engine", "berth.daemon", "berth.cli", "berth.client", "berth.linux",
                  "berth.runtime", "berth.image"),
    "berth.state": ("berth.api", "berth.engine", "berth.daemon", "berth.cli", "berth.client", "berth.runtime",
                    "berth.image"),
    "berth.runtime": ("berth.api", "berth.engine", "berth.daemon", "berth.cli", "berth.client"),
    "berth.image": ("berth.api", "berth.engine", "berth.daemon", "berth.cli", "berth.client", "berth.runtime"),
    "berth.engine": ("berth.api", "berth.build", "berth.daemon", "berth.cli", "berth.client", "aiohttp"),
    "berth.build": ("berth.api", "berth.daemon", "berth.cli", "berth.client", "aiohttp"),
    "berth.api": ("berth.daemon", "berth.cli", "berth.client"),
    "berth.client": ("berth.api", "berth.engine", "berth.daemon", "berth.runtime", "berth.image",
                     "berth.linux", "berth.state", "aiohttp"),
    "berth.cli": ("berth.api", "berth.engine", "berth.daemon", "berth.runtime", "berth.image", "berth.linux",
                  "berth.state"),
}


def _modules() -> list[tuple[str, Path]]:
    out = []
    for p in sorted(PKG.rglob("*.py")):
        rel = p.relative_to(PKG.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        out.append((".".join(parts), p))
    return out


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


@pytest.mark.parametrize("module,path", _modules(), ids=lambda v: v if isinstance(v, str) else "")
def test_imports_point_down(module: str, path: Path) -> None:
    imports = _imports(path)
    for prefix, banned in FORBIDDEN.items():
        if module == prefix or module.startswith(prefix + "."):
            bad = sorted(i for i in imports for b in banned if i == b or i.startswith(b + "."))
            assert not bad, f"{module} imports {bad} (STYLE.md §2)"
    if module != "berth.daemon" and not module.startswith("berth.daemon."):
        assert not any(i.startswith("berth.daemon") for i in imports), f"{module} imports berth.daemon"


def test_ctypes_only_in_linux() -> None:
    offenders = [m for m, p in _modules() if "ctypes" in _imports(p) and not m.startswith("berth.linux")]
    assert not offenders, f"ctypes outside berth/linux/: {offenders}"


def test_every_module_imports_alone() -> None:
    """Each module in a fresh interpreter, so import cycles fail here (aiohttp's test)."""
    mods = [m for m, _ in _modules() if not m.endswith("__main__")]
    code = "import importlib, sys\nbad=[]\nfor m in sys.argv[1:]:\n    try: importlib.import_module(m)\n" \
           "    except Exception as e: bad.append(f'{m}: {e!r}')\nprint('\\n'.join(bad)); sys.exit(1 if bad else 0)"
    # One interpreter per top-level package keeps this fast while still catching cycles within it.
    groups: dict[str, list[str]] = {}
    for m in mods:
        groups.setdefault(".".join(m.split(".")[:2]), []).append(m)
    for _, ms in sorted(groups.items()):
        r = subprocess.run([sys.executable, "-c", code, *ms], capture_output=True, text=True,
                           cwd=PKG.parent, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
