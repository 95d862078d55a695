"""scMODAL: alignment of modalities with weakly linked features, and cross-modal imputation."""

from ._links import MIN_LINKS, resolve_links
from ._model import SCMODAL
from ._module import SCMODALModule, mutual_nearest_neighbors

__all__ = ["MIN_LINKS", "SCMODAL", "SCMODALModule", "mutual_nearest_neighbors", "resolve_links"]
