"""Tools: run a method on a MuData/AnnData and write its results muon-style."""

from ._portal import portal
from ._scdart import pseudotime, scdart
from ._scjoint import scjoint
from ._transfer import transfer_labels

__all__ = ["portal", "pseudotime", "scdart", "scjoint", "transfer_labels"]
