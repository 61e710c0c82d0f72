"""The import graph runs one way: each module imports only from its own layer or the layers below it.

    foundation  observations, errors, config, runtime, _version, _lazy
    labeler     (a leaf: foundation only)
    data
    model, losses
    train
    evaluate
    top         medflip.cli, every package's cli.py, demo/, serve/, study, bench, inference, the package root

docs/architecture.md explains what each layer owns. The walk reads every `import` statement with `ast`
(function-local ones included: a lazy import is still a dependency), so it needs nothing imported.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "medflip"

LAYERS = {
    "observations": 0,
    "errors": 0,
    "config": 0,
    "runtime": 0,
    "_version": 0,
    "_lazy": 0,
    "labeler": 1,
    "data": 2,
    "model": 3,
    "losses": 3,
    "train": 4,
    "evaluate": 5,
}
TOP = 6

# Imports against the order that are still to be removed: (importer, imported). Delete a line when you remove
# the import; never add one.
KNOWN_VIOLATIONS: set[tuple[str, str]] = set()


def module_name(path: Path, src: Path = SRC) -> str:
    parts = list(path.relative_to(src.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def layer_of(module: str) -> int:
    parts = module.split(".")
    if parts[0] != "medflip":
        raise ValueError(module)
    if len(parts) == 1 or "cli" in parts[1:]:
        return TOP  # the package root re-exports the public faces; CLIs (modules or packages) sit on top
    return LAYERS.get(parts[1], TOP)


def command_family(module: str) -> str | None:
    """`medflip.evaluate.cli.zeroshot` -> `medflip.evaluate.cli`: the command module or package it belongs to."""
    parts = module.split(".")
    return ".".join(parts[: parts.index("cli", 1) + 1]) if "cli" in parts[1:] else None


def imports_of(path: Path, src: Path = SRC) -> set[str]:
    """Every medflip module named by an import statement in `path` (relative imports resolved)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    me = module_name(path, src)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            found.add(mod)
            # `from medflip.data import cache` imports the submodule medflip.data.cache
            for a in node.names:
                where = src.parent / mod.replace(".", "/") / a.name
                if where.with_suffix(".py").is_file() or (where / "__init__.py").is_file():
                    found.add(f"{mod}.{a.name}")
    return {m for m in found if m == "medflip" or m.startswith("medflip.")}


def violations(src: Path = SRC) -> set[tuple[str, str]]:
    out = set()
    for path in sorted(src.rglob("*.py")):
        me = module_name(path, src)
        for dep in imports_of(path, src):
            if dep == me or me.startswith(dep + "."):  # a package's own parents are not dependencies
                if dep != "medflip":
                    continue
            wrong_way = layer_of(dep) > layer_of(me)
            # medflip.__main__ (`python -m medflip`, `torchrun -m medflip`) is the medflip command itself
            entry = me in ("medflip.cli", "medflip.__main__")
            family = command_family(dep)
            cli_to_cli = family is not None and not entry and family != command_family(me)
            if wrong_way or cli_to_cli:
                out.add((me, dep))
    return out


def test_imports_follow_the_layer_order():
    new = violations() - KNOWN_VIOLATIONS
    assert not new, "imports against the layer order (see docs/architecture.md):\n" + "\n".join(
        f"  {a} imports {b}" for a, b in sorted(new)
    )


def test_known_violations_are_still_real():
    """A fixed violation must leave the list, so the list only shrinks."""
    stale = KNOWN_VIOLATIONS - violations()
    assert not stale, "remove from KNOWN_VIOLATIONS (already fixed): " + ", ".join(map(str, sorted(stale)))


def test_the_walk_sees_a_wrong_way_import(tmp_path):
    """The checker itself, on a made-up package: wrong-way, relative, function-local and CLI-to-CLI imports."""
    pkg = tmp_path / "medflip"
    files = {
        "__init__.py": "",
        "labeler/__init__.py": "",
        "labeler/engine.py": "def f():\n    from medflip.data import streams\n",  # function-local, wrong way
        "data/__init__.py": "",
        "data/streams.py": "from ..labeler import engine\n",  # relative, the right way
        "train/__init__.py": "",
        "train/cli.py": "",
        "evaluate/__init__.py": "",
        "evaluate/cli.py": "from medflip.train.cli import x\n",  # a CLI importing another CLI
        "evaluate/metrics.py": "import medflip.train\n",  # the right way
        "study/cli/__init__.py": "from . import common\n",  # inside one command package: fine
        "study/cli/common.py": "from medflip.train.cli import y\n",  # CLI-to-CLI from a package
    }
    for name, text in files.items():
        (pkg / name).parent.mkdir(parents=True, exist_ok=True)
        (pkg / name).write_text(text)
    assert violations(pkg) == {
        ("medflip.labeler.engine", "medflip.data"),
        ("medflip.labeler.engine", "medflip.data.streams"),
        ("medflip.evaluate.cli", "medflip.train.cli"),
        ("medflip.study.cli.common", "medflip.train.cli"),
    }
