"""What users read shows the package as it is: tutorials match their builders, examples use
current argument names.

Each ``tutorials/build_<name>.py`` holds the cells of ``tutorials/<name>.ipynb``; the notebook
is written (and executed) from it. A builder edited without rebuilding the notebook leaves
readers an executed notebook of calls the package no longer takes in that form.
"""

import ast
import importlib.util
import inspect
import json
import re
import sys
from pathlib import Path

import pytest

TUTORIALS = Path(__file__).resolve().parents[1] / "tutorials"
BUILDERS = sorted(TUTORIALS.glob("build_*.py"))


def _cells(builder: Path) -> list[tuple[str, str]]:
    spec = importlib.util.spec_from_file_location(builder.stem, builder)
    module = importlib.util.module_from_spec(spec)
    # the builders import their shared command line as a sibling module
    sys.path.insert(0, str(TUTORIALS))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(TUTORIALS))
    return module.CELLS


def _notebook(builder: Path) -> dict:
    path = TUTORIALS / f"{builder.stem.removeprefix('build_')}.ipynb"
    return json.loads(path.read_text(encoding="utf-8"))


def test_every_builder_has_its_notebook():
    assert BUILDERS, f"no tutorial builders under {TUTORIALS}"
    for builder in BUILDERS:
        assert (TUTORIALS / f"{builder.stem.removeprefix('build_')}.ipynb").exists(), builder


@pytest.mark.parametrize("builder", BUILDERS, ids=lambda path: path.stem)
def test_notebook_cells_match_builder(builder):
    notebook = _notebook(builder)
    cells = _cells(builder)
    kinds = {"md": "markdown", "code": "code"}
    assert [kinds[kind] for kind, _ in cells] == [c["cell_type"] for c in notebook["cells"]]
    stale = [
        i
        for i, ((_, source), cell) in enumerate(zip(cells, notebook["cells"]))
        if source != "".join(cell["source"])
    ]
    assert not stale, (
        f"cells {stale} of {builder.stem.removeprefix('build_')}.ipynb differ from "
        f"{builder.name}: rebuild it with `python tutorials/{builder.name} --execute`"
    )


@pytest.mark.parametrize("builder", BUILDERS, ids=lambda path: path.stem)
def test_notebook_is_executed(builder):
    code = [c for c in _notebook(builder)["cells"] if c["cell_type"] == "code"]
    assert code and all(c.get("execution_count") for c in code), "notebook not executed"
    errors = [o for c in code for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, errors[0].get("ename")


# ---------------------------------------------------------------- calls shown to users
ROOT = TUTORIALS.parent
DOCUMENTS = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])


def _code_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(encoding="utf-8"), re.S)


def _scx_calls(source: str) -> list[tuple[str, list[str]]]:
    """``(dotted name, keyword names)`` of every ``scx.<...>(...)`` call in ``source``."""
    # cell magics (``%%time``) are not Python
    code = "\n".join(line for line in source.split("\n") if not line.startswith("%"))
    calls = []
    for node in ast.walk(ast.parse(code)):
        if not isinstance(node, ast.Call):
            continue
        function, path = node.func, []
        while isinstance(function, ast.Attribute):
            path.append(function.attr)
            function = function.value
        if getattr(function, "id", None) == "scx" and path:
            keywords = [k.arg for k in node.keywords if k.arg is not None]
            calls.append((".".join(reversed(path)), keywords))
    return calls


def _examples() -> list[tuple[str, str]]:
    examples = [
        (f"{path.relative_to(ROOT)}", block) for path in DOCUMENTS for block in _code_blocks(path)
    ]
    for builder in BUILDERS:
        examples += [
            (f"{builder.relative_to(ROOT)}[{i}]", source)
            for i, (kind, source) in enumerate(_cells(builder))
            if kind == "code"
        ]
    return examples


def test_documented_calls_use_current_names():
    """Docs and tutorials call scx's functions by names they take today.

    A renamed argument or a trainer option passed to an ``scx.tl`` tool as a keyword still
    works, with a ``FutureWarning``; an example that shows it teaches the old form.
    """
    import scx

    examples = _examples()
    n_calls, wrong = 0, []
    for where, source in examples:
        for name, keywords in _scx_calls(source):
            n_calls += 1
            target = scx
            try:
                for part in name.split("."):
                    target = getattr(target, part)
            except AttributeError:
                wrong.append(f"{where}: scx.{name} does not exist")
                continue
            parameters = inspect.signature(target).parameters
            if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
                continue
            wrong += [f"{where}: scx.{name}({k}=...)" for k in keywords if k not in parameters]
    assert n_calls > 50, f"found only {n_calls} scx calls in {len(examples)} examples"
    assert not wrong, "\n".join(wrong)
