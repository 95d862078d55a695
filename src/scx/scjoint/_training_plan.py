"""Optimisation of one scJoint stage."""

from __future__ import annotations

import logging

import numpy as np
import torch
from scvi import REGISTRY_KEYS
from scvi.train import TrainingPlan

from scx.train import EpochMeanLoggingMixin

from ._module import SCJOINTModule

logger = logging.getLogger(__name__)


class SCJOINTTrainingPlan(EpochMeanLoggingMixin, TrainingPlan):
    """SGD training of stage 1 (no pseudo-labels) or stage 3 (with pseudo-labels).

    One optimiser covers encoder, classifier and (learned) centres: the reference's two SGD
    optimisers have identical settings and per-parameter state, so this is the same update.

    Parameters
    ----------
    module
        The scJoint module.
    reference
        Name of the labelled modality.
    pseudo_labels
        Stage 3 only: ``{query modality: codes}`` indexed by the rows of that modality's
        registered AnnData, −1 for cells excluded from the stage-3 label losses.
    lr
        SGD learning rate (0.01 in the reference).
    momentum
        SGD momentum (0.9).
    weight_decay
        SGD weight decay (0).
    lr_decay_epochs
        Multiply the learning rate by ``lr_decay_factor`` every this many epochs (20).
    lr_decay_factor
        Step decay factor (0.1).
    """

    def __init__(
        self,
        module: SCJOINTModule,
        *,
        reference: str,
        pseudo_labels: dict[str, np.ndarray] | None = None,
        lr: float = 0.01,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        lr_decay_epochs: int = 20,
        lr_decay_factor: float = 0.1,
    ):
        super().__init__(module, lr=lr, weight_decay=weight_decay, n_epochs_kl_warmup=None)
        self.reference = reference
        self.momentum = momentum
        self.lr_decay_epochs = lr_decay_epochs
        self.lr_decay_factor = lr_decay_factor
        self.stage = 1 if pseudo_labels is None else 3
        self._pseudo_buffers: dict[str, str] = {}
        for i, (modality, codes) in enumerate((pseudo_labels or {}).items()):
            name = f"pseudo_labels_{i}"
            # a buffer follows the plan to the training device
            self.register_buffer(name, torch.as_tensor(codes, dtype=torch.long), persistent=False)
            self._pseudo_buffers[modality] = name
        self._n_skipped = 0
        if isinstance(module.centers, torch.nn.Parameter):
            # centres only enter the stage-3 loss; a parameter without gradient in stage 1
            # would stall distributed data parallel's gradient reduction
            module.centers.requires_grad_(self.stage == 3)

    def _step(self, batch: dict[str, dict[str, torch.Tensor]]):
        outputs = {
            m: self.module.inference(tensors[REGISTRY_KEYS.X_KEY], modality=m)
            for m, tensors in batch.items()
        }
        labels = batch[self.reference][REGISTRY_KEYS.LABELS_KEY].long().view(-1)
        pseudo = None
        if self.stage == 3:
            pseudo = {
                m: getattr(self, name)[batch[m][REGISTRY_KEYS.INDICES_KEY].long().view(-1)]
                for m, name in self._pseudo_buffers.items()
            }
        return self.module.loss(outputs, labels, reference=self.reference, pseudo_labels=pseudo)

    def epoch_extras(self) -> dict[str, float]:
        """The stage (1 or 3) of every epoch, so that histories of both stages can be told apart."""
        return {"stage": float(self.stage)}

    def training_step(self, batch, batch_idx):
        """One SGD step on a batch of every modality."""
        loss_output = self._step(batch)
        if not torch.isfinite(loss_output.loss):
            # skip the update instead of writing NaN into the weights (reference issue #7)
            self._n_skipped += 1
            logger.warning(
                "Non-finite scJoint loss at epoch %d step %d; step skipped (%d so far). Lower "
                "`lr` or pass `gradient_clip_val` to `train` if this repeats.",
                self.current_epoch,
                batch_idx,
                self._n_skipped,
            )
            return None
        self.accumulate(loss_output.extra_metrics, loss_output.n_obs_minibatch, "train")
        return loss_output.loss

    def validation_step(self, batch, batch_idx):
        """Validation losses on held-out cells."""
        loss_output = self._step(batch)
        self.accumulate(loss_output.extra_metrics, loss_output.n_obs_minibatch, "validation")

    def configure_optimizers(self):
        """SGD with step learning-rate decay."""
        params = [p for p in self.module.parameters() if p.requires_grad]
        optimizer = torch.optim.SGD(
            params, lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay
        )
        scheduler = torch.optim.lr_scheduler.StepLR(
            optimizer, step_size=self.lr_decay_epochs, gamma=self.lr_decay_factor
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"},
        }
