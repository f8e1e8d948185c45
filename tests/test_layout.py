"""The house rules a newcomer relies on to find the room for a change, checked on the source itself:
the arrows point one way (cli -> web (the pages) -> batch -> engine), no two modules import each other round
a circle, modules and functions stay short, and no file cites a document the repository lacks.

Run alone with ``python -m pytest tests/test_layout.py -q``: it reads files only, in about a second.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "batchstyle"
MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 60
# Which top-level rooms of the package each room may import: the arrows point one way.
MAY_IMPORT = {
    "engine": {"engine"},
    "batch": {"batch", "engine"},
    "web": {"web", "batch", "engine"},
    "cli": {"cli", "web", "batch", "engine"},
}


def _modules() -> dict[str, Path]:
    """Every module of the package by dotted name (``batchstyle.batch.plan``)."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """The package's modules that ``name`` imports anywhere in its body (at the top or inside a
    function; not those under ``if TYPE_CHECKING:``, which are for type checkers only)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    targets: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets.add(base)
            targets.update(f"{base}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(), str(path)))
    return {target for target in targets if target in MODULES and target != name}


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _room(name: str) -> str | None:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else None


def _circle() -> list[str] | None:
    """One import circle among the package's modules, as the modules round it, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(GRAPH[node]):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state and (found := visit(target)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(GRAPH):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_module_imports_itself_round_a_circle():
    circle = _circle()
    assert circle is None, "import circle: " + " -> ".join(circle or [])


def test_the_arrows_point_one_way():
    wrong = [f"{name} imports {target}" for name, targets in GRAPH.items() for target in sorted(targets)
             if _room(name) in MAY_IMPORT and _room(target) not in MAY_IMPORT[_room(name)] | {None}]
    assert not wrong, "\n".join(wrong)


def test_every_module_is_short():
    long = {name: n for name, path in MODULES.items() if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES}
    assert not long, f"modules over {MAX_MODULE_LINES} lines (split them by job): {long}"


def test_every_function_is_short():
    long = []
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if (n := node.end_lineno - node.lineno + 1) > MAX_FUNCTION_LINES:  # decorators not counted
                    long.append(f"{name}.{node.name} ({n} lines)")
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"


# Documents that live outside the repository: citing them sends a reader nowhere.
OUTSIDE = re.compile(r"engine-spec|ray-design\.md|peers\.md|reference/tiling|\.\./shared/(reference|DESIGN)|DESIGN\.md")
TEXT = [path for pattern in ("batchstyle/**/*", "benchmarks/**/*", "tests/**/*", "docs/**/*", "jobs/**/*.csv",
                             "*.md", "*.yaml", "*.toml", ".ci/*")
        for path in ROOT.glob(pattern)
        if path.is_file() and path.suffix in {".py", ".md", ".yaml", ".toml", ".csv", ".js", ".html", ".css", ""}
        and path != Path(__file__).resolve()]


def test_no_file_cites_a_document_outside_the_repository():
    cited = [f"{path.relative_to(ROOT)}:{n}" for path in TEXT
             for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1) if OUTSIDE.search(line)]
    assert not cited, "cites a document the repository does not contain: " + ", ".join(cited)


LINK = re.compile(r"\]\(([^)#:\s]+)(?:#[^)]*)?\)")


@pytest.mark.parametrize("doc", sorted(p.relative_to(ROOT) for p in [*ROOT.glob("*.md"), *ROOT.glob("docs/*.md"),
                                                                       *ROOT.glob("benchmarks/*.md")]), ids=str)
def test_every_relative_link_of_the_docs_leads_to_a_file(doc):
    missing = [target for target in LINK.findall((ROOT / doc).read_text())
               if not (ROOT / doc).parent.joinpath(target).exists()]
    assert not missing, f"{doc} links to files that do not exist: {missing}"


def test_test_modules_take_shared_helpers_from_support_only():
    """Helpers the tests share live in tests/support/ (fixtures in conftest.py): a test module never
    imports another test module or conftest, and the benchmarks import tests.support only."""
    wrong = []
    for path in [*ROOT.glob("tests/*.py"), *ROOT.glob("tests/support/*.py"), *ROOT.glob("benchmarks/*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            wrong += [f"{path.relative_to(ROOT)} imports {name}" for name in names
                      if name.split(".")[-1].startswith("test_") or name.split(".")[-1] == "conftest"
                      or (path.parent.name == "benchmarks" and name.split(".")[0] in {"support", "fake_backend"})]
        if path.parent.name == "benchmarks" and "sys.path" in path.read_text():
            wrong.append(f"{path.relative_to(ROOT)} changes sys.path")
    assert not wrong, "\n".join(wrong)


def test_every_module_has_its_line_in_the_architecture_document():
    """docs/architecture.md lists the modules one per line, each under its folder: a newcomer finds
    the room for a change there, so a module missing from it (or a line left for one that is gone)
    is an error."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    block = text[text.index("```\nbatchstyle/\n") + 4:]
    block = block[:block.index("```")]
    listed, folders = set(), []
    for line in block.splitlines():
        depth, name = (len(line) - len(line.lstrip())) // 2, line.split()[0] if line.strip() else ""
        if not name:
            continue
        folders[depth:] = [name.rstrip("/")] if name.endswith("/") else []
        if name.endswith(".py"):
            listed.add("/".join(folders[:depth] + [name]))
    modules = {str(path.relative_to(PACKAGE.parent)) for path in PACKAGE.rglob("*.py") if path.name != "__init__.py"}
    assert modules - listed == set(), "modules without a line in docs/architecture.md"
    assert listed - modules == set(), "lines in docs/architecture.md for modules that do not exist"


def test_every_name_the_glossary_gives_exists():
    """The glossary names the code of each word (`batch.outdir.lease.Lease`): each of those names is
    importable, so the glossary cannot drift from the code unnoticed."""
    import importlib

    text = (ROOT / "docs" / "architecture.md").read_text()
    glossary = text[text.index("## Glossary"):]
    missing = []
    for name in sorted(set(re.findall(r"`((?:engine|batch|web|cli)(?:\.\w+)+)`", glossary))):
        parts = name.split(".")
        for cut in range(len(parts), 0, -1):  # the longest importable module, then attributes
            try:
                target = importlib.import_module(".".join(["batchstyle", *parts[:cut]]))
            except ImportError:
                continue
            for attribute in parts[cut:]:
                target = getattr(target, attribute, None)
            if target is None:
                missing.append(name)
            break
        else:
            missing.append(name)
    assert not missing, f"the glossary names code that does not exist: {missing}"
