"""Tests of the package's layout: who may import whom, and who knows the run directory's names.

The import graph is read from the source with `ast` (module-level imports and the ones inside
functions alike), so these checks import nothing and see imports that only run on some paths.
"""

import ast
from pathlib import Path

import gptjax

PACKAGE = Path(gptjax.__file__).resolve().parent
# Command modules hold only command lines: nothing may depend on them.
COMMANDS = {
    "gptjax.main",
    "gptjax.generate",
    "gptjax.compare",
    "gptjax.experiment",
    "gptjax.evaluate",
    "gptjax.convert",
    "gptjax.inspect",
    "gptjax.tokenizer.__main__",
}
# The run directory's file names (gptjax.runs.rundir owns the layout).
RUN_DIR_NAMES = {
    "config.json",
    "run_info.json",
    "tokenizer.bpe",
    "metrics.jsonl",
    "tb",
    "checkpoints",
    "samples.txt",
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(name: str) -> set[str]:
    """The gptjax modules that ``name`` imports, anywhere in its code."""
    path = MODULES[name]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:  # relative: from the module's own package, up level - 1 packages
                package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                base = package[: len(package) - node.level + 1]
                module = ".".join([*base, module] if module else base)
            submodules = {f"{module}.{a.name}" for a in node.names} & set(MODULES)
            found.update(submodules)
            # ``from pkg import sub`` needs the submodule; other names need the module itself.
            if len(submodules) < len(node.names):
                found.add(module)
    return found & set(MODULES)


def test_the_module_list_is_complete():
    assert set(MODULES) >= {"gptjax", "gptjax.runs.rundir", "gptjax.training.loop"} | COMMANDS
    assert "gptjax.runs.rundir" in _imports("gptjax.runs.checkpoint")
    assert "gptjax.training.loop" in _imports("gptjax.main")  # an import inside a function


def _find_cycle(graph: dict[str, list[str]]) -> list[str] | None:
    """A cycle of ``graph`` (node -> successors) as [a, b, ..., a], or None when it has none."""
    done, path = set(), []

    def visit(node):
        if node in path:
            return path[path.index(node) :] + [node]
        if node in done:
            return None
        path.append(node)
        for successor in graph[node]:
            cycle = visit(successor)
            if cycle:
                return cycle
        path.pop()
        done.add(node)
        return None

    for node in graph:
        cycle = visit(node)
        if cycle:
            return cycle
    return None


def test_find_cycle():
    assert _find_cycle({"a": ["b"], "b": ["c"], "c": []}) is None
    assert _find_cycle({"a": ["b"], "b": ["c"], "c": ["b"]}) == ["b", "c", "b"]


def test_the_import_graph_has_no_cycle():
    graph = {name: sorted(_imports(name) - {name}) for name in MODULES}
    cycle = _find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_module_imports_a_command_module():
    offenders = {name: sorted(_imports(name) & COMMANDS) for name in MODULES}
    assert {name: found for name, found in offenders.items() if found} == {}


def test_only_rundir_names_the_run_directory_files():
    named = {}
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        constants = {
            node.value
            for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
        }
        if constants & RUN_DIR_NAMES - OTHER_LAYOUTS.get(name, set()):
            named[name] = sorted(constants & RUN_DIR_NAMES)
    assert set(named) == {"gptjax.runs.rundir"}, named


# Modules that name a file of another program's folder, which shares a run directory's name.
OTHER_LAYOUTS = {
    "gptjax.convert": {"config.json"},  # a Hugging Face model folder's
    "gptjax.model.hf": {"config.json"},
}


# docs/design.md's layers, top to bottom: a module imports only from its own layer and below.
LAYERS = [
    ("commands", COMMANDS),
    (
        "research",
        {"gptjax.runs.compare", "gptjax.runs.plots", "gptjax.runs.experiment"}
        | {n for n in MODULES if n.startswith("gptjax.inspection")},
    ),
    ("training", {n for n in MODULES if n.startswith("gptjax.training")}),
    (
        "run storage",
        {
            "gptjax.runs",
            "gptjax.runs.rundir",
            "gptjax.runs.checkpoint",
            "gptjax.runs.run",
            "gptjax.runs.provenance",
        },
    ),  # fmt: skip
    ("generation", {n for n in MODULES if n.startswith("gptjax.generation")}),
    ("tokenizer", {n for n in MODULES if n.startswith("gptjax.tokenizer")} - COMMANDS),
    ("model", {n for n in MODULES if n.startswith("gptjax.model")}),
    ("package", {"gptjax", "gptjax.errors"}),  # errors: the exception types every layer raises
]


def test_every_module_imports_only_its_own_layer_and_the_layers_below():
    assert set().union(*(members for _, members in LAYERS)) == set(MODULES)
    rank = {name: i for i, (_, members) in enumerate(LAYERS) for name in members}
    upward = {name: sorted(m for m in _imports(name) if rank[m] < rank[name]) for name in MODULES}
    assert {name: found for name, found in upward.items() if found} == {}
    # The two foundations do not know each other.
    assert not any(m.startswith("gptjax.model") for n in LAYERS[5][1] for m in _imports(n))
    assert not any(m.startswith("gptjax.tokenizer") for n in LAYERS[6][1] for m in _imports(n))
