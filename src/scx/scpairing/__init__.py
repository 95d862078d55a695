"""scPairing: contrastive hyperspherical embedding of a paired bridge and artificial pairing."""

from ._matching import (
    BLOCK_SIZE,
    EXACT_MAX_PAIRS,
    Matching,
    match_embeddings,
    nearest_neighbour_pairs,
)
from ._model import SCPAIRING
from ._module import SCPAIRINGModule
from ._training_plan import SCPairingTrainingPlan

__all__ = [
    "BLOCK_SIZE",
    "EXACT_MAX_PAIRS",
    "MAX_UNBLOCKED",
    "SCPAIRING",
    "Matching",
    "SCPAIRINGModule",
    "SCPairingTrainingPlan",
    "match_embeddings",
    "nearest_neighbour_pairs",
]
