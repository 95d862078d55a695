"""Index samplers that feed one modality's mini-batches into a multi-modality step."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from torch.utils.data import Sampler


class CyclingBatchSampler(Sampler[np.ndarray]):
    """Yield exactly ``n_batches`` index batches per epoch from one modality.

    Every modality of a multi-modality data module gets its own sampler with the same
    ``n_batches``, so the modalities stay in lock-step and a smaller modality simply cycles: when
    its current permutation is used up a fresh one is drawn (nothing is cached, unlike
    ``itertools.cycle``). Batches are always full, so batch statistics (covariances, BatchNorm)
    see ``batch_size`` cells at every step.

    Under distributed data parallel training every rank draws the same global stream from the
    shared seed and takes its own disjoint slice of each global batch, so ``world_size`` ranks
    together see ``world_size * batch_size`` distinct cells per step.

    Parameters
    ----------
    indices
        Row indices (into the registered AnnData) this sampler draws from.
    batch_size
        Cells per batch on each rank.
    n_batches
        Batches per epoch on each rank.
    replacement
        Draw uniformly with replacement (scJoint's reference loader) instead of cycling through
        random permutations.
    shuffle
        Permute the indices (ignored with ``replacement``); without shuffling the stream walks
        through ``indices`` in order, for validation.
    seed
        Base seed; the stream of epoch ``e`` depends only on ``(seed, e)``.
    rank, world_size
        Position of this process in a distributed run.
    """

    def __init__(
        self,
        indices: np.ndarray,
        batch_size: int,
        n_batches: int,
        *,
        replacement: bool = False,
        shuffle: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ):
        self.indices = np.asarray(indices, dtype=np.int64)
        if self.indices.size == 0:
            raise ValueError("A modality with no cells cannot be sampled.")
        self.batch_size = int(batch_size)
        self.n_batches = int(n_batches)
        self.replacement = replacement
        self.shuffle = shuffle
        self.seed = int(seed)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch's stream (Lightning calls this at the start of every epoch)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.n_batches

    def _global_stream(self, rng: np.random.Generator, n_draws: int) -> np.ndarray:
        n = self.indices.size
        if self.replacement:
            return rng.integers(0, n, size=n_draws)
        if not self.shuffle:
            return np.resize(np.arange(n), n_draws)
        n_perm = -(-n_draws // n)
        return np.concatenate([rng.permutation(n) for _ in range(n_perm)])[:n_draws]

    def __iter__(self) -> Iterator[np.ndarray]:
        rng = np.random.default_rng([self.seed, self.epoch])
        global_batch = self.batch_size * self.world_size
        stream = self._global_stream(rng, self.n_batches * global_batch)
        stream = stream.reshape(self.n_batches, self.world_size, self.batch_size)[:, self.rank]
        for positions in stream:
            yield self.indices[positions]
