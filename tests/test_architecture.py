"""The layering rules of ARCHITECTURE.md, read from the source (AST), so a violation fails here.

* no import cycle among our modules (every import counts: top-level, inside functions, and
  under ``TYPE_CHECKING``, since a lazy import is still a dependency);
* ``evaluators`` never imports Optuna, Ray or the search's orchestration;
* the samplers and the base layer (front, metrics, errors, io) never reach torch, even through
  our own modules;
* nobody imports another package's underscore names; Optuna's private modules, which have no
  public equivalent, are imported in one place each;
* only command-line modules (``__main__``) import ``nas.cli``, and nothing imports a ``__main__``;
* no file in ``nas/`` or ``evaluators/`` is over 400 lines without its docstring saying why.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("nas", "evaluators")
MAX_LINES = 400
# The search's orchestration, which the evaluator must not know about (DESIGN.md, "The pipeline").
ORCHESTRATION = ("nas.search", "nas.backends", "nas.trial_runner", "nas.context", "nas.study", "nas.samplers",
                 "nas.scheduling", "nas.gate", "nas.pareto", "nas.reports", "nas.export", "nas.train")
NO_TORCH = ("nas.samplers", "nas.front", "nas.metrics", "nas.errors", "nas.io")
# Optuna has no public name for these; each is imported by exactly one of our modules.
THIRD_PARTY_PRIVATE = {"optuna._hypervolume": "nas.front", "optuna.storages._heartbeat": "nas.study",
                       "optuna.artifacts._upload": "nas.artifacts"}


@dataclass(frozen=True)
class Import:
    importer: str
    module: str  # the imported module (a name in it resolved to the module where it is one)
    names: tuple[str, ...]  # names taken with `from module import ...`
    line: int


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def our_files(*roots: str) -> list[Path]:
    return sorted(p for root in roots for p in (ROOT / root).rglob("*.py"))


MODULES = {module_name(p): p for p in our_files(*PACKAGES)}


def imports_of(path: Path) -> Iterator[Import]:
    importer = module_name(path)
    package = importer if path.name == "__init__.py" else importer.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(importer, alias.name, (), node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against the importer's package
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names = tuple(a.name for a in node.names)
            submodules = [f"{base}.{n}" for n in names if f"{base}.{n}" in MODULES]
            for sub in submodules:
                yield Import(importer, sub, (), node.lineno)
            rest = tuple(n for n in names if f"{base}.{n}" not in MODULES)
            if rest or not submodules:
                yield Import(importer, base, rest, node.lineno)


ALL_IMPORTS = [imp for path in MODULES.values() for imp in imports_of(path)]


def internal(name: str) -> bool:
    return name.split(".")[0] in PACKAGES


def graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {m: set() for m in MODULES}
    for imp in ALL_IMPORTS:
        if internal(imp.module) and imp.module in MODULES and imp.module != imp.importer:
            edges[imp.importer].add(imp.module)
    return edges


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 visiting, 2 done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def reachable(start: str, edges: dict[str, set[str]]) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        node = todo.pop()
        if node not in seen:
            seen.add(node)
            todo += edges[node]
    return seen


def test_the_checker_sees_the_whole_package() -> None:
    assert {"nas.search", "nas.backends.local", "nas.backends.ray_tune.searcher", "evaluators.proxy"} <= set(MODULES)
    edges = graph()
    assert "nas.backends.local" in edges["nas.search"] | reachable("nas.search", edges)
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_no_import_cycle() -> None:
    cycle = find_cycle(graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_evaluator_knows_nothing_of_optuna_ray_or_the_search() -> None:
    bad = [f"{imp.importer}:{imp.line} imports {imp.module}" for imp in ALL_IMPORTS
           if imp.importer.startswith("evaluators")
           and (within(imp.module, ("optuna", "ray")) or within(imp.module, ORCHESTRATION))]
    assert not bad, bad


def test_samplers_and_the_base_layer_never_reach_torch() -> None:
    edges = graph()
    bad = []
    for start in (m for m in MODULES if within(m, NO_TORCH)):
        for module in reachable(start, edges):
            bad += [f"{start} reaches {module}:{imp.line}, which imports {imp.module}" for imp in ALL_IMPORTS
                    if imp.importer == module and within(imp.module, ("torch",))]
    assert not bad, bad


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _in_package(importer: str, package: str) -> bool:
    """Whether ``importer`` is a module of ``package`` (or one of its subpackages)."""
    return importer == package or importer.startswith(package + ".")


def test_no_underscore_names_across_packages() -> None:
    bad = []
    for path in [*MODULES.values(), *our_files("benchmarks")]:
        for imp in imports_of(path):
            parts = imp.module.split(".")
            if imp.importer.startswith("benchmarks.") and (ROOT / "benchmarks" / f"{parts[0]}.py").is_file():
                parts = ["benchmarks", *parts]  # the scripts' own helper modules, beside them
            module = ".".join(parts)
            if parts[0] not in (*PACKAGES, "benchmarks"):  # another project's privates
                private = any(map(_private, parts)) or any(map(_private, imp.names))
                if private and THIRD_PARTY_PRIVATE.get(imp.module) != imp.importer:
                    bad.append(f"{imp.importer}:{imp.line} imports the private {imp.module} {imp.names}")
                continue
            # A private module belongs to the package it sits in; private names to their module's package.
            cut = next((i for i, part in enumerate(parts) if _private(part)), None)
            if cut is not None and not _in_package(imp.importer, ".".join(parts[:cut])):
                bad.append(f"{imp.importer}:{imp.line} imports the private module {module}")
            private_names = [n for n in imp.names if _private(n)]
            home = module if module in MODULES and MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
            if private_names and not _in_package(imp.importer, home):
                bad.append(f"{imp.importer}:{imp.line} takes {private_names} from {module}")
    assert not bad, bad


def test_only_command_lines_use_the_cli_helpers_and_nothing_imports_a_main() -> None:
    bad = [f"{imp.importer}:{imp.line} imports {imp.module}" for imp in ALL_IMPORTS
           if (imp.module == "nas.cli" and not imp.importer.endswith("__main__"))
           or (imp.module.endswith("__main__") and internal(imp.module))]
    assert not bad, bad


@pytest.mark.parametrize("path", our_files(*PACKAGES), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_long_file_without_a_reason(path: Path) -> None:
    lines = path.read_text().count("\n")
    if lines > MAX_LINES:
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        assert f"over {MAX_LINES} lines" in doc, f"{lines} lines and no reason stated in the module docstring"
