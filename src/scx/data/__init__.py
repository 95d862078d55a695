"""Data layer for unpaired multi-modality training on scvi-tools."""

from ._datamodule import ModalitySource, MultiModalDataModule, PartnerSampling
from ._sampler import CyclingBatchSampler, PartnerBatchSampler

__all__ = [
    "CyclingBatchSampler",
    "ModalitySource",
    "MultiModalDataModule",
    "PartnerBatchSampler",
    "PartnerSampling",
]
