"""Generated datasets and the location of the optional real benchmark data."""

from ._paths import data_dir
from ._synthetic import (
    synthetic_annotation,
    synthetic_batches,
    synthetic_linked_modalities,
    synthetic_multiome,
)
from ._trajectory import synthetic_trajectory

__all__ = [
    "data_dir",
    "synthetic_annotation",
    "synthetic_batches",
    "synthetic_linked_modalities",
    "synthetic_multiome",
    "synthetic_trajectory",
]
