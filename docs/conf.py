"""Sphinx configuration of the scx documentation (offline: no intersphinx, no network)."""

from __future__ import annotations

import sys
from datetime import date
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

import scx  # noqa: E402

project = "scx"
author = "scx developers"
copyright = f"{date.today().year}, {author}"
version = release = scx.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
master_doc = "index"
templates_path = ["_templates"]
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]

# ---- API reference: autosummary writes one stub page per object to api/generated (gitignored)
autosummary_generate = True
autosummary_imported_members = True
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "show-inheritance": True}
autoclass_content = "class"

# numpy-style docstrings
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
napoleon_use_param = False
napoleon_use_ivar = False

# Type hints are shown in the signatures: the numpy docstrings document several related
# parameters in one entry ("rna, atac"), which per-parameter type fields would split up again.
autodoc_typehints = "signature"
autodoc_typehints_format = "short"
python_maximum_signature_line_length = 88

# No intersphinx: the docs must build offline (CI has no network). References to objects of
# other projects (anndata, scvi-tools, torch, ...) render as plain code without a warning.
nitpicky = False

myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

html_theme = "furo"
html_title = f"scx {release}"


def _defining_module(obj) -> str:
    """Module that defines a class member (functions, methods, properties)."""
    if isinstance(obj, property):
        obj = obj.fget
    obj = getattr(obj, "__func__", obj)
    return getattr(obj, "__module__", None) or ""


def _skip_foreign_members(app, what, name, obj, skip, options):
    """Document the members scx defines (also when inherited), not those of torch/Lightning/scvi.

    Classes show their own methods and those of scx base classes (e.g. ``SCJOINT.setup_mudata``);
    the many members inherited from ``torch.nn.Module``, ``LightningModule`` or scvi-tools' base
    classes are documented by those projects.
    """
    if what != "class":
        return None
    module = _defining_module(obj)
    if module and not module.startswith("scx"):
        return True
    return None


def setup(app):
    app.connect("autodoc-skip-member", _skip_foreign_members)
