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


def _notebook_path(builder: Path) -> Path:
    return TUTORIALS / f"{builder.stem.removeprefix('build_')}.ipynb"


def _notebook(builder: Path) -> dict:
    return json.loads(_notebook_path(builder).read_text(encoding="utf-8"))


def test_every_builder_has_its_notebook():
    assert BUILDERS, f"no tutorial builders under {TUTORIALS}"
    for builder in BUILDERS:
        assert _notebook_path(builder).exists(), builder


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
        f"cells {stale} of {_notebook_path(builder).name} differ from "
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


def _scx_calls(source: str) -> list[tuple[str, int, list[str]]]:
    """``(dotted name, positional count, keyword names)`` of every ``scx.<...>(...)`` call."""
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
            calls.append((".".join(reversed(path)), len(node.args), keywords))
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


#: ``**kwargs`` of scx functions that only exist to warn about or reject old forms; their
#: ``*args`` likewise take only the deprecated positional forms
CATCH_ALLS = {"unknown", "old", "deprecated"}


def _wrong_arguments(target, n_positional: int, keywords: list[str]) -> list[str]:
    """What a call passes that ``target`` takes only in a deprecated form, or not at all."""
    parameters = inspect.signature(target).parameters.values()
    kinds = inspect.Parameter
    named = {p.name for p in parameters if p.kind not in (kinds.VAR_POSITIONAL, kinds.VAR_KEYWORD)}
    if any(p.kind is kinds.VAR_KEYWORD and p.name not in CATCH_ALLS for p in parameters):
        wrong = []
    else:
        wrong = [f"{k}=" for k in keywords if k not in named]
    if any(p.kind is kinds.VAR_POSITIONAL and p.name == "args" for p in parameters):
        positional = [
            p for p in parameters if p.kind in (kinds.POSITIONAL_ONLY, kinds.POSITIONAL_OR_KEYWORD)
        ]
        if n_positional > len(positional):
            wrong.append(f"{n_positional - len(positional)} positional argument(s) too many")
    return wrong


def test_documented_calls_use_current_names():
    """Docs and tutorials call scx's functions the way they take their arguments today.

    Renamed arguments, trainer options passed to an ``scx.tl`` tool as keywords and the old
    positional forms still work, with a ``FutureWarning``; an example that shows them teaches
    the old form.
    """
    import scx

    examples = _examples()
    n_calls, wrong = 0, []
    for where, source in examples:
        for name, n_positional, keywords in _scx_calls(source):
            n_calls += 1
            target = scx
            try:
                for part in name.split("."):
                    target = getattr(target, part)
            except AttributeError:
                wrong.append(f"{where}: scx.{name} does not exist")
                continue
            wrong += [
                f"{where}: scx.{name}: {problem}"
                for problem in _wrong_arguments(target, n_positional, keywords)
            ]
    assert n_calls > 50, f"found only {n_calls} scx calls in {len(examples)} examples"
    assert not wrong, "\n".join(wrong)


def test_wrong_arguments_sees_the_old_forms():
    import scx

    assert _wrong_arguments(scx.tl.scjoint, 1, ["rna", "enable_progress_bar"]) == [
        "rna=",
        "enable_progress_bar=",
    ]
    assert _wrong_arguments(scx.tl.transfer_labels, 2, ["use_rep"]) == [
        "1 positional argument(s) too many"
    ]
    assert _wrong_arguments(scx.tl.pair_cells, 3, []) == ["1 positional argument(s) too many"]
    assert _wrong_arguments(scx.tl.pair_cells, 2, ["cutoff", "mod1"]) == ["mod1="]
    assert _wrong_arguments(scx.tl.transfer_labels, 1, ["labels_key", "use_rep"]) == []
