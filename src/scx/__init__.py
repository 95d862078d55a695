"""scx: single-cell multimodal integration methods on scvi-tools.

Modules follow scanpy/muon: :mod:`scx.pp` (preprocessing), :mod:`scx.tl` (tools that write into
AnnData/MuData), :mod:`scx.pl` (plots), :mod:`scx.metrics`, with the scvi-tools model classes in
:mod:`scx.model`. :data:`scx.settings` holds the thread count and verbosity.
"""

from importlib.metadata import PackageNotFoundError, version

from . import base, data, datasets, metrics, model, nn, pl, pp, tl, train
from ._settings import settings

try:
    __version__ = version("scx-multimodal")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = [
    "base",
    "data",
    "datasets",
    "metrics",
    "model",
    "nn",
    "pl",
    "pp",
    "settings",
    "tl",
    "train",
]
