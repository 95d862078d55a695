"""Lightning data module that yields ``{modality: tensors}`` for unpaired training."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.utilities import CombinedLoader
from scvi import REGISTRY_KEYS, settings
from scvi.data import AnnDataManager
from torch.utils.data import DataLoader, Dataset

from ._sampler import CyclingBatchSampler, PartnerBatchSampler

logger = logging.getLogger(__name__)


@dataclass
class ModalitySource:
    """Where one modality's cells live: a registered AnnData and the rows that belong to it.

    A MuData modality uses all rows of its own AnnData; a single AnnData split by a key
    (several datasets over the same genes) gives one source per category, all sharing one
    manager. ``features`` optionally replaces the registered input (``X``) by an array with one
    row per row of the AnnData, e.g. cells already mapped into another dataset's space by an
    earlier training stage. ``extras`` adds per-cell training data that is not part of the
    registered inputs (``{batch key: array with one row per row of the AnnData}``), such as
    diffusion coordinates, pseudo-labels or anchor flags.
    """

    manager: AnnDataManager
    indices: np.ndarray
    features: np.ndarray | None = None
    extras: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def n_obs(self) -> int:
        """Number of cells of this modality."""
        return int(self.indices.size)


@dataclass
class PartnerSampling:
    """Draw candidate partners of ``of``'s training batches into ``modality``'s batches.

    See :class:`~scx.data.PartnerBatchSampler`: ``partners`` (rows of ``of``'s AnnData × k)
    holds row indices of ``modality``'s AnnData (−1: none), ``weights`` their weights.
    """

    modality: str
    of: str
    partners: np.ndarray
    weights: np.ndarray | None = None


class _IndexedDataset(Dataset):
    """A modality's torch dataset whose batches also carry row indices and per-cell extras.

    The row indices (``ind_x``) and the source's ``extras`` reach the training plan with the
    inputs.
    """

    def __init__(self, source: ModalitySource, load_sparse_tensor: bool):
        keys = list(source.manager.data_registry)
        if source.features is not None:
            keys.remove(REGISTRY_KEYS.X_KEY)  # never read the input that is replaced
        self.dataset = source.manager.create_torch_dataset(
            data_and_attributes=keys, load_sparse_tensor=load_sparse_tensor
        )
        self.features = source.features
        self.extras = source.extras

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, indices: np.ndarray) -> dict:
        batch = self.dataset[indices] if self.dataset.keys_and_dtypes else {}
        if self.features is not None:
            batch[REGISTRY_KEYS.X_KEY] = np.asarray(self.features[indices], dtype=np.float32)
        for key, values in self.extras.items():
            batch[key] = np.asarray(values[indices])
        batch[REGISTRY_KEYS.INDICES_KEY] = np.asarray(indices, dtype=np.int64)[:, None]
        return batch


def _densify(batch):
    if isinstance(batch, dict):
        return {key: _densify(value) for key, value in batch.items()}
    if isinstance(batch, torch.Tensor) and batch.layout in (torch.sparse_csr, torch.sparse_csc):
        return batch.to_dense()
    return batch


class MultiModalDataModule(pl.LightningDataModule):
    """Mini-batches from several unpaired modalities, one batch of each per step.

    Each training step yields ``{modality: {registry_key: tensor}}``. All modalities advance in
    lock-step for ``steps_per_epoch`` steps; a smaller modality cycles through fresh
    permutations, so an epoch covers the largest modality once by default. Sparse matrices stay
    sparse in the AnnData and are densified one mini-batch at a time.

    Under Lightning's distributed data parallel strategies each rank receives its own disjoint
    slice of every global batch (see :class:`CyclingBatchSampler`); the trainer must be created
    with ``use_distributed_sampler=False`` so Lightning does not replace the samplers.

    Parameters
    ----------
    sources
        ``{modality: ModalitySource}``.
    batch_size
        Cells per modality per step on each device (an int, or a dict per modality).
    train_size
        Fraction of each modality's cells used for training; the rest (or ``validation_size``
        of them) is held out for validation losses.
    validation_size
        Fraction used for validation; defaults to ``1 - train_size``.
    steps_per_epoch
        Steps per epoch. ``None`` covers the largest modality's training cells once per epoch.
    steps_per_device
        With several devices, every device takes ``steps_per_epoch`` steps (each on its own
        slice of every global batch), so the optimiser takes that many steps whatever the number
        of devices: the schedules of step-based methods (Portal, scMODAL) count optimiser steps.
        ``False`` shares ``steps_per_epoch`` out across the devices, so an epoch is the same
        amount of data on one device or several.
    replacement
        Sample cells with replacement instead of cycling through permutations.
    seed
        Seed of the train/validation split and of the samplers.
    sampler_seed
        Separate seed for the samplers (e.g. a new stream for a second training stage over the
        same split); defaults to ``seed``.
    load_sparse_tensor
        Move sparse mini-batches to the device as sparse tensors and densify them there (can
        speed up host-to-GPU transfer of very sparse data).
    pin_memory
        Passed to the data loaders.
    paired
        The modalities hold the same cells in the same row order (a paired multiome bridge):
        one train/validation split and one index stream are shared by all modalities, so row
        ``i`` of every modality's mini-batch is the same cell. Needs equal cell counts and
        batch sizes.
    partner_sampling
        Put candidate partners of one modality's training batches into another's
        (:class:`PartnerSampling`), so that a loss on cross-modality pairs sees them together.
    """

    def __init__(
        self,
        sources: dict[str, ModalitySource],
        batch_size: int | dict[str, int] = 128,
        *,
        train_size: float = 1.0,
        validation_size: float | None = None,
        steps_per_epoch: int | None = None,
        steps_per_device: bool = False,
        replacement: bool = False,
        seed: int = 0,
        sampler_seed: int | None = None,
        load_sparse_tensor: bool = False,
        pin_memory: bool = False,
        paired: bool = False,
        partner_sampling: PartnerSampling | None = None,
    ):
        super().__init__()
        if not sources:
            raise ValueError("`sources` must hold at least one modality.")
        self.sources = sources
        names = list(sources)
        if isinstance(batch_size, dict):
            missing = set(names) - set(batch_size)
            if missing:
                raise ValueError(
                    f"`batch_size` has no entry for modalities {sorted(missing)}; pass an int "
                    "or a dict with every modality."
                )
            self.batch_size = {m: int(batch_size[m]) for m in names}
        else:
            self.batch_size = dict.fromkeys(names, int(batch_size))
        if not 0 < train_size <= 1:
            raise ValueError(f"`train_size` must be in (0, 1], got {train_size}.")
        if validation_size is None:
            validation_size = 1.0 - train_size
        if validation_size < 0 or train_size + validation_size > 1 + 1e-9:
            raise ValueError(
                f"`validation_size` must be in [0, 1 - train_size], got {validation_size}."
            )
        self.train_size = float(train_size)
        self.validation_size = float(validation_size)
        self.steps_per_epoch = steps_per_epoch
        self.steps_per_device = bool(steps_per_device)
        self.replacement = replacement
        self.seed = int(seed)
        self.sampler_seed = self.seed if sampler_seed is None else int(sampler_seed)
        self.load_sparse_tensor = load_sparse_tensor
        self.pin_memory = pin_memory
        self.paired = bool(paired)
        self.partner_sampling = partner_sampling
        if partner_sampling is not None:
            pair = {partner_sampling.modality, partner_sampling.of}
            if paired or len(pair) != 2 or pair - set(names):
                raise ValueError(
                    "`partner_sampling` needs two different, unpaired modalities of `sources`, "
                    f"got {partner_sampling.modality!r} and {partner_sampling.of!r} of {names}"
                    f"{' (paired=True)' if paired else ''}; pass two of {names} with "
                    "`paired=False`, or `partner_sampling=None`."
                )
        if self.paired:
            sizes = {m: s.n_obs for m, s in sources.items()}
            if len(set(sizes.values())) != 1 or len(set(self.batch_size.values())) != 1:
                raise ValueError(
                    f"`paired=True` needs the same cells and batch size in every modality; got "
                    f"cells {sizes} and batch sizes {self.batch_size}."
                )
        self._split()

    def _split(self) -> None:
        rng = np.random.default_rng(self.seed)
        self.train_idx, self.val_idx, self.test_idx = {}, {}, {}
        for name, source in self.sources.items():
            n = source.n_obs
            n_train = int(np.ceil(self.train_size * n))
            # the epsilon keeps 1 - 0.8 = 0.19999… from dropping a cell
            n_val = min(int(np.floor(self.validation_size * n + 1e-9)), n - n_train)
            if not (self.paired and self.train_idx):  # paired: one split for all modalities
                perm = rng.permutation(n) if n_train < n else np.arange(n)
            self.train_idx[name] = source.indices[np.sort(perm[:n_train])]
            self.val_idx[name] = source.indices[np.sort(perm[n_train : n_train + n_val])]
            self.test_idx[name] = source.indices[np.sort(perm[n_train + n_val :])]
            if self.train_idx[name].size < self.batch_size[name]:
                raise ValueError(
                    f"Modality {name!r} has {self.train_idx[name].size} training cells, fewer "
                    f"than `batch_size={self.batch_size[name]}`; pass `batch_size` ≤ "
                    f"{self.train_idx[name].size}."
                )

    @property
    def n_train(self) -> int:
        """Training cells over all modalities."""
        return int(sum(idx.size for idx in self.train_idx.values()))

    @property
    def n_val(self) -> int:
        """Validation cells over all modalities."""
        return int(sum(idx.size for idx in self.val_idx.values()))

    def _world(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 0, 1
        return int(trainer.global_rank), int(trainer.world_size)

    def n_batches(self, world_size: int = 1) -> int:
        """Steps per epoch on each device."""
        if self.steps_per_epoch is not None:
            if self.steps_per_device:
                return max(1, int(self.steps_per_epoch))
            return max(1, -(-int(self.steps_per_epoch) // world_size))
        per_modality = [
            -(-self.train_idx[m].size // (self.batch_size[m] * world_size)) for m in self.sources
        ]
        return max(1, max(per_modality))

    def _loaders(self, indices: dict[str, np.ndarray], n_batches: int, *, train: bool):
        rank, world_size = self._world()

        def uniform(k: int, name: str) -> CyclingBatchSampler:
            return CyclingBatchSampler(
                indices[name],
                batch_size=min(self.batch_size[name], indices[name].size),
                n_batches=n_batches,
                replacement=self.replacement and train,
                shuffle=train,
                # one independent stream per modality (one shared stream when paired), the same
                # on all ranks
                seed=self.sampler_seed * 1_000 + (0 if self.paired else k) + (0 if train else 500),
                rank=rank,
                world_size=world_size,
            )

        names = list(self.sources)
        samplers = {name: uniform(k, name) for k, name in enumerate(names)}
        pairing = self.partner_sampling
        if pairing is not None and train:
            samplers[pairing.modality] = PartnerBatchSampler(
                samplers[pairing.modality],
                uniform(names.index(pairing.of), pairing.of),  # replays the other's batches
                pairing.partners,
                pairing.weights,
            )
        loaders = {}
        for name, source in self.sources.items():
            loaders[name] = DataLoader(
                _IndexedDataset(source, self.load_sparse_tensor),
                sampler=samplers[name],
                batch_size=None,
                num_workers=settings.dl_num_workers,
                persistent_workers=settings.dl_persistent_workers and settings.dl_num_workers > 0,
                pin_memory=self.pin_memory,
            )
        return CombinedLoader(loaders, mode="max_size_cycle")

    def train_dataloader(self) -> CombinedLoader:
        """One batch per modality per step."""
        _, world_size = self._world()
        return self._loaders(self.train_idx, self.n_batches(world_size), train=True)

    def val_dataloader(self) -> CombinedLoader | list:
        """Validation batches (cycling the smaller modality), or none without validation cells."""
        if any(idx.size == 0 for idx in self.val_idx.values()):
            return []
        _, world_size = self._world()
        n_batches = max(
            -(-self.val_idx[m].size // (self.batch_size[m] * world_size)) for m in self.sources
        )
        return self._loaders(self.val_idx, n_batches, train=False)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        """Densify sparse mini-batches on the device."""
        return _densify(batch) if self.load_sparse_tensor else batch
