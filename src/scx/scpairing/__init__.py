"""scPairing (Niu et al. 2025): a paired bridge embedded on the sphere; unpaired cells paired."""

from ._matching import (
    BLOCK_SIZE,
    EXACT_MAX_PAIRS,
    MAX_UNBLOCKED,
    Matching,
    match_embeddings,
    nearest_neighbour_pairs,
)
from ._model import SCPAIRING
from ._module import SCPAIRINGModule
from ._tool import pair_cells, scpairing
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
    "pair_cells",
    "scpairing",
]
