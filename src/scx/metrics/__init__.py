"""Integration metrics: in-house FOSCTTM, label transfer and mixing; scib-metrics wrappers."""

from ._alignment import foscttm, label_transfer_accuracy
from ._mixing import cross_modality_neighbor_rate
from ._mixing_metric import mixing_metric
from ._scib import ilisi, kbet, silhouette_label

__all__ = [
    "cross_modality_neighbor_rate",
    "foscttm",
    "ilisi",
    "kbet",
    "label_transfer_accuracy",
    "mixing_metric",
    "silhouette_label",
]
