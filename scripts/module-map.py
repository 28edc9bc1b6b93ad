#!/usr/bin/env python3
"""The module map of the daemon (daemon/src) and the trainer (export/hark_export): which module
uses which, printed as a table, and a non-zero exit when any modules use each other in a cycle.

Rust: a module is a file (`foo.rs` or `foo/mod.rs`); `crate::a::b` names module a/b when that
file exists, else a; `super::` and a parent's own `child::` count too; unit-test modules don't. Python: a module is a file of the package; imports inside functions count.
Also fails on a daemon function of more than 80 lines without a `// Long ...` comment above
its signature saying why, and on a daemon folder that uses one above it in LAYERS (a
back-arrow: the daemon reads top-down, from the entry points to the ground floor).
"""

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def rust_modules(src: Path) -> dict[str, set[str]]:
    files = {}
    for f in sorted(src.rglob("*.rs")):
        rel = f.relative_to(src).with_suffix("")
        name = "/".join(rel.parts[:-1] if rel.name == "mod" else rel.parts)
        files[name or "main"] = f
    graph = {}
    for name, f in files.items():
        # unit tests (`#[cfg(test)] mod tests`, at the end of a file) may use anything
        text = re.split(r"#\[cfg\(test\)\]\s*mod tests\b", f.read_text())[0]
        uses = set()
        # `crate::a::b::Item` (`hark::` in main.rs, the binary over the library), and
        # `use crate::a::{b, c}` groups one level deep
        root = "hark" if name == "main" else "crate"
        for path in re.findall(rf"{root}::((?:[a-z_][a-z0-9_]*::)*[a-z_][a-z0-9_]*)", text):
            parts = path.split("::")
            for k in range(len(parts), 0, -1):
                if "/".join(parts[:k]) in files:
                    uses.add("/".join(parts[:k]))
                    break
        for head, group in re.findall(rf"{root}::((?:[a-z_][a-z0-9_]*::)*)\{{([^}}]*)\}}", text):
            for item in group.split(","):
                cand = (head.replace("::", "/") + item.strip().split("::")[0]).strip("/")
                if cand in files:
                    uses.add(cand)
        # a parent declaring `mod child;` is not a use; `super::x` inside a folder is
        for path in re.findall(r"\bsuper::([a-z_][a-z0-9_]*)", text):
            parent = name.rsplit("/", 1)[0] if "/" in name and not f.name == "mod.rs" else ""
            if f.name == "mod.rs":
                parent = name.rsplit("/", 1)[0] if "/" in name else ""
            cand = f"{parent}/{path}".strip("/") if parent else path
            if cand in files:
                uses.add(cand)
            elif parent in files:
                uses.add(parent)
        # the crate root and folder modules name their children without `crate::`
        if f.name in ("lib.rs", "mod.rs"):
            for child in re.findall(r"^\s*(?:pub )?mod ([a-z_][a-z0-9_]*);", text, re.M):
                full = f"{name}/{child}" if f.name == "mod.rs" else child
                if full in files and re.search(rf"\b{child}::", text):
                    uses.add(full)
        uses.discard(name)
        graph[name] = uses
    return graph


def python_modules(pkg: Path) -> dict[str, set[str]]:
    names = {f.stem for f in pkg.glob("*.py") if f.stem != "__init__"}
    graph = {}
    for n in sorted(names):
        text = (pkg / f"{n}.py").read_text()
        uses = set(re.findall(r"from hark_export\.([a-z_]+) import", text))
        uses |= set(re.findall(r"from hark_export import ([a-z_]+)", text))
        uses |= set(re.findall(r"import hark_export\.([a-z_]+)", text))
        graph[n] = (uses & names) - {n}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


# The daemon's folders (and top-level modules) from the top down: each may use those below
# it, never one above. The ground floor (config, stats) is written or read by everyone.
LAYERS = [
    {"main", "lib", "fuzz"},
    {"cli"},
    {"service"},
    {"sink"},
    {"pipeline"},
    {"sounds"},
    {"source"},
    {"model"},
    {"decode"},
    {"config", "stats"},
]


def layer(module: str) -> int:
    top = module.split("/")[0]
    return next(i for i, names in enumerate(LAYERS) if top in names)


def back_arrows(graph: dict[str, set[str]]) -> list[str]:
    """Uses of a folder in a higher layer than the user's own (or in an unlisted folder)."""
    out = []
    for a in sorted(graph):
        for b in sorted(graph[a]):
            try:
                if a.split("/")[0] != b.split("/")[0] and layer(b) <= layer(a):
                    out.append(f"{a} -> {b}")
            except StopIteration:
                out.append(f"{a} -> {b} (a folder missing from LAYERS)")
    return out


LONG = 80  # lines; a longer function says why in a `// Long ...` comment above its signature


def long_functions(src: Path) -> list[str]:
    """Functions of more than LONG lines without a `// Long` comment saying why."""
    out = []
    for f in sorted(src.rglob("*.rs")):
        lines = f.read_text().split("\n")
        i = 0
        while i < len(lines):
            m = re.match(r"^(\s*)(pub(\([a-z]+\))? )?(async )?fn (\w+)", lines[i])
            if not m:
                i += 1
                continue
            head = i
            while head < len(lines) and not lines[head].rstrip().endswith(("{", ";")):
                head += 1
            if head < len(lines) and lines[head].rstrip().endswith(";"):  # a declaration
                i = head + 1
                continue
            indent = " " * len(m.group(1))
            end = head + 1
            while end < len(lines) and lines[end] != indent + "}":
                end += 1
            above = lines[i - 1].strip() if i else ""
            if end - i + 1 > LONG and not above.startswith("// Long") and \
                    not (i > 1 and lines[i - 2].strip().startswith("// Long")):
                out.append(f"{f.relative_to(src)}:{i + 1} {m.group(5)} ({end - i + 1} lines)")
            i = end + 1
    return out


def main() -> int:
    failed = False
    for entry in long_functions(ROOT / "daemon" / "src"):
        print(f"LONG FUNCTION without a comment saying why: daemon/src/{entry}")
        failed = True
    for title, graph in (("daemon/src", rust_modules(ROOT / "daemon" / "src")),
                         ("export/hark_export", python_modules(ROOT / "export" / "hark_export"))):
        print(f"## {title}: module -> modules it uses")
        for name in sorted(graph):
            print(f"  {name:24s} {', '.join(sorted(graph[name])) or '-'}")
        found = cycles(graph)
        for c in found:
            print(f"CYCLE in {title}: {' <-> '.join(c)}")
        failed |= bool(found)
        print(f"{title}: {'no module cycle' if not found else f'{len(found)} cycle(s)'}")
        if title == "daemon/src":
            arrows = back_arrows(graph)
            for a in arrows:
                print(f"BACK-ARROW in {title}: {a}")
            failed |= bool(arrows)
            print(f"{title}: {'no folder-level back-arrow' if not arrows else f'{len(arrows)} back-arrow(s)'}")
        print()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
