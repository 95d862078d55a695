"""scDART (Zhang et al., Genome Biology 2022): unpaired RNA + ATAC with a learned gene activity."""

from ._diffusion import (
    alpha_decay_graph,
    diffusion_coordinates,
    diffusion_embeddings,
    post_align,
)
from ._model import SCDART
from ._module import (
    ANCHOR_KEY,
    DIFFUSION_KEY,
    MMD_BANDWIDTHS,
    PARTNER_WEIGHTS_KEY,
    PARTNERS_KEY,
    SCDARTModule,
)
from ._prior import resolve_prior
from ._tool import scdart

#: Settings that reproduce the reference implementation's losses and initialisation where scx
#: departs from it by default (pass as ``scx.tl.scdart(mdata, **REFERENCE_SETTINGS)``): no
#: candidate-pair loss, the absolute L1 prior penalty, random gene-activity initialisation,
#: the last iterate's weights.
REFERENCE_SETTINGS = {
    "lambda_pairs": 0.0,
    "prior_penalty": "l1",
    "init_from_prior": False,
    "ema_decay": None,
}

__all__ = [
    "ANCHOR_KEY",
    "DIFFUSION_KEY",
    "MMD_BANDWIDTHS",
    "PARTNERS_KEY",
    "PARTNER_WEIGHTS_KEY",
    "REFERENCE_SETTINGS",
    "SCDART",
    "SCDARTModule",
    "alpha_decay_graph",
    "diffusion_coordinates",
    "diffusion_embeddings",
    "post_align",
    "resolve_prior",
    "scdart",
]
