"""The package's modules import each other without cycles, function-local imports included.

The graph is read from the source (every ``import`` statement anywhere in a module, except
under ``if TYPE_CHECKING:``, which never runs), so a cycle hidden inside a function body
fails here too. docs/architecture.md describes the intended layers.
"""

import ast
import subprocess
import sys
from pathlib import Path

import mbs_layers

ROOT = Path(mbs_layers.__file__).parent
PACKAGE = "mbs_layers"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in ROOT.rglob("*.py")}


def _runtime_nodes(tree: ast.AST):
    """Every node except those under ``if TYPE_CHECKING:``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            stack.extend(node.orelse)
            continue
        yield node
        stack.extend(ast.iter_child_nodes(node))


def imports_of(name: str) -> set[str]:
    """The package modules ``name`` imports (``from pkg import sub`` counts as ``pkg.sub``)."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    return imports_in(path.read_text(), name, package)


def imports_in(source: str, name: str, package: str) -> set[str]:
    """The package modules imported anywhere in ``source`` (module ``name`` inside ``package``)."""
    found = set()
    for node in _runtime_nodes(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in MODULES else base)
    return {m for m in found if m in MODULES and m != name}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path ``[a, b, ..., a]``, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    path: list[str] = []

    def visit(node):
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = 2
        path.pop()
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_the_package_has_no_import_cycle():
    graph = {name: imports_of(name) for name in MODULES}
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_cycle_finder_sees_a_cycle_and_a_function_local_import():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from .base import StructuredLinear\n"
        "def load():\n    from . import kernels\n    from .formats import lowrank\n"
    )
    assert imports_in(source, "mbs_layers.registry", "mbs_layers") == {
        "mbs_layers.kernels",
        "mbs_layers.formats.lowrank",
    }


def test_registry_is_the_bottom():
    """The registry imports only the argument checks, so every module can import it."""
    assert imports_of("mbs_layers.registry") <= {"mbs_layers.validation"}
    assert imports_of("mbs_layers.validation") == set()


def test_importing_the_package_does_not_import_torch():
    code = "import sys, mbs_layers, mbs_layers.registry; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


# A sweep's stages in the order its data flows (docs/architecture.md, "Data flow of a sweep"):
# preset -> plan -> measure -> record. A stage imports the Point it passes on, the device
# instruments (timer, peaks, nvml, energy, environment) and the stage it hands its output to,
# never a stage its input came from: that input arrives as an argument. Only the runners
# (run_sweep, the Ray driver) join the preset, the plan and the measuring session.
SWEEP_STAGES = {"presets": 1, "plan": 2, "workload": 3, "session": 3, "kernel_record": 4}
SWEEP_RUNNERS = {"runner", "ray_engine"}


def sweep_imports(module: str) -> set[str]:
    """The ``mbs_layers.sweep`` modules ``mbs_layers.sweep.<module>`` imports, by short name."""
    prefix = f"{PACKAGE}.sweep."
    return {m.removeprefix(prefix) for m in imports_of(prefix + module) if m.startswith(prefix)}


def test_sweep_stages_import_in_one_direction():
    for module, stage in SWEEP_STAGES.items():
        imported = sweep_imports(module)
        earlier = {m for m in imported if SWEEP_STAGES.get(m, stage) < stage}
        assert not earlier, f"sweep stage {module} imports an earlier stage: {sorted(earlier)}"
        assert not imported & SWEEP_RUNNERS, f"sweep stage {module} imports a runner"
    # the plan hands its points to the runner, which hands them to the measuring session
    assert not sweep_imports("plan") & {"workload", "session", "kernel_record"}
    # a point is data: it chooses nothing and measures nothing
    assert not sweep_imports("point") & (set(SWEEP_STAGES) | SWEEP_RUNNERS)
    assert {"presets", "plan", "session"} <= sweep_imports("runner")
