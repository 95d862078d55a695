"""Tools: run a method on a MuData/AnnData and write its results muon-style."""

from ._portal import portal
from ._scjoint import scjoint
from ._scpairing import pair_cells, scpairing
from ._transfer import transfer_labels

__all__ = ["pair_cells", "portal", "scjoint", "scpairing", "transfer_labels"]
