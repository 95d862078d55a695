"""Base class of the five modules: scvi-tools' module interface on top of the scx contract."""

from __future__ import annotations

import torch
from scvi import REGISTRY_KEYS
from scvi.module.base import BaseModuleClass, LossOutput, auto_move_data


class ModuleBase(BaseModuleClass):
    """scvi-tools' abstract module methods, written once for all five methods.

    A method's module implements the scx contract (see :mod:`scx.train`): ``embed(x,
    modality)``, ``forward_step(batch, step)``, ``training_loss(outputs, step)`` and, with
    discriminators, ``discriminator_loss``. scvi-tools' ``inference`` is then the embedding of
    one modality's batch; ``generative`` is empty unless the method decodes (scMODAL,
    scPairing override it); ``loss`` is unavailable because every method's loss needs the
    batches of all modalities at once; none of the methods is a probabilistic model to
    ``sample`` from.
    """

    def embed(self, x: torch.Tensor, modality: int) -> torch.Tensor:
        """Embedding of a mini-batch of modality number ``modality``."""
        raise NotImplementedError

    def _get_inference_input(self, tensors: dict[str, torch.Tensor], **kwargs) -> dict:
        return {"x": tensors[REGISTRY_KEYS.X_KEY]}

    @auto_move_data
    def inference(self, x: torch.Tensor, modality: int = 0) -> dict[str, torch.Tensor]:
        """Embedding ``z`` of a batch of cells of modality ``modality``."""
        return {"z": self.embed(x, modality)}

    def _get_generative_input(self, tensors, inference_outputs, **kwargs) -> dict:
        return {"z": inference_outputs["z"]}

    def generative(self, z: torch.Tensor, modality: int = 0) -> dict[str, torch.Tensor]:
        """No generative part (methods that decode override this)."""
        return {}

    def loss(self, tensors, inference_outputs, generative_outputs) -> LossOutput:
        """Not available: the training loss needs every modality's batch."""
        raise NotImplementedError(
            f"{type(self).__name__}'s loss needs the batches of all modalities; use "
            "`forward_step` and `training_loss`."
        )

    def sample(self, *args, **kwargs):
        """Not available: the methods are not probabilistic generative models."""
        raise NotImplementedError(f"{type(self).__name__} has no likelihood to sample from.")
