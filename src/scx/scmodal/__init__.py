"""scMODAL (Wang et al. 2025): alignment of modalities with weakly linked features, imputation."""

from ._links import MIN_LINKS, resolve_links
from ._model import SCMODAL
from ._module import (
    SCMODALModule,
    anchor_loss,
    geometry_loss,
    kernel_rows,
    mutual_nearest_neighbors,
    shared_neighbor_scores,
)
from ._preprocess import MIN_LINKED_TARGET
from ._tool import impute, scmodal

__all__ = [
    "MIN_LINKED_TARGET",
    "MIN_LINKS",
    "SCMODAL",
    "SCMODALModule",
    "anchor_loss",
    "geometry_loss",
    "impute",
    "kernel_rows",
    "mutual_nearest_neighbors",
    "resolve_links",
    "scmodal",
    "shared_neighbor_scores",
]
