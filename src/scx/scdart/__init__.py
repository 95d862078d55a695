"""scDART (Zhang et al., Genome Biology 2022): unpaired RNA + ATAC with a learned gene activity."""

from ._diffusion import (
    alpha_decay_graph,
    diffusion_coordinates,
    diffusion_embeddings,
    post_align,
)
from ._model import SCDART
from ._module import ANCHOR_KEY, DIFFUSION_KEY, MMD_BANDWIDTHS, SCDARTModule
from ._prior import resolve_prior
from ._tool import scdart

__all__ = [
    "ANCHOR_KEY",
    "DIFFUSION_KEY",
    "MMD_BANDWIDTHS",
    "SCDART",
    "SCDARTModule",
    "alpha_decay_graph",
    "diffusion_coordinates",
    "diffusion_embeddings",
    "post_align",
    "resolve_prior",
    "scdart",
]
