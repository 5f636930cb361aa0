"""The source tree's import rules, checked from the source (AST only: no module is imported or run).

Each package of src/airflow_resource runs in one place (docs/architecture.md has the map) and may import
only what that place has: RULES below is the one table of those rules. Every import counts, the ones
inside functions too (a function-level import runs as soon as the function does, and it is how an
import cycle hides). "Standard library" is `sys.stdlib_module_names`; "third party" is any other
top-level name but `airflow` and `airflow_resource`. A planted tree at the end shows the checker
reports each kind of break.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

PACKAGE = "airflow_resource"
SRC = Path(__file__).resolve().parents[2] / "src" / PACKAGE
CLI = f"{PACKAGE}.cli"
ANY = ("*",)  # every airflow_resource module but the CLI package
# What Airflow's own API hands out, so present wherever Airflow is: its models and create_session() are
# SQLAlchemy's (standalone/requeue_tasks.py builds its query with sqlalchemy.select).
AIRFLOW_API = ("airflow", "sqlalchemy")


@dataclass(frozen=True)
class Rule:
    """What the modules of one context may import, beyond the standard library (always allowed)."""

    runs_in: str
    own: tuple[str, ...]       # airflow_resource modules it may import: a dotted prefix covers its submodules
    airflow: bool = False      # `airflow`, `airflow.*` and AIRFLOW_API
    third_party: bool = False  # every other installed distribution (rich, psutil, requests, supervisor, ...)
    cli: bool = False          # `airflow_resource.cli`: nothing may, but the CLI itself and __main__


BASE = (f"{PACKAGE}.errors", f"{PACKAGE}.paths", f"{PACKAGE}.printer", f"{PACKAGE}.api", f"{PACKAGE}.config",
        f"{PACKAGE}.safe_files")
IN_AIRFLOW = Rule("inside Airflow's processes (scheduler, api-server, dag-processor, triggerer, workers, "
                  "task processes)", own=(f"{PACKAGE}.in_airflow",), airflow=True)

# The rules, by context. A module's context is its path under airflow_resource/ when that path has an
# entry (a file given its own rule), else the first component of that path (its package, or the
# top-level file). A package or top-level file with no entry is itself a violation: classify it here.
# Only what runs inside Airflow or in the venv beside it imports Airflow: the CLI and the daemons reach
# it through its REST API and its command line (importing it costs seconds).
RULES: dict[str, Rule] = {
    # Python runs airflow_resource/__init__.py before any module of the package, inside Airflow too.
    "__init__.py": Rule("in every import of the package, inside Airflow's processes too", own=()),
    # `AsyncCallback("airflow_resource.alerts.deadline_missed")`: imported by the triggerer.
    "alerts.py": IN_AIRFLOW,
    # `pytest -p airflow_resource.testing`: a DAG author's pytest in the venv.
    "testing.py": Rule("in a DAG author's pytest, in the venv", own=ANY, airflow=True, third_party=True),
    "__main__.py": Rule("in the CLI (`python -m airflow_resource`)", own=ANY, third_party=True, cli=True),
    # The shared base: whatever imports it (the CLI, the daemons). api.py reads the settings.
    "errors.py": Rule("wherever it is imported (the shared base)", own=BASE, third_party=True),
    "paths.py": Rule("wherever it is imported (the shared base)", own=BASE, third_party=True),
    "printer.py": Rule("wherever it is imported (the shared base)", own=BASE, third_party=True),
    "api.py": Rule("wherever it is imported (the shared base)", own=BASE, third_party=True),
    # Writes that never follow a link another user planted: config's secrets writer uses it too.
    "safe_files.py": Rule("wherever it is imported (the shared base)", own=(f"{PACKAGE}.errors",)),
    "cli": Rule("in the CLI, as root or the operator", own=ANY, third_party=True, cli=True),
    # The CLI and the daemons read the settings: config sits under everything but the base's errors and
    # paths, so it may not reach up into stack/dags/... (that is how airflow_config's cycle came about).
    # It may read in_airflow's constants (the alert spool's names): in_airflow imports nothing of ours.
    "config": Rule("in the CLI and the daemons", own=(f"{PACKAGE}.config", f"{PACKAGE}.errors", f"{PACKAGE}.paths",
                                                    f"{PACKAGE}.in_airflow", f"{PACKAGE}.safe_files"),
                   third_party=True),
    "stack": Rule("in the CLI, as root or the operator", own=ANY, third_party=True),
    "dags": Rule("in the CLI (the DAG check's child and the testing helpers: in the venv, with Airflow)",
                 own=ANY, airflow=True, third_party=True),
    "logs": Rule("in the CLI, as root or the operator", own=ANY, third_party=True),
    "backup": Rule("in the CLI and the backup daemon", own=ANY, third_party=True),
    "bench": Rule("in the CLI (`bench`)", own=ANY, third_party=True),
    # The audit trail: the CLI's commands record their actions (any package of the CLI's side may call it).
    "audit": Rule("in the CLI, as root or the operator", own=ANY, third_party=True),
    # Users, roles and teams through the FAB auth manager's REST API: the CLI (and `content add --team`).
    "access": Rule("in the CLI, as root or the operator", own=ANY, third_party=True),
    "daemons": Rule("in our supervised daemons, as the service user (the backup schedule as root)", own=ANY,
                    third_party=True),
    "in_airflow": IN_AIRFLOW,
    # The login guards: the api-server's middleware keeps its counters in Redis (redis-py, which Airflow's
    # Celery stack installs); Flower's runs inside Flower (tornado, flower).
    "in_airflow/login_guard_plugin.py": Rule("inside the api-server", own=(f"{PACKAGE}.in_airflow",), airflow=True,
                                             third_party=True),
    "in_airflow/flower_guard.py": Rule("inside Flower", own=(f"{PACKAGE}.in_airflow",), airflow=True, third_party=True),
    # Copied to the home or piped to the venv's Python as source: the package is not importable there.
    "standalone": Rule("as source copied or piped to the venv's Python", own=(), airflow=True),
    # ... except the package's __init__, the CLI-side reader of those scripts' source.
    "standalone/__init__.py": Rule("in the CLI (reads the scripts' source)", own=BASE, third_party=True),
}


@dataclass(frozen=True)
class Import:
    module: str   # the importing module, dotted
    path: Path
    line: int
    target: str   # what it imports, dotted (resolved to a module of ours when it is one)


@dataclass(frozen=True)
class Violation:
    path: Path
    line: int
    rule: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.rule}"


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules_of(root: Path) -> dict[str, Path]:
    return {module_name(root, p): p for p in sorted(root.rglob("*.py"))}


def imports_of(root: Path, path: Path, known: dict[str, Path]) -> list[Import]:
    """Every import statement of the file, at any depth, resolved: `from a.b import c` is the module
    a.b.c when that is a module of the tree, else a.b; relative imports against the file's package."""
    me = module_name(root, path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [Import(me, path, node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.append(Import(me, path, node.lineno, sub if sub in known else base))
    return found


def context_of(root: Path, path: Path) -> str:
    rel = path.relative_to(root).as_posix()
    return rel if rel in RULES else rel.split("/")[0]


def _allowed_own(rule: Rule, imp: Import) -> bool:
    if imp.target == CLI or imp.target.startswith(CLI + "."):
        return rule.cli
    if rule.own == ANY:
        return True
    return any(imp.target == p or imp.target.startswith(p + ".") for p in rule.own)


def rule_violations(root: Path, rules: dict[str, Rule] = RULES) -> list[Violation]:
    known = modules_of(root)
    out = []
    for path in known.values():
        ctx = context_of(root, path)
        rule = rules.get(ctx)
        if rule is None:
            out.append(Violation(path, 1, f"no import rule for {ctx!r}: add it to RULES in tests/unit/test_layout.py"))
            continue
        for imp in imports_of(root, path, known):
            top = imp.target.split(".")[0]
            if top == "__future__" or top in sys.stdlib_module_names:
                continue
            if top == PACKAGE:
                if not _allowed_own(rule, imp):
                    what = "the CLI package" if imp.target == CLI or imp.target.startswith(CLI + ".") else imp.target
                    out.append(Violation(path, imp.line, f"[{ctx}] imports {what}; {ctx} runs {rule.runs_in} "
                                                         f"and may import {_may(rule)}"))
            elif top in AIRFLOW_API:
                if not rule.airflow:
                    out.append(Violation(path, imp.line, f"[{ctx}] imports Airflow ({imp.target}); it may import "
                                                         f"{_may(rule)}"))
            elif not rule.third_party:
                out.append(Violation(path, imp.line, f"[{ctx}] imports the third-party {imp.target}; {ctx} runs "
                                                     f"{rule.runs_in} and may import {_may(rule)}"))
    return out


def _may(rule: Rule) -> str:
    parts = ["the standard library"]
    if rule.third_party:
        parts.append("third-party packages")
    if rule.airflow:
        parts.append("Airflow (" + ", ".join(AIRFLOW_API) + ")")
    if rule.own == ANY:
        parts.append("any module of ours but the CLI")
    elif rule.own:
        parts.append(", ".join(rule.own))
    else:
        parts.append("no module of ours")
    return ", ".join(parts)


def import_graph(root: Path) -> dict[str, dict[str, Import]]:
    """module -> {imported module of the tree -> the first import statement of it}."""
    known = modules_of(root)
    graph: dict[str, dict[str, Import]] = {m: {} for m in known}
    for module, path in known.items():
        for imp in imports_of(root, path, known):
            if imp.target in known and imp.target != module:
                graph[module].setdefault(imp.target, imp)
    return graph


def cycles(graph: dict[str, dict[str, Import]]) -> list[list[Import]]:
    """One cycle through each strongly connected component of more than one module (Tarjan), as the
    import statements that close it, shortest first from the component's first module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                components.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_shortest_cycle(graph, set(comp), comp[0]) for comp in sorted(components)]


def _shortest_cycle(graph: dict[str, dict[str, Import]], comp: set[str], start: str) -> list[Import]:
    """Breadth-first from start back to start inside the component."""
    paths: dict[str, list[Import]] = {start: []}
    queue = [start]
    while queue:
        v = queue.pop(0)
        for w, imp in sorted(graph[v].items()):
            if w == start:
                return paths[v] + [imp]
            if w in comp and w not in paths:
                paths[w] = paths[v] + [imp]
                queue.append(w)
    raise AssertionError(f"no cycle through {start}")


def cycle_violations(root: Path) -> list[Violation]:
    out = []
    for cycle in cycles(import_graph(root)):
        chain = " -> ".join([cycle[0].module] + [f"{imp.target} ({imp.path.name}:{imp.line})" for imp in cycle])
        out.append(Violation(cycle[0].path, cycle[0].line, f"import cycle: {chain}"))
    return out


def check(root: Path, rules: dict[str, Rule] = RULES) -> list[Violation]:
    return rule_violations(root, rules) + cycle_violations(root)


def _report(violations: list[Violation], root: Path) -> str:
    return "\n".join(str(Violation(v.path.relative_to(root.parent), v.line, v.rule)) for v in violations)


# ---------------------------------------------------------------- the real tree

def test_every_module_follows_its_context_import_rule():
    violations = rule_violations(SRC)
    assert not violations, "\n" + _report(violations, SRC)


def test_no_import_cycle_anywhere_function_level_imports_included():
    violations = cycle_violations(SRC)
    assert not violations, "\n" + _report(violations, SRC)


def test_every_package_and_top_level_file_has_a_rule():
    contexts = {context_of(SRC, p) for p in modules_of(SRC).values()}
    assert contexts <= set(RULES), sorted(contexts - set(RULES))


def test_public_paths_are_thin_re_exports():
    """What users already write keeps working: the pytest plugin and the deadline callback's path."""
    import airflow_resource.alerts
    import airflow_resource.in_airflow.alerts
    import airflow_resource.testing

    for name in ("assert_dags_import_cleanly", "dag_import_errors", "dag_bag"):
        assert callable(getattr(airflow_resource.testing, name)), name
    assert airflow_resource.alerts.deadline_missed is airflow_resource.in_airflow.alerts.deadline_missed


# ---------------------------------------------------------------- the checker catches a break

PLANTED = {
    "__init__.py": "",
    "errors.py": "class CommandError(Exception):\n    pass\n",
    "cli/__init__.py": "def main():\n    return 0\n",
    "in_airflow/__init__.py": "",
    "in_airflow/listener.py": ("import json\n"
                               "from airflow.plugins_manager import AirflowPlugin\n"
                               "from airflow_resource.in_airflow import spool\n"
                               "import requests\n"                                 # third party: refused
                               "from airflow_resource.stack import handle\n"),     # outside its context: refused
    "in_airflow/spool.py": "import os\n",
    "standalone/__init__.py": "from pathlib import Path\n",
    "standalone/child.py": ("import airflow\n"
                            "from airflow_resource.errors import CommandError\n"),  # no package import: refused
    "stack/__init__.py": "",
    "stack/handle.py": ("from airflow_resource.errors import CommandError\n"
                        "def stop():\n"
                        "    from airflow_resource.stack import shutdown\n"),       # a cycle, hidden in a function
    "stack/shutdown.py": "from airflow_resource.stack.handle import stop\n",
    "daemons/__init__.py": "",
    "daemons/janitor.py": "from ..cli import main\n",                               # the CLI, relatively: refused
    "widgets/__init__.py": "",                                                     # a package with no rule
}


def test_a_planted_tree_shows_each_kind_of_break(tmp_path):
    root = tmp_path / PACKAGE
    for rel, text in PLANTED.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    found = check(root)
    report = _report(found, root)
    print(report)
    by_place = {(v.path.relative_to(root).as_posix(), v.line): v.rule for v in found}
    assert "third-party requests" in by_place[("in_airflow/listener.py", 4)]
    assert "imports airflow_resource.stack.handle" in by_place[("in_airflow/listener.py", 5)]
    assert "imports airflow_resource.errors" in by_place[("standalone/child.py", 2)]
    assert "imports the CLI package" in by_place[("daemons/janitor.py", 1)]
    assert "no import rule for 'widgets'" in by_place[("widgets/__init__.py", 1)]
    assert by_place[("stack/handle.py", 3)] == ("import cycle: airflow_resource.stack.handle -> "
                                                "airflow_resource.stack.shutdown (handle.py:3) -> "
                                                "airflow_resource.stack.handle (shutdown.py:1)")
    # What each context may import is not reported: Airflow and in_airflow in in_airflow, Airflow in
    # standalone, the standalone reader's stdlib import, the errors module from the stack.
    assert len(found) == 6, report
