"""Epoch-level logging of loss terms, shared by the training plans."""

from __future__ import annotations

from collections.abc import Mapping

import torch


class EpochMeanLoggingMixin:
    """Accumulate per-step loss terms and log their epoch means once per epoch.

    Lightning's ``self.log`` on every step costs as much as a fifth of a small model's step;
    these plans add each step's terms (weighted by the cells in the step) to running sums and
    log ``<term>_<split>`` means in the epoch-end hooks.
    """

    _epoch_sums: dict

    def accumulate(self, metrics: Mapping[str, torch.Tensor], n_obs: int, split: str) -> None:
        """Add one step's scalar metrics, weighted by ``n_obs`` cells."""
        if not hasattr(self, "_epoch_sums"):
            self._epoch_sums = {}
        values = torch.stack([torch.as_tensor(v).detach().float() for v in metrics.values()])
        _, total, count = self._epoch_sums.get(split, (None, 0.0, 0))
        self._epoch_sums[split] = (list(metrics), total + values * n_obs, count + n_obs)

    def running_means(self, split: str = "train") -> dict[str, float]:
        """Means of the current epoch's terms so far (for the progress bar)."""
        sums = getattr(self, "_epoch_sums", {})
        if split not in sums:
            return {}
        names, total, count = sums[split]
        return dict(zip(names, (total / max(count, 1)).tolist()))

    def _log_epoch(self, split: str) -> None:
        sums = getattr(self, "_epoch_sums", {})
        if split not in sums:
            return
        names, total, count = sums.pop(split)
        logged = {f"{name}_{split}": value for name, value in zip(names, total / count)}
        sync = self.trainer is not None and self.trainer.world_size > 1
        self.log_dict(logged, on_step=False, on_epoch=True, sync_dist=sync)

    def on_train_epoch_start(self) -> None:
        """Reset the running sums."""
        self._epoch_sums = {}

    def on_train_epoch_end(self) -> None:
        """Log the epoch means of the training terms."""
        self._log_epoch("train")

    def on_validation_epoch_end(self) -> None:
        """Log the epoch means of the validation terms."""
        self._log_epoch("validation")
