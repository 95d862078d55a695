"""scPairing: contrastive hyperspherical embedding of a paired bridge and artificial pairing."""

from ._matching import EXACT_MAX_PAIRS, Matching, match_embeddings, nearest_neighbour_pairs
from ._model import SCPAIRING
from ._module import SCPAIRINGModule

__all__ = [
    "EXACT_MAX_PAIRS",
    "SCPAIRING",
    "Matching",
    "SCPAIRINGModule",
    "match_embeddings",
    "nearest_neighbour_pairs",
]
