"""scx: single-cell multimodal integration methods on scvi-tools.

Modules follow scanpy/muon: :mod:`scx.pp` (preprocessing), :mod:`scx.tl` (tools that write into
AnnData/MuData), :mod:`scx.pl` (plots), :mod:`scx.metrics`, with the scvi-tools model classes in
:mod:`scx.model`.
"""

from importlib.metadata import PackageNotFoundError, version

from . import data, datasets, metrics, model, nn, pl, pp, tl

try:
    __version__ = version("scx")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = ["data", "datasets", "metrics", "model", "nn", "pl", "pp", "tl"]
