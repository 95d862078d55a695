"""Tools: run a method on a MuData/AnnData and write its results muon-style."""

from ._scjoint import scjoint
from ._transfer import transfer_labels

__all__ = ["scjoint", "transfer_labels"]
