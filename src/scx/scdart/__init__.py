"""scDART (Zhang et al., Genome Biology 2022) on scvi-tools."""

from ._diffusion import (
    alpha_decay_graph,
    atac_embedding,
    diffusion_coordinates,
    post_align,
    rna_embedding,
)
from ._model import DIFFUSION_OBSM, SCDART, SCDARTTrainingPlan
from ._module import MMD_BANDWIDTHS, SCDARTModule

__all__ = [
    "DIFFUSION_OBSM",
    "MMD_BANDWIDTHS",
    "SCDART",
    "SCDARTModule",
    "SCDARTTrainingPlan",
    "alpha_decay_graph",
    "atac_embedding",
    "diffusion_coordinates",
    "post_align",
    "rna_embedding",
]
