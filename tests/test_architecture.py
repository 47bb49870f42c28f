"""The import rules of docs/architecture.md, checked on the source.

- the core never imports a plugin;
- a module imports only modules of its own layer or of a lower one;
- a built-in plugin imports only ``odirkit`` and ``odirkit.api`` of the core, as a
  third-party plugin must;
- no module is over 500 lines, and every public name of the core, methods of public
  classes included, has a docstring that gives the shapes of its arrays and tensors and
  names the odirkit errors it raises.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
CORE = ROOT / "odirkit"
PLUGINS = ROOT / "plugins"

#: lowest first; a module may import from its own layer and the layers below
LAYERS: list[set[str]] = [
    {
        "odirkit.errors",
        "odirkit.labels",
        "odirkit.console",
        "odirkit.files",
        "odirkit.seeding",
        "odirkit.hookspecs",
        "odirkit.params",
        "odirkit.contract",
    },
    # the configuration, and the grammars it checks beside the code that applies them
    {"odirkit.plugins", "odirkit.config", "odirkit.thresholds", "odirkit.tta"},
    {
        "odirkit.data",
        "odirkit.runs",
        "odirkit.metrics",
        "odirkit.fusion",
        "odirkit.calibration",
        "odirkit.bootstrap",
        "odirkit.learning",
        "odirkit.figures",
        "odirkit.augment",
        "odirkit.layers",
        "odirkit.eyes",
        "odirkit.view",
        "odirkit.submission",
        "odirkit.tracking",
        "odirkit.api",
    },
    {"odirkit.engine"},
    {
        "odirkit.explain",
        "odirkit.external",
        "odirkit.external_report",
        "odirkit.comparison",
        "odirkit.report",
        "odirkit.predict",
        "odirkit.ensemble",
        "odirkit.baseline",
        "odirkit.experiment",
        "odirkit.launch",
        "odirkit.orchestration",
        "odirkit.tune",
        "odirkit.testing",
    },
    {"odirkit.cli", "odirkit.__main__"},
]


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> int:
    for i, layer in enumerate(LAYERS):
        if any(module == name or module.startswith(name + ".") for name in layer):
            return i
    raise AssertionError(f"{module} is in no layer: add it to LAYERS and docs/architecture.md")


def imports(path: Path) -> list[str]:
    """Every module ``path`` imports, at the top or inside a function."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
            found += [f"{node.module}.{alias.name}" for alias in node.names]
    return found


CORE_FILES = sorted(p for p in CORE.rglob("*.py") if p.name != "__init__.py" or p.parent != CORE)
PLUGIN_FILES = sorted(p for p in PLUGINS.rglob("*.py") if "build" not in p.parts)


@pytest.mark.parametrize("path", CORE_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_a_core_module_imports_no_plugin_and_nothing_above_its_layer(path):
    check_layers(path, module_name(path))


def check_layers(path: Path, own: str) -> None:
    level = layer_of(own)
    for target in imports(path):
        assert not target.startswith(("odirkit_", "plugins")), f"{own} imports plugin {target}"
        if not target.startswith("odirkit.") or target in {"odirkit.__version__"}:
            continue
        try:
            other = layer_of(target)
        except AssertionError:
            continue  # a name imported from a module (odirkit.data.images.X) was checked too
        assert other <= level, f"{own} (layer {level}) imports {target} (layer {other})"


@pytest.mark.parametrize("path", PLUGIN_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_a_builtin_plugin_imports_only_the_public_surface(path):
    for target in imports(path):
        if target == "odirkit" or not target.startswith("odirkit."):
            continue
        if target.startswith("odirkit.api") or target.split(".")[1] in _TOP_LEVEL_NAMES:
            continue
        raise AssertionError(f"{path.relative_to(ROOT)} imports {target}; use odirkit.api")


_TOP_LEVEL_NAMES = set(__import__("odirkit").__all__)


def test_every_core_module_has_a_layer():
    for path in CORE_FILES:
        layer_of(module_name(path))


def test_the_rules_catch_an_upward_import(tmp_path):
    # The checker itself, on a probe outside the source tree: a data module importing the
    # engine is refused.
    fake = tmp_path / "_probe_upward.py"
    fake.write_text("from odirkit.engine.trainer import Trainer\n")
    with pytest.raises(AssertionError, match=r"imports odirkit\.engine"):
        check_layers(fake, "odirkit.data._probe_upward")


# -- no import cycle, in any layer ------------------------------------------------------------


def runtime_imports(path: Path) -> list[str]:
    """Every module ``path`` imports: at the top, inside a function, or under
    ``if TYPE_CHECKING`` (a cycle of annotations is still a cycle of design)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # a name from a module, or a module from a package: import_graph keeps the
            # longest prefix that is a module
            found += [f"{node.module}.{alias.name}" for alias in node.names]
    return found


def import_graph(files: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the odirkit modules it imports (a name imported from a module counts as
    the module; a package as its ``__init__``)."""
    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        for target in runtime_imports(path):
            while target and target not in files:
                target = target.rpartition(".")[0]
            if target and target != name:
                graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def core_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(CORE.rglob("*.py"))}


def test_no_import_cycle_in_any_layer():
    assert cycles(import_graph(core_modules())) == []


def test_the_cycle_check_finds_a_cycle_through_an_import_inside_a_function(tmp_path):
    (tmp_path / "a.py").write_text("from odirkit.b import thing\n")
    (tmp_path / "b.py").write_text("def f():\n    from odirkit.c import other\n")
    (tmp_path / "c.py").write_text(
        "from typing import TYPE_CHECKING\nimport odirkit.a\n"
        "if TYPE_CHECKING:\n    from odirkit.d import Annotation\n"
    )
    (tmp_path / "d.py").write_text("x = 1\n")
    files = {f"odirkit.{n}": tmp_path / f"{n}.py" for n in "abcd"}
    assert cycles(import_graph(files)) == [["odirkit.a", "odirkit.b", "odirkit.c"]]
    (tmp_path / "d.py").write_text("from odirkit.c import x\n")  # back through annotations
    found = cycles(import_graph(files))
    assert found == [["odirkit.a", "odirkit.b", "odirkit.c", "odirkit.d"]]


# -- the run folder's names live in odirkit/runs/ ----------------------------------------------

FILE_NAME = re.compile(r"^[\w{}-][\w{}.-]*\.(json|csv|md|html|png|npz|pt|log|toml)$")
#: files that are not in a run folder, by the module that names each: the image cache's
#: verdicts, predict's own output beside the file the user names, a conformance check's
#: scratch figure (named one by one: a whole module exempted would hide a run file's name)
NOT_RUN_FILES = {
    "odirkit/data/prepare/checking.py": {"fundus-check-v{}.json"},
    "odirkit/cli/applying.py": {"{}.images.csv"},
    "odirkit/testing.py": {"figure.png"},
}


def file_names(path: Path) -> list[str]:
    """The string constants of ``path`` that are file names; an f-string is read with
    ``{}`` for each value it formats."""
    tree = ast.parse(path.read_text())
    parts = {
        id(part)
        for node in ast.walk(tree)
        if isinstance(node, ast.JoinedStr)
        for part in node.values
    }
    texts = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            texts.append(
                "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
            )
        elif (
            isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in parts
        ):
            texts.append(node.value)
    return [text for text in texts if FILE_NAME.match(text)]


def test_no_run_file_name_is_spelled_outside_the_run_folder_package():
    found = {
        str(path.relative_to(ROOT)): names
        for path in sorted(CORE.rglob("*.py"))
        if "runs" not in path.relative_to(CORE).parts[:1]
        and (
            names := [
                name
                for name in file_names(path)
                if name not in NOT_RUN_FILES.get(str(path.relative_to(ROOT)), set())
            ]
        )
    }
    assert found == {}


def test_the_file_name_check_sees_plain_and_formatted_names(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text(
        'a = "metrics.json"\nb = f"worker-{i}.log"\nc = "not a file. json"\nd = ".png"\n'
    )
    assert sorted(file_names(probe)) == ["metrics.json", "worker-{}.log"]


# -- random streams have names ------------------------------------------------------------------


def bare_streams(path: Path) -> list[int]:
    """The lines where ``derive_seed`` is called with a literal number after the seed."""
    return [
        node.lineno
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Call)
        and getattr(node.func, "id", getattr(node.func, "attr", "")) == "derive_seed"
        and any(isinstance(arg, ast.Constant) for arg in node.args[1:2])
    ]


def test_every_random_stream_is_named_in_seeding():
    found = {
        str(path.relative_to(ROOT)): lines
        for path in [*CORE_FILES, *PLUGIN_FILES]
        if (lines := bare_streams(path))
    }
    assert found == {}


def test_the_stream_check_sees_a_bare_number(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("a = derive_seed(seed, 3)\nb = derive_seed(seed, Stream.SPLIT, 3)\n")
    assert bare_streams(probe) == [1]


# -- modules with one job -------------------------------------------------------------------------

MAX_LINES = 500


def long_modules(paths: list[Path], root: Path = ROOT) -> dict[str, int]:
    """The modules of more than ``MAX_LINES`` lines, with their length."""
    return {
        str(path.relative_to(root)): n
        for path in paths
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    }


def test_no_module_of_the_core_or_the_builtin_plugins_is_over_500_lines():
    long = long_modules([*sorted(CORE.rglob("*.py")), *PLUGIN_FILES])
    assert long == {}, "split these into packages of modules with one job each"


def test_the_line_rule_sees_a_plugin_module_one_line_too_long(tmp_path):
    plugin = tmp_path / "plugins" / "odirkit_probe"
    plugin.mkdir(parents=True)
    (plugin / "fits.py").write_text("x = 1\n" * MAX_LINES)
    (plugin / "long.py").write_text("x = 1\n" * (MAX_LINES + 1))
    found = long_modules(sorted(plugin.glob("*.py")), root=tmp_path)
    assert found == {"plugins/odirkit_probe/long.py": MAX_LINES + 1}


def public_definitions(tree: ast.Module) -> list[tuple[str, ast.AST]]:
    """Every public function, class and method of a module, by qualified name: those at its
    top (in plain ``if`` and ``try`` blocks too) and, recursively, those of its public
    classes; not those inside functions, nor anything whose name starts with ``_``."""
    found: list[tuple[str, ast.AST]] = []

    def visit(body: list[ast.stmt], prefix: str) -> None:
        for node in body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                if node.name.startswith("_"):
                    continue
                found.append((f"{prefix}{node.name}", node))
                if isinstance(node, ast.ClassDef):
                    visit(node.body, f"{prefix}{node.name}.")
            elif isinstance(node, ast.If | ast.Try):
                for part in (node.body, node.orelse, getattr(node, "finalbody", [])):
                    visit(part, prefix)

    visit(tree.body, "")
    return found


#: an annotation naming an array or a tensor
ARRAY = re.compile(r"\b(?:np\.ndarray|ndarray|torch\.Tensor|Tensor)\b")

#: a shape as the docstrings write one: ``[B, 3, S, S]``, ``[N]``, ``[resamples, rows]``
#: (letters, and a capital or a comma: not a table such as ``[eval]``, nor a range ``[0, 1]``)
SHAPE = re.compile(r"\[(?=[^\]\n]*[A-Za-z])(?=[^\]\n]*[A-Z,])[^\]\n]*\]|\bscalar\b")

ERRORS = {
    node.name
    for node in ast.parse((CORE / "errors.py").read_text()).body
    if isinstance(node, ast.ClassDef)
}


def docstring_findings(path: Path, root: Path = ROOT) -> dict[str, list[str]]:
    """What the public names of a module leave unsaid: ``missing`` (no docstring), ``shape``
    (an array or tensor in the signature, no shape in the docstring), ``raises`` (an
    odirkit error raised in the body, not named in the docstring)."""
    found: dict[str, list[str]] = {"missing": [], "shape": [], "raises": []}
    where = path.relative_to(root)
    for name, node in public_definitions(ast.parse(path.read_text())):
        doc = ast.get_docstring(node) or ""  # type: ignore[arg-type]
        if not doc:
            found["missing"].append(f"{where}: {name}")
            continue
        if isinstance(node, ast.ClassDef):
            continue
        assert isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        arguments = [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]
        signature = [ast.unparse(a.annotation) for a in arguments if a.annotation]
        if node.returns is not None:
            signature.append(ast.unparse(node.returns))
        if any(ARRAY.search(text) for text in signature) and not SHAPE.search(doc):
            found["shape"].append(f"{where}: {name}")
        raised = set()
        for inner in ast.walk(node):
            if isinstance(inner, ast.Raise) and inner.exc is not None:
                called = inner.exc.func if isinstance(inner.exc, ast.Call) else inner.exc
                raised.add(getattr(called, "id", getattr(called, "attr", "")))
        unsaid = sorted(e for e in raised & ERRORS if e not in doc)
        if unsaid:
            found["raises"].append(f"{where}: {name} ({', '.join(unsaid)})")
    return found


def core_docstring_findings(kind: str) -> list[str]:
    return [
        line
        for path in sorted(CORE.rglob("*.py"))
        # a command's docstring is its --help text: it says what to do, not what is raised
        if kind != "raises" or "cli" not in path.relative_to(CORE).parts
        for line in docstring_findings(path)[kind]
    ]


def test_every_public_name_of_the_core_has_a_docstring():
    assert core_docstring_findings("missing") == []


def test_a_public_function_of_arrays_or_tensors_gives_their_shapes():
    assert core_docstring_findings("shape") == []


def test_a_public_function_names_the_odirkit_errors_it_raises():
    assert core_docstring_findings("raises") == []


def test_the_docstring_rules_see_methods_shapes_and_errors(tmp_path):
    module = tmp_path / "probe.py"
    module.write_text(
        '''
import numpy as np
from odirkit.errors import DataError

class Store:
    """A store."""

    def get(self, index: int) -> np.ndarray:
        """One image: uint8 [S, S, 3]."""

    def put(self, image: np.ndarray) -> None:
        """Keep an image."""
        raise DataError("full")

    def size(self) -> int:
        return 0

    def _private(self) -> None:
        pass

if True:
    def guarded() -> None:
        pass
'''
    )
    found = docstring_findings(module, root=tmp_path)
    assert found == {
        "missing": ["probe.py: Store.size", "probe.py: guarded"],
        "shape": ["probe.py: Store.put"],
        "raises": ["probe.py: Store.put (DataError)"],
    }


# -- an import inside a function delays something ---------------------------------------------


def _top_level_imports(tree: ast.Module) -> set[str]:
    """What a module imports as it is loaded: at its top, in plain ``if``/``try`` blocks,
    not under ``if TYPE_CHECKING`` (modules, and ``module.name`` for each name taken)."""
    found: set[str] = set()

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.If):
                if "TYPE_CHECKING" not in ast.unparse(node.test):
                    visit(node.body)
                    visit(node.orelse)
            elif isinstance(node, ast.Try):
                for part in (node.body, node.orelse, node.finalbody):
                    visit(part)
                for handler in node.handlers:
                    visit(handler.body)
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module)
                found.update(f"{node.module}.{alias.name}" for alias in node.names)

    visit(tree.body)
    return found


class StartUp:
    """The third-party packages each core module loads with it, read from the source: its
    top-level imports, its parent packages', and theirs, transitively."""

    def __init__(self, files: dict[str, Path]) -> None:
        self.trees = {name: ast.parse(path.read_text()) for name, path in files.items()}
        self.direct = {name: _top_level_imports(tree) for name, tree in self.trees.items()}
        self.memo: dict[str, set[str]] = {}

    def module(self, name: str) -> str:
        """The core module a dotted name lies in (a module, or a name inside one)."""
        while name and name not in self.trees:
            name = name.rpartition(".")[0]
        return name

    def loads(self, name: str) -> set[str]:
        """Every core module and third-party package loading ``name`` loads."""
        if name in self.memo:
            return self.memo[name]
        self.memo[name] = set()
        parts = name.split(".")
        found: set[str] = set()
        for target in self.direct[name] | {".".join(parts[:i]) for i in range(1, len(parts))}:
            if target.split(".")[0] != "odirkit":
                found.add(target.split(".")[0])
            elif (own := self.module(target)) and own != name:
                found |= {own, *self.loads(own)}
        self.memo[name] = found
        return found


def third_party(names: set[str]) -> set[str]:
    return {n for n in names if n.split(".")[0] not in {*sys.stdlib_module_names, "odirkit"}}


def wasted_function_imports(files: dict[str, Path], root: Path = ROOT) -> list[str]:
    """Imports inside functions that load no third-party package the module does not load
    already (the standard library, odirkit's light modules): they delay nothing."""
    start = StartUp(files)
    wasted = []
    for name, tree in start.trees.items():
        mine = third_party(start.loads(name))
        for function in ast.walk(tree):
            if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(function):
                if isinstance(node, ast.Import):
                    targets = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    targets = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
                else:
                    continue
                adds: set[str] = set()
                for target in targets:
                    if target.split(".")[0] == "odirkit":
                        own = start.module(target)
                        adds |= third_party({own, *start.loads(own)})
                    else:
                        adds |= third_party({target})
                if not adds - mine:
                    wasted.append(f"{files[name].relative_to(root)}:{node.lineno} {targets[0]}")
    return wasted


def test_an_import_inside_a_function_keeps_a_package_off_the_start_up_path():
    """Imports inside functions only where they keep a heavy or optional package (or an
    odirkit module that loads one) off the path of whatever imports the module; the others
    sit at the top, where a reader looks for them."""
    wasted = wasted_function_imports(core_modules())
    assert not wasted, "these delay nothing; move them to the module's top:\n" + "\n".join(wasted)


def test_the_start_up_check_sees_an_import_that_delays_nothing(tmp_path):
    package = tmp_path / "odirkit"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "light.py").write_text("import json\n")
    (package / "heavy.py").write_text("import torch\n")
    (package / "user.py").write_text(
        "def a():\n    import json\n\ndef b():\n    from odirkit import light\n\n"
        "def c():\n    from odirkit.heavy import x\n\ndef d():\n    import matplotlib\n"
    )
    files = {f"odirkit.{p.stem}": p for p in package.glob("*.py") if p.stem != "__init__"}
    files["odirkit"] = package / "__init__.py"
    found = wasted_function_imports(files, root=tmp_path)
    assert found == ["odirkit/user.py:2 json", "odirkit/user.py:5 odirkit"]
