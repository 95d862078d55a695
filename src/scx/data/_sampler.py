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


class PartnerBatchSampler(Sampler[np.ndarray]):
    """One modality's batches that hold candidate partners of another modality's batches.

    A loss on cross-modality pairs (a cell of modality B and its candidate partner in A) can
    only act on pairs whose two cells share a step. With independent batches of ``b`` cells
    from ``n``, a pair is together in only ``b / n`` of the steps that draw its B cell, so the
    term weakens as the data grow. This sampler replays the B sampler's stream (a twin with
    the same seed, epoch and rank yields the same batches) and, for every B cell of the step
    with partners, puts one of them, drawn in proportion to its weight, into A's batch; the
    rest of A's batch is A's own uniform draw. At most ``max_fraction`` of A's batch is given
    to partners, so A's batches keep following A's own distribution for the other terms.

    Parameters
    ----------
    own
        A's uniform sampler (its indices are the cells a partner may come from).
    other
        A twin of B's sampler: the same arguments, so it yields B's batches.
    partners
        ``(rows of B's AnnData, k)`` row indices of A's AnnData, −1 for none.
    weights
        Partner weights of the same shape (``None``: equal); rows whose weights are all 0
        draw uniformly among their partners.
    max_fraction
        Largest share of A's batch given to partners.
    """

    def __init__(
        self,
        own: CyclingBatchSampler,
        other: CyclingBatchSampler,
        partners: np.ndarray,
        weights: np.ndarray | None = None,
        *,
        max_fraction: float = 0.5,
    ):
        self.own, self.other = own, other
        partners = np.asarray(partners, dtype=np.int64)
        # a partner outside A's sampled cells (e.g. held out for validation) is no partner
        usable = (partners >= 0) & np.isin(partners, own.indices)
        self.partners = np.where(usable, partners, -1)
        w = np.ones(partners.shape) if weights is None else np.asarray(weights, np.float64)
        w = np.where(usable, np.clip(w, 0.0, None), 0.0)
        # all-zero rows with partners: equal weights among them
        w[(w.sum(1) == 0)[:, None] & usable] = 1.0
        self.log_weights = np.log(w, out=np.full(w.shape, -np.inf), where=w > 0)
        self.max_partners = int(max_fraction * own.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch's stream of both samplers."""
        self.own.set_epoch(epoch)
        self.other.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.own)

    def __iter__(self) -> Iterator[np.ndarray]:
        rng = np.random.default_rng([self.own.seed, self.own.epoch, self.own.rank, 1])
        size = self.own.batch_size
        for own_batch, other_batch in zip(self.own, self.other, strict=True):
            log_w = self.log_weights[other_batch]
            has = np.isfinite(log_w).any(1)
            # one partner per B cell, drawn ∝ weight (Gumbel-max over its row)
            pick = np.argmax(log_w[has] + rng.gumbel(size=(int(has.sum()), log_w.shape[1])), 1)
            chosen = self.partners[other_batch[has], pick]
            chosen = rng.permutation(np.unique(chosen))[: self.max_partners]
            rest = own_batch[~np.isin(own_batch, chosen)][: size - chosen.size]
            yield np.concatenate([chosen, rest])
