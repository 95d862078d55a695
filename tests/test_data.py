import numpy as np
import pytest
import torch
from scipy import sparse
from scvi import REGISTRY_KEYS

from conftest import make_unpaired
from scx.data import (
    CyclingBatchSampler,
    ModalitySource,
    MultiModalDataModule,
    PartnerBatchSampler,
    PartnerSampling,
)
from scx.scjoint import SCJOINT


# ---------------------------------------------------------------------------- sampler
def test_sampler_yields_full_batches_and_covers_every_cell_before_repeating():
    indices = np.arange(100, 170)  # 70 cells
    sampler = CyclingBatchSampler(indices, batch_size=16, n_batches=9, seed=3)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 9
    assert all(b.size == 16 for b in batches)
    stream = np.concatenate(batches)
    # the first 70 draws are one permutation of all cells; then a fresh one starts
    assert sorted(stream[:70]) == list(indices)
    assert sorted(stream[70:140]) == list(indices)


def test_sampler_epochs_and_seeds():
    indices = np.arange(50)
    sampler = CyclingBatchSampler(indices, batch_size=10, n_batches=5, seed=0)
    first = np.concatenate(list(sampler))
    np.testing.assert_array_equal(first, np.concatenate(list(sampler)))
    sampler.set_epoch(1)
    assert not np.array_equal(first, np.concatenate(list(sampler)))
    other_seed = CyclingBatchSampler(indices, batch_size=10, n_batches=5, seed=1)
    assert not np.array_equal(first, np.concatenate(list(other_seed)))


def test_sampler_with_replacement_and_without_shuffle():
    indices = np.arange(10)
    repl = np.concatenate(list(CyclingBatchSampler(indices, 8, 50, replacement=True)))
    assert len(np.unique(repl)) == 10 and repl.size == 400
    ordered = np.concatenate(list(CyclingBatchSampler(indices, 4, 5, shuffle=False)))
    np.testing.assert_array_equal(ordered, np.resize(np.arange(10), 20))


def test_sampler_shards_disjoint_slices_across_ranks():
    indices = np.arange(1000)
    ranks = [
        list(CyclingBatchSampler(indices, 32, 10, seed=5, rank=r, world_size=3)) for r in range(3)
    ]
    single = list(CyclingBatchSampler(indices, 96, 10, seed=5))
    for step in range(10):
        parts = [ranks[r][step] for r in range(3)]
        union = np.concatenate(parts)
        assert len(set(union)) == 96  # no cell on two devices in the same step
        np.testing.assert_array_equal(union, single[step])


# ---------------------------------------------------------------------------- data module
@pytest.fixture
def registered():
    mdata, _ = make_unpaired(n_rna=300, n_atac=130, n_genes=50)
    SCJOINT.setup_mudata(mdata, modalities=["rna", "atac"], labels_key={"rna": "cell_type"})
    model = SCJOINT(mdata)
    return mdata, model


def test_datamodule_yields_one_batch_per_modality_per_step(registered):
    mdata, model = registered
    dm = MultiModalDataModule(model.sources, batch_size=64, seed=0)
    loader = dm.train_dataloader()
    batches = list(loader)
    # the largest modality (300 cells) defines the epoch: ceil(300 / 64) steps
    assert len(batches) == 5
    seen = {"rna": [], "atac": []}
    for batch, *_ in batches:
        assert set(batch) == {"rna", "atac"}
        for m, tensors in batch.items():
            x = tensors[REGISTRY_KEYS.X_KEY]
            assert isinstance(x, torch.Tensor) and x.layout == torch.strided
            assert x.shape == (64, 50)
            ind = tensors[REGISTRY_KEYS.INDICES_KEY].view(-1).numpy()
            expected = mdata[m].X[ind].toarray()
            np.testing.assert_array_equal(x.numpy(), expected)
            seen[m].append(ind)
    assert len(np.unique(np.concatenate(seen["rna"]))) == 300
    # the smaller modality cycled: 320 draws over 130 cells, each cell at least twice
    assert np.bincount(np.concatenate(seen["atac"]), minlength=130).min() >= 2
    # X stays sparse in the AnnData
    assert sparse.issparse(mdata["rna"].X) and sparse.issparse(mdata["atac"].X)


def test_datamodule_validation_split_and_errors(registered):
    _, model = registered
    dm = MultiModalDataModule(model.sources, batch_size=32, train_size=0.8)
    assert dm.n_train + dm.n_val == 430
    for m in ("rna", "atac"):
        assert not set(dm.train_idx[m]) & set(dm.val_idx[m])
    val_batches = list(dm.val_dataloader())
    assert len(val_batches) == 2  # ceil(60 / 32) for rna's 60 validation cells
    no_val = MultiModalDataModule(model.sources, batch_size=32)
    assert no_val.val_dataloader() == []
    with pytest.raises(ValueError, match="batch_size"):
        MultiModalDataModule(model.sources, batch_size=200)
    with pytest.raises(ValueError, match="train_size"):
        MultiModalDataModule(model.sources, batch_size=32, train_size=0)
    with pytest.raises(ValueError, match="no entry"):
        MultiModalDataModule(model.sources, batch_size={"rna": 32})


def test_datamodule_steps_per_epoch_and_sparse_tensors(registered):
    _, model = registered
    dm = MultiModalDataModule(model.sources, batch_size=16, steps_per_epoch=3)
    assert len(list(dm.train_dataloader())) == 3
    sparse_dm = MultiModalDataModule(model.sources, batch_size=16, load_sparse_tensor=True)
    batch, *_ = next(iter(sparse_dm.train_dataloader()))
    assert batch["rna"][REGISTRY_KEYS.X_KEY].layout == torch.sparse_csr
    dense = sparse_dm.on_after_batch_transfer(batch, 0)
    assert dense["rna"][REGISTRY_KEYS.X_KEY].layout == torch.strided


def _partner_table(n_atac: int, n_rna: int, seed: int = 0):
    """Half the ATAC rows with 1–3 distinct RNA partners (−1 padding) and positive weights."""
    rng = np.random.default_rng(seed)
    partners = np.full((n_atac, 3), -1)
    weights = np.zeros((n_atac, 3), np.float32)
    for row in rng.choice(n_atac, n_atac // 2, replace=False):
        k = rng.integers(1, 4)
        partners[row, :k] = rng.choice(n_rna, k, replace=False)
        weights[row, :k] = rng.uniform(0.1, 1.0, k)
    return partners, weights


def test_partner_sampler_puts_a_partner_of_every_paired_cell_into_the_batch():
    partners, weights = _partner_table(130, 300)
    atac = CyclingBatchSampler(np.arange(130), 32, 20, seed=1)
    rna = CyclingBatchSampler(np.arange(300), 64, 20, seed=0)
    twin = CyclingBatchSampler(np.arange(130), 32, 20, seed=1)
    sampler = PartnerBatchSampler(rna, twin, partners, weights)
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        atac.set_epoch(epoch)
        steps = list(zip(atac, sampler, strict=True))
        assert len(steps) == 20
        for atac_batch, rna_batch in steps:
            assert rna_batch.size == 64 and np.isin(rna_batch, np.arange(300)).all()
            paired = atac_batch[(partners[atac_batch] >= 0).any(1)]
            # ≤ 32 paired cells, under the cap of half the batch: every one meets a partner
            for row in paired:
                assert np.isin(partners[row][partners[row] >= 0], rna_batch).any()
    # the same stream again for the same epoch
    sampler.set_epoch(1)
    again = list(sampler)
    np.testing.assert_array_equal(np.concatenate(again), np.concatenate([b for _, b in steps]))


def test_partner_sampler_draws_partners_in_proportion_to_their_weights_under_a_cap():
    # every ATAC cell has partners 0 and 1 (weights 3 : 1) among 1,000 RNA cells
    partners = np.tile([0, 1, -1], (40, 1))
    weights = np.tile([3.0, 1.0, 0.0], (40, 1))
    counts = np.zeros(2)
    sampler = PartnerBatchSampler(
        CyclingBatchSampler(np.arange(1000), 10, 400, seed=0),
        CyclingBatchSampler(np.arange(40), 1, 400, seed=1),
        partners,
        weights,
    )
    for batch in sampler:
        counts += [0 in batch[:1], 1 in batch[:1]]
    # the drawn partner leads the batch: partner 0 about 3 times as often as partner 1
    assert counts.sum() == 400
    assert 0.70 < counts[0] / 400 < 0.80
    # a cap of half the batch: 200 paired ATAC cells with distinct partners fill only 50 of 100
    capped = PartnerBatchSampler(
        CyclingBatchSampler(np.arange(1000, 2000), 100, 3, seed=0),
        CyclingBatchSampler(np.arange(200), 200, 3, seed=1),
        np.arange(1000, 1200)[:, None],
    )
    for batch in capped:
        # 50 partners, and the uniform half holds ~8 more of them by chance (not 50)
        n_partners = np.isin(batch, np.arange(1000, 1200)).sum()
        assert batch.size == 100 and 50 <= n_partners <= 75


def test_datamodule_partner_sampling(registered):
    _, model = registered
    partners, weights = _partner_table(130, 300, seed=2)
    pairing = PartnerSampling("rna", "atac", partners, weights)
    dm = MultiModalDataModule(
        model.sources, batch_size=32, seed=0, partner_sampling=pairing, train_size=0.9
    )
    plain = MultiModalDataModule(model.sources, batch_size=32, seed=0, train_size=0.9)
    met, met_plain = 0, 0
    for (batch, *_), (plain_batch, *_) in zip(dm.train_dataloader(), plain.train_dataloader()):
        ind = {m: t[REGISTRY_KEYS.INDICES_KEY].view(-1).numpy() for m, t in batch.items()}
        # the ATAC stream is unchanged; RNA cells come from the training split only
        np.testing.assert_array_equal(
            ind["atac"], plain_batch["atac"][REGISTRY_KEYS.INDICES_KEY].view(-1).numpy()
        )
        assert np.isin(ind["rna"], dm.train_idx["rna"]).all() and ind["rna"].size == 32
        plain_rna = plain_batch["rna"][REGISTRY_KEYS.INDICES_KEY].view(-1).numpy()
        for row in ind["atac"]:
            usable = partners[row][np.isin(partners[row], dm.train_idx["rna"])]
            if usable.size:
                met += np.isin(usable, ind["rna"]).any()
                met_plain += np.isin(usable, plain_rna).any()
    # uniform batches of 32 of 270 cells meet a partner rarely; partner batches nearly always
    assert met > 3 * met_plain
    for modality, of in (("rna", "x"), ("rna", "rna")):
        with pytest.raises(ValueError, match="partner_sampling"):
            MultiModalDataModule(
                model.sources,
                batch_size=32,
                partner_sampling=PartnerSampling(modality, of, partners),
            )


def test_sources_of_split_anndata_share_one_manager():
    import anndata as ad

    mdata, _ = make_unpaired(n_rna=50, n_atac=40, n_genes=20)
    rna, atac = mdata["rna"].copy(), mdata["atac"].copy()
    atac.obs["cell_type"] = "x"
    rna.obs["dataset"], atac.obs["dataset"] = "a", "b"
    adata = ad.concat([rna, atac])
    SCJOINT.setup_anndata(adata, modality_key="dataset", labels_key="cell_type")
    model = SCJOINT(adata, reference="a")
    assert model.sources["a"].manager is model.sources["b"].manager
    np.testing.assert_array_equal(model.sources["b"].indices, np.arange(50, 90))
    assert isinstance(model.sources["a"], ModalitySource)


def test_setup_errors():
    mdata, _ = make_unpaired(n_rna=50, n_atac=40, n_genes=20)
    with pytest.raises(ValueError, match="modalities"):
        SCJOINT.setup_mudata(mdata, modalities=["rna", "gex"])
    with pytest.raises(ValueError, match=r"names modalities \['prot'\]"):
        SCJOINT.setup_mudata(mdata, labels_key={"prot": "x"})
    with pytest.raises(ValueError, match="setup_anndata"):
        SCJOINT.setup_mudata(mdata["rna"])
    with pytest.raises(ValueError, match="modality_key"):
        SCJOINT.setup_anndata(mdata["rna"], modality_key="nope")


def test_generated_peaks_have_unique_names_when_positions_clash():
    """Peaks drawn at the same position of a gene are moved apart, not given the same name."""
    import numpy as np

    from scx.datasets._synthetic import _peaks_for_genes, synthetic_annotation

    annotation = synthetic_annotation(4)
    annotation["end"] = annotation["start"] + 601  # room for one position only
    peaks, gene_of_peak = _peaks_for_genes(annotation, 5, 3, np.random.default_rng(0))
    assert peaks.index.is_unique and len(peaks) == 4 * 5 + 3
    assert (gene_of_peak[:20] == np.repeat(np.arange(4), 5)).all()
