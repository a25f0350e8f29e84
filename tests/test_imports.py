"""The app's imports follow the data flow: every module imports on its own, in the order
docs/pipeline.md reads them, no module of the app imports another inside a function
to dodge a cycle, and the module-level imports between the app's modules form no cycle."""

import ast
import importlib
import pkgutil
import re
from pathlib import Path

import pytest

import moderation

PACKAGE = Path(moderation.__file__).parent
# The order a newcomer reads the app in: docs/pipeline.md, "Reading order", names the
# same rooms in the same order (test_the_reading_order_in_the_docs_is_this_one).
FLOW = [
    "moderation.conf",
    "moderation.registry",
    "moderation.visible_text",
    "moderation.models",
    "moderation.exceptions",
    "moderation.uploads",
    "moderation.signals",
    "moderation.signal_handlers",
    "moderation.transitions",
    "moderation.db",
    "moderation.drains",
    "moderation.queue",
    "moderation.tasks",
    "moderation.claims",
    "moderation.embedders",
    "moderation.usage",
    "moderation.scoring",
    "moderation.duplicates",
    "moderation.thresholds",
    "moderation.vectors",
    "moderation.statements",
    "moderation.search",
    "moderation.evaluation",
    "moderation.holds",
    "moderation.notes",
    "moderation.admin",
    "moderation.api",
    "moderation.health",
    "moderation.checks",
    "moderation.operations",
    "moderation.management.base",
    "moderation.apps",
]


def app_modules() -> list[str]:
    names = ["moderation"]
    for info in pkgutil.walk_packages([str(PACKAGE)], prefix="moderation."):
        if ".migrations" not in info.name:
            names.append(info.name)
    return names


def source_of(name: str) -> Path:
    relative = Path(*name.split(".")[1:])
    package = PACKAGE / relative / "__init__.py"
    return package if package.exists() else (PACKAGE / relative).with_suffix(".py")


def imported_app_modules(name: str, node: ast.AST) -> set[str]:
    """The app's modules an import statement names (relative imports resolved)."""
    found = set()
    package = name if source_of(name).name == "__init__.py" else name.rsplit(".", 1)[0]
    if isinstance(node, ast.Import):
        found |= {alias.name for alias in node.names if alias.name.startswith("moderation")}
    elif isinstance(node, ast.ImportFrom):
        if node.level:
            base = package.split(".")
            base = base[: len(base) - (node.level - 1)]
            module = ".".join([*base, node.module] if node.module else base)
        else:
            module = node.module or ""
        if module.startswith("moderation"):
            found.add(module)
            # `from . import tasks` names a module, not an attribute
            found |= {f"{module}.{alias.name}" for alias in node.names if source_of(f"{module}.{alias.name}").exists()}
    return found


def test_every_module_of_the_flow_exists_and_imports_in_order():
    for name in FLOW:
        importlib.import_module(name)


def test_the_flow_names_every_room_of_the_app():
    """A new module or package must find its place in the reading order."""
    rooms = {name for name in app_modules() if name.count(".") == 1} - {"moderation.management"}
    assert rooms | {"moderation.management.base"} == set(FLOW)


def test_the_reading_order_in_the_docs_is_this_one():
    text = (PACKAGE.parent / "docs" / "pipeline.md").read_text()
    section = text.split("## Reading order", 1)[1].split("\n## ", 1)[0]
    listed = re.findall(r"^- `moderation/([\w/]+?)(?:\.py|/)`", section, flags=re.MULTILINE)
    assert ["moderation." + path.replace("/", ".") for path in listed] == FLOW


@pytest.mark.parametrize("name", app_modules())
def test_no_module_imports_the_app_inside_a_function(name):
    tree = ast.parse(source_of(name).read_text())
    late = []
    for function in ast.walk(tree):
        if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for node in ast.walk(function):
            ready = name == "moderation.apps" and function.name == "ready"  # Django's own place for it
            if isinstance(node, ast.Import | ast.ImportFrom) and imported_app_modules(name, node) and not ready:
                late.append(f"{function.name}: {ast.unparse(node)}")
    assert not late, f"{name} imports the app inside functions: {late}"


def test_the_app_modules_import_each_other_without_a_cycle():
    modules = set(app_modules())
    graph = {}
    for name in modules:
        tree = ast.parse(source_of(name).read_text())
        edges = set()
        for node in tree.body:
            if isinstance(node, ast.Import | ast.ImportFrom):
                edges |= {target for target in imported_app_modules(name, node) if target in modules}
        # A package imports its __init__ implicitly; that is not an edge of its own.
        graph[name] = edges - {name}
    visiting, done, cycles = set(), set(), []

    def visit(node, path):
        visiting.add(node)
        for target in sorted(graph[node]):
            if target in visiting:
                cycles.append([*path[path.index(target) :], target])
            elif target not in done:
                visit(target, [*path, target])
        visiting.discard(node)
        done.add(node)

    for name in sorted(graph):
        if name not in done:
            visit(name, [name])
    # A package's __init__ that re-exports its submodules, imported by those submodules
    # through the package, is Python's normal layout, not a cycle of rooms.
    cycles = [c for c in cycles if not all(part.startswith(c[0]) or c[0].startswith(part) for part in c)]
    assert not cycles, f"import cycles: {cycles}"
