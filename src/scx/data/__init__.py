"""Data layer for unpaired multi-modality training on scvi-tools."""

from ._datamodule import ModalitySource, MultiModalDataModule
from ._sampler import CyclingBatchSampler

__all__ = ["CyclingBatchSampler", "ModalitySource", "MultiModalDataModule"]
