"""Tools: run a method on a MuData/AnnData and write its results muon-style.

The five method tools are defined next to their models (``scx.<method>._tool``); the
embedding-level companions :func:`pseudotime` and :func:`transfer_labels` live here.
"""

from scx.portal import portal
from scx.scdart import scdart
from scx.scjoint import scjoint
from scx.scmodal import impute, scmodal
from scx.scpairing import pair_cells, scpairing

from ._pseudotime import pseudotime
from ._transfer import transfer_labels

__all__ = [
    "impute",
    "pair_cells",
    "portal",
    "pseudotime",
    "scdart",
    "scjoint",
    "scmodal",
    "scpairing",
    "transfer_labels",
]
