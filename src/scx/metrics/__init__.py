"""Integration metrics: in-house FOSCTTM and label transfer, scib-metrics wrappers."""

from ._alignment import foscttm, label_transfer_accuracy
from ._scib import ilisi, kbet, silhouette_label

__all__ = ["foscttm", "ilisi", "kbet", "label_transfer_accuracy", "silhouette_label"]
