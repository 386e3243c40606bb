"""STYLE.md §2 as a test: imports point down the layers, syscalls stay in linux/, and every
module imports alone in a fresh process (so import cycles fail here, as in aiohttp's CI).

LAYERS mirrors STYLE.md §2 as *direct* imports: a layer may import the layers listed for it,
nothing else (siblings never import each other; ``berth.errors`` and the ``berth`` package
itself are open to all)::

    cli -> client -> schema
    daemon -> api -> build -> engine -> image, registry.client, network, runtime
    daemon -> cri -> engine (and schema, as api)
    daemon -> registry.server -> image
    image, network, runtime, registry.client -> oci, state, linux -> errors

oci (pure data) and state (atomic writes, locks, paths) also serve engine and build, which
coordinate the layers below them. Three stdlib-only leaves are open to every layer:
``berth.schema.stdcopy`` (Docker's stream framing: the shim writes it, the API relays it, the
client reads it), ``berth.schema.dockerignore`` (the one .dockerignore matcher: the client
filters a context with it, the builder applies it to the context it received) and
``berth.state.atomic`` (the one atomic writer: the shim, the engine and the client's
credential store all use it).
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PKG = ROOT / "berth"

OPEN_TO_ALL = ("berth", "berth.errors", "berth.schema.stdcopy", "berth.schema.dockerignore",
               "berth.schema.registryauth", "berth.state.atomic")
DATA = ("berth.oci", "berth.state")
LOW = ("berth.oci", "berth.state", "berth.linux")

# layer -> the layers it may import directly
LAYERS: dict[str, tuple[str, ...]] = {
    "berth.errors": (),
    "berth.schema.stdcopy": (),
    "berth.schema.dockerignore": (),
    "berth.schema.registryauth": (),
    "berth.schema": (),
    "berth.oci": (),
    "berth.state": (),
    "berth.linux": (),
    "berth.image": LOW,
    "berth.network": LOW,
    "berth.runtime": LOW,
    "berth.registry": (),  # the namespace package: client and server are separate layers
    "berth.registry.client": LOW,
    "berth.registry.server": ("berth.image", *DATA),
    "berth.engine": ("berth.image", "berth.registry.client", "berth.network", "berth.runtime",
                     *DATA),
    "berth.build": ("berth.engine", *DATA),
    "berth.api": ("berth.build", "berth.engine", "berth.schema"),
    "berth.cri": ("berth.engine", "berth.schema"),
    "berth.daemon": ("berth.api", "berth.cri", "berth.registry.server", "berth.build",
                     "berth.engine", "berth.image", "berth.registry.client", "berth.network",
                     "berth.runtime", *LOW, "berth.schema"),
    "berth.client": ("berth.schema",),
    "berth.cli": ("berth.client", "berth.schema"),
}

# Third-party packages only some layers may use: domain code never imports aiohttp. The CRI is
# a transport skin like api/: its streaming server (WebSockets for exec, attach, port-forward)
# uses aiohttp's framing, imported with grpc after berthd answers.
THIRD_PARTY: dict[str, tuple[str, ...]] = {"aiohttp": ("berth.registry.server", "berth.cri")}

# The upward and sideways imports that exist today, each (importer, imported). Later steps of
# issue 11 shrink this to empty; nothing may be added to it.
ALLOWED: dict[tuple[str, str], str] = {
    # oci is pure data below schema: the image config should get its own struct in oci/
    ("berth.oci.image", "berth.schema.containers"): "image config reuses the API's ContainerConfig",
    # api reaches past engine (issue 11: a thin API over the engine)
    ("berth.api.http", "berth.linux.fd"): "SIOCOUTQ drain before close: a linux call in api",
    ("berth.api.build", "berth.registry.client.auth"): "X-Registry-Config decoded in api",
    ("berth.api.build", "berth.oci.reference"): "reference parsing in api",
    # the engine shapes Docker's JSON (issue 11: api/ owns every byte of it)
    ("berth.engine.build_support", "berth.schema.containers"): "Docker JSON in the engine",
    ("berth.engine.container_create", "berth.schema.containers"): "Docker JSON in the engine",
    ("berth.engine.hostspec", "berth.schema.containers"): "Docker JSON in the engine",
    ("berth.engine.container_defaults", "berth.schema.containers"): "Docker JSON in the engine (daemon defaults fill a HostConfig)",
    ("berth.engine.container_userns", "berth.schema.containers"): "Docker JSON in the engine (UsernsMode recorded in HostConfig)",
    ("berth.engine.images", "berth.schema.containers"): "Docker JSON in the engine",
    ("berth.engine.image_changes", "berth.schema.containers"): "Docker JSON in the engine (from images)",
    ("berth.engine.image_commit", "berth.schema.containers"): "Docker JSON in the engine (from images)",
    ("berth.engine.image_files", "berth.schema.containers"): "Docker JSON in the engine (from images)",
    ("berth.engine.model", "berth.schema.containers"): "Docker JSON in the engine",
    ("berth.engine.validate", "berth.schema.containers"): "Docker JSON in the engine",
    # build skips the engine, and fills Docker's JSON shapes
    ("berth.build.admin", "berth.image.store"): "build cache admin reads the image store",
    ("berth.build.builder", "berth.image.store"): "the builder reads the image store",
    ("berth.build.builder", "berth.schema.containers"): "the builder fills a ContainerConfig",
    ("berth.build.service", "berth.image.store"): "the builder's views of an image's layers",
    ("berth.build.run", "berth.schema.containers"): "the builder fills a ContainerConfig",
    # reference parsing in the CLI: oci is pure, so it may become a leaf open to all instead
    ("berth.cli.cmd_distribution", "berth.oci.reference"): "push/pull name checks",
    # `berth registry serve` and `gc` run the server in-process, like a daemon entry point
    ("berth.cli.cmd_registry", "berth.registry.server.config"): "registry serve in-process",
    ("berth.cli.cmd_registry", "berth.registry.server.serve"): "registry serve in-process",
    ("berth.cli.cmd_registry", "berth.registry.server.gc"): "registry gc in-process",
    ("berth.cli.cmd_registry", "berth.registry.server.storage"): "registry gc in-process",
}

# The HTTP layer spawns no processes: the engine (or runtime) does, and the API calls it.
SPAWNS_ALLOWED: dict[str, str] = {}


def _modules() -> list[tuple[str, Path]]:
    out = []
    for p in sorted(PKG.rglob("*.py")):
        parts = list(p.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out.append((".".join(parts), p))
    return out


def _is_module(name: str) -> bool:
    base = ROOT.joinpath(*name.split("."))
    return base.with_suffix(".py").exists() or (base / "__init__.py").exists()


def imports_of(source: str, module: str = "", is_package: bool = False) -> set[str]:
    """Every module ``source`` imports, at module level or inside functions; ``from p import
    m`` counts as ``p.m`` when m is a module, else as ``p``. Relative imports are resolved."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = module.split(".")[:len(module.split(".")) - node.level + (1 if is_package else 0)]
                base = ".".join([*pkg, *([base] if base else [])])
            for a in node.names:
                full = f"{base}.{a.name}"
                names.add(full if base.startswith("berth") and _is_module(full) else base)
    return names


def _layer(name: str) -> str | None:
    """The longest LAYERS key that ``name`` is (inside of)."""
    best = None
    for key in (*LAYERS, *OPEN_TO_ALL):
        if (name == key or name.startswith(key + ".")) and (best is None or len(key) > len(best)):
            best = key
    return best


def violations(module: str, imports: set[str]) -> list[str]:
    """The imports of ``module`` that LAYERS, THIRD_PARTY and ALLOWED do not permit."""
    own = _layer(module)
    if own == "berth" and module != "berth":
        own = None  # a package outside the table
    bad = []
    for name in sorted(imports):
        top = name.split(".")[0]
        if top in THIRD_PARTY:
            if not any(module == k or module.startswith(k + ".") for k in THIRD_PARTY[top]):
                bad.append(name)
            continue
        if top != "berth" or (module, name) in ALLOWED:
            continue
        target = _layer(name)
        if target is None or own is None:
            bad.append(name)  # a package outside the table: add it to LAYERS first
        elif target == own or target in OPEN_TO_ALL or name in OPEN_TO_ALL:
            continue
        elif target == "berth.daemon" or target not in LAYERS[own]:
            bad.append(name)
    return bad


MODULES = _modules()


@pytest.mark.parametrize("module,path", MODULES, ids=[m for m, _ in MODULES])
def test_imports_point_down(module: str, path: Path) -> None:
    found = imports_of(path.read_text(), module, path.name == "__init__.py")
    bad = violations(module, found)
    assert not bad, f"{module} imports {bad}: against STYLE.md §2 (see LAYERS)"


def test_every_package_has_a_rule() -> None:
    missing = sorted({m for m, _ in MODULES if _layer(m) in (None, "berth")} - {"berth"})
    assert not missing, f"modules outside LAYERS: {missing}"


def test_allow_list_is_not_stale() -> None:
    """Each ALLOWED pair still exists: a fixed skip must leave the list."""
    have = {(m, i) for m, p in MODULES for i in imports_of(p.read_text(), m, p.name == "__init__.py")}
    stale = sorted(set(ALLOWED) - have)
    assert not stale, f"remove from ALLOWED (fixed): {stale}"


def test_rules_catch_a_planted_upward_import() -> None:
    assert violations("berth.oci.reference", {"berth.engine.containers"}) == ["berth.engine.containers"]
    assert violations("berth.runtime.plan", {"berth.network.nat"}) == ["berth.network.nat"]  # sibling
    assert violations("berth.cli.main", {"berth.daemon.main"}) == ["berth.daemon.main"]
    assert violations("berth.engine.exec", {"aiohttp.web"}) == ["aiohttp.web"]
    assert violations("berth.newthing.x", {"berth.errors"}) == ["berth.errors"]
    assert violations("berth.api.images", {"berth.image.unpack"}) == ["berth.image.unpack"]
    assert violations("berth.engine.exec", {"berth.runtime.shim.protocol", "berth.errors",
                                            "berth.schema.stdcopy", "json"}) == []
    assert violations("berth.runtime.shim.main", {"berth.schema.stdcopy"}) == []
    assert violations("berth.runtime.shim.main", {"berth.schema.containers"}) == ["berth.schema.containers"]


def test_planted_upward_import_in_a_copy_fails(tmp_path: Path) -> None:
    src = 'from berth.engine.containers import Containers\n\ndef f():\n    from berth.api import http\n'
    found = imports_of(src, "berth.oci.planted")
    assert violations("berth.oci.planted", found) == ["berth.api.http", "berth.engine.containers"]


# Import cycles hidden by imports inside functions (the registry server's was one; issue 11
# item 5). These remain; each is in code another step restructures.
CYCLES_ALLOWED = [
    {"berth.runtime.cgroups", "berth.runtime.cgroups.v1"},
    {"berth.build.builder", "berth.build.copy", "berth.build.run", "berth.build.service", "berth.build.steps"},
]


def import_cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(comp)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles_even_inside_functions() -> None:
    names = {m for m, _ in MODULES}
    graph = {m: {i for i in imports_of(p.read_text(), m, p.name == "__init__.py") if i in names}
             for m, p in MODULES}
    cycles = import_cycles(graph)
    assert [c for c in cycles if c not in CYCLES_ALLOWED] == []
    assert import_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]


def test_api_spawns_no_processes() -> None:
    spawners = {m for m, p in MODULES if m.startswith("berth.api")
                and ("subprocess" in imports_of(p.read_text(), m) or "create_subprocess" in p.read_text())}
    assert spawners == set(SPAWNS_ALLOWED), spawners ^ set(SPAWNS_ALLOWED)


def test_ctypes_only_in_linux() -> None:
    offenders = [m for m, p in MODULES if "ctypes" in imports_of(p.read_text(), m)
                 and not m.startswith("berth.linux")]
    assert not offenders, f"ctypes outside berth/linux/: {offenders}"


# Each module is imported in a process of its own: a helper preloads the third-party packages
# (never berth), then forks one child per module, a few at a time, and reports failures.
_IMPORT_EACH = r"""
import importlib, os, sys, traceback
for dep in ("msgspec", "aiohttp.web", "pyroute2", "zstandard", "bcrypt", "asyncio", "json"):
    try:
        importlib.import_module(dep)
    except ImportError:
        pass
assert not any(m == "berth" or m.startswith("berth.") for m in sys.modules)
mods, width, running, failed = sys.argv[1:], max(2, os.cpu_count() or 2), {}, []
def reap():
    pid, status = os.wait()
    m, r = running.pop(pid)
    err = os.read(r, 1 << 16).decode(errors="replace")
    os.close(r)
    if status:
        failed.append(f"{m}: {err.strip().splitlines()[-1] if err.strip() else status}")
for m in mods:
    while len(running) >= width:
        reap()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            importlib.import_module(m)
        except BaseException:
            os.write(w, traceback.format_exc().encode()[-4000:])
            os._exit(1)
        os._exit(0)
    os.close(w)
    running[pid] = (m, r)
while running:
    reap()
print("\n".join(sorted(failed)))
sys.exit(1 if failed else 0)
"""


def import_each(root: Path, modules: list[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([sys.executable, "-c", _IMPORT_EACH, *modules], capture_output=True,
                          text=True, cwd=root, env=env, timeout=300)


def test_every_module_imports_alone() -> None:
    mods = [m for m, _ in MODULES if not m.endswith("__main__")]
    r = import_each(ROOT, mods)
    assert r.returncode == 0, r.stdout + r.stderr


def test_import_cycle_is_caught(tmp_path: Path) -> None:
    pkg = tmp_path / "planted"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from planted.b import B\nA = 1\n")
    (pkg / "b.py").write_text("from planted.a import A\nB = 2\n")
    (pkg / "c.py").write_text("C = 3\n")
    r = import_each(tmp_path, ["planted.a", "planted.b", "planted.c"])
    assert r.returncode == 1
    assert r.stdout.splitlines()[0].startswith("planted.a: ImportError"), r.stdout
    assert "planted.c" not in r.stdout
