"""Shared command line of the tutorial builders: write a notebook from cells, optionally executed.

Each ``build_<tutorial>.py`` holds its cells as ``(kind, source)`` pairs and calls :func:`main`.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where used: the tests read the builders' cells without nbformat
    import nbformat

HERE = Path(__file__).resolve().parent


def build(cells: Sequence[tuple[str, str]]) -> nbformat.NotebookNode:
    """A notebook of markdown (``"md"``) and code cells with a Python 3 kernel."""
    import nbformat as nbf

    nb = nbf.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.cells = [
        nbf.v4.new_markdown_cell(text) if kind == "md" else nbf.v4.new_code_cell(text)
        for kind, text in cells
    ]
    return nb


def main(cells: Sequence[tuple[str, str]], name: str, doc: str, timeout: int = 1800) -> None:
    """Parse ``--execute`` / ``--out``, build the notebook, execute it in this folder, write it."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--execute", action="store_true", help="run the notebook before writing")
    parser.add_argument("--out", default=str(HERE / name))
    args = parser.parse_args()
    nb = build(cells)
    if args.execute:
        from nbclient import NotebookClient

        NotebookClient(
            nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(HERE)}}
        ).execute()
    import nbformat as nbf

    nbf.write(nb, args.out)
    print(f"wrote {args.out}")
