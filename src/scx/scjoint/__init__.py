"""scJoint (Lin et al. 2022): RNA → ATAC transfer learning."""

from ._model import SCJOINT
from ._module import SCJOINTModule, center_loss, cosine_top_p_loss, nndr_loss
from ._tool import scjoint

#: Settings that reproduce the reference implementation where scx improves on it by default
#: (pass as ``scx.tl.scjoint(mdata, **REFERENCE_SETTINGS)``): genes fed directly (no shared
#: PCA), no per-modality latent normalisation, fixed random centres, unfiltered pseudo-labels.
REFERENCE_SETTINGS = {
    "n_pcs": None,
    "modality_norm": False,
    "learn_centers": False,
    "pseudo_label_min_confidence": 0.0,
}

__all__ = [
    "REFERENCE_SETTINGS",
    "SCJOINT",
    "SCJOINTModule",
    "center_loss",
    "cosine_top_p_loss",
    "nndr_loss",
    "scjoint",
]
