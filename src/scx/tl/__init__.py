"""Tools: run a method on a MuData/AnnData and write its results muon-style."""

from scx.scjoint import scjoint

from ._portal import portal
from ._scdart import pseudotime, scdart
from ._scmodal import impute, scmodal
from ._scpairing import pair_cells, scpairing
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
