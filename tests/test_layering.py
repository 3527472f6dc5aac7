"""The console's packages keep the architecture's directions (docs/ARCHITECTURE.md, section
6): clients reach the engine only through the protocol, the engine knows no client, and no
module imports itself back in a circle, TYPE_CHECKING imports and function-local ones
included. Read from the source (ast), so nothing is imported to check it."""

from __future__ import annotations

import ast
from pathlib import Path

CONSOLE = Path(__file__).resolve().parents[1] / "console"

# package -> the console packages it may import (besides itself, contracts and libraries)
ALLOWED = {
    "protocol": set(),                       # what supervisor and clients share: the bottom
    "store": {"protocol"},
    "gpu": set(),
    "backends": {"protocol"},
    "runner": set(),
    "kinds": {"runner", "protocol"},          # protocol: the results views a kind reads
    "engine": {"protocol", "store", "gpu", "backends", "kinds"},
    "bridges": {"protocol", "store"},
    # `foldwatch pack`/`import`: fold folders between machines (kinds: where each keeps a
    # fold; runner: nnU-Net's log); it tells a supervisor through the protocol
    "transfer": {"protocol", "store", "runner", "kinds"},
    "supervisor": {"protocol", "store", "engine", "bridges"},
    "clients": {"protocol"},                 # text tables, changes, lines
    "clients.tui": {"protocol", "clients", "store"},
    "clients.web": {"protocol", "clients"},
    # the command line is the top: it starts supervisors, validates experiments, and shows
    # an experiment no supervisor ever ran (an offline engine view)
    "clients.cli": {"protocol", "clients", "clients.tui", "clients.web", "store", "engine",
                    "kinds", "bridges", "supervisor", "transfer"},
}


def package(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "console" or len(parts) < 2:
        return None
    if parts[1] == "clients" and len(parts) > 2 and parts[2] in ("cli", "tui", "web"):
        return f"clients.{parts[2]}"
    return parts[1]


def modules() -> dict[str, Path]:
    out = {}
    for f in CONSOLE.rglob("*.py"):
        mod = ".".join(f.relative_to(CONSOLE.parent).with_suffix("").parts)
        out[mod.removesuffix(".__init__")] = f
    return out


def imports(path: Path, mod: str) -> set[str]:
    """Every console module `mod` imports, wherever the import statement is."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:                       # relative: from its package
                base = ".".join(mod.split(".")[:-node.level] + ([base] if base else []))
            out.add(base)
            out |= {f"{base}.{a.name}" for a in node.names}
    return {m for m in out if m.startswith("console")}


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {m: {i for i in imports(p, m) if i in mods and i != m} for m, p in mods.items()}


def test_every_package_is_known_and_imports_only_downwards():
    mods = modules()
    assert {package(m) for m in mods if package(m)} <= set(ALLOWED), "a new package: add it"
    wrong = []
    for m, deps in graph().items():
        src = package(m)
        for d in deps:
            dst = package(d)
            if dst and dst != src and dst not in ALLOWED.get(src, set()):
                wrong.append(f"{m} -> {d}")
    assert not wrong, "imports against the architecture:\n" + "\n".join(sorted(wrong))


def test_no_import_cycles():
    g = graph()
    # a package's __init__ importing its own modules is not a cycle of logic
    g = {m: {d for d in deps if not (m.startswith(d + ".") and g.get(d) is not None)}
         for m, deps in g.items()}
    seen, stack, cycles = set(), [], []

    def visit(m):
        if m in stack:
            cycles.append(stack[stack.index(m):] + [m])
            return
        if m in seen:
            return
        seen.add(m)
        stack.append(m)
        for d in sorted(g.get(m, ())):
            visit(d)
        stack.pop()
    for m in sorted(g):
        visit(m)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_no_module_is_over_400_lines():
    big = {str(p.relative_to(CONSOLE.parent)): n for p in CONSOLE.rglob("*.py")
           if (n := len(p.read_text().splitlines())) > 400}
    assert not big, big
