"""Tools: run a method on a MuData/AnnData and write its results muon-style."""

from ._portal import portal
from ._scjoint import scjoint
from ._scmodal import impute, scmodal
from ._transfer import transfer_labels

__all__ = ["impute", "portal", "scjoint", "scmodal", "transfer_labels"]
