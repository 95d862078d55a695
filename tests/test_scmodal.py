"""scMODAL: planted types aligned through a few links, imputation, anchors, stored
preprocessing, save/load, errors."""

import mudata
import numpy as np
import pandas as pd
import pytest
import torch
from scipy import sparse

import scx
from conftest import QUIET, assert_unchanged, snapshot
from scx._neighbors import knn_transfer
from scx.scmodal import (
    MIN_LINKED_TARGET,
    SCMODAL,
    SCMODALModule,
    anchor_loss,
    kernel_rows,
    mutual_nearest_neighbors,
    resolve_links,
    shared_neighbor_scores,
)

#: Small networks and few steps keep the tests fast; the planted structure is easy.
FAST = {"n_hidden": 64, "max_steps": 200, "batch_size": 128, "trainer_kwargs": QUIET}
ROLES = ("rna", "prot")


def make_linked(seed: int = 0, **kwargs) -> mudata.MuData:
    params = {"n_rna": 400, "n_prot": 400, "n_genes": 200, "n_proteins": 20, "n_types": 4}
    return scx.datasets.synthetic_linked_modalities(**{**params, "n_links": 6, **kwargs}, seed=seed)


def protein_to_gene(mdata: mudata.MuData) -> dict:
    links = mdata.uns["links"]
    return dict(zip(links["prot"], links["gene"], strict=True))


def transfer_accuracy(mdata: mudata.MuData, other: str = "prot", key: str = "X_scmodal") -> float:
    """kNN (k = 20) label transfer RNA → the other modality in the joint latent."""
    rna, prot = mdata["rna"], mdata[other]
    predicted, _, _ = knn_transfer(
        rna.obsm[key], rna.obs["cell_type"], prot.obsm[key], n_neighbors=20
    )
    return float(np.mean(predicted == prot.obs["cell_type"].astype(str).to_numpy()))


@pytest.fixture(scope="module")
def linked_run():
    """One scMODAL run on generated RNA + protein with 6 of 20 proteins linked."""
    mdata = make_linked()
    model = scx.tl.scmodal(mdata, modalities=ROLES, links=protein_to_gene(mdata), **FAST)
    return mdata, model


def test_generated_modalities_are_weakly_linked():
    mdata = make_linked()
    assert mdata["rna"].n_vars == 200 and mdata["prot"].n_vars == 20
    assert len(mdata.uns["links"]) == 6
    assert not set(mdata["rna"].obs_names) & set(mdata["prot"].obs_names)


def test_planted_types_are_aligned_across_modalities(linked_run):
    mdata, _ = linked_run
    for m in ROLES:
        z = mdata[m].obsm["X_scmodal"]
        assert z.shape == (400, 20) and np.isfinite(z).all()
    assert mdata.obsm["X_scmodal"].shape == (800, 20)
    # chance is about 0.25 with four types
    assert transfer_accuracy(mdata) > 0.85


@pytest.mark.parametrize("seed", [0, 1])
def test_scored_anchors_align_planted_types(seed):
    mdata = make_linked(seed)
    links = protein_to_gene(mdata)
    scx.tl.scmodal(mdata, modalities=ROLES, links=links, score_anchors=True, seed=seed, **FAST)
    assert mdata.uns["scmodal"]["params"]["score_anchors"] is True
    assert transfer_accuracy(mdata) > 0.85


@pytest.mark.parametrize("seed", [0, 1])
def test_averaged_weights_align_planted_types(seed):
    mdata = make_linked(seed)
    links = protein_to_gene(mdata)
    scx.tl.scmodal(mdata, modalities=ROLES, links=links, ema_decay=0.99, seed=seed, **FAST)
    assert mdata.uns["scmodal"]["params"]["ema_decay"] == 0.99
    assert transfer_accuracy(mdata) > 0.85


@pytest.mark.parametrize("seed", [0, 1])
def test_bfloat16_default_aligns_planted_types(seed, cpu_with_bfloat16_units):
    """On a CPU with bfloat16 units the default is bf16-mixed training, recorded, and learns."""
    mdata = make_linked(seed)
    links = protein_to_gene(mdata)
    model = scx.tl.scmodal(mdata, modalities=ROLES, links=links, seed=seed, **FAST)
    assert str(model.trainer.precision) == "bf16-mixed"
    assert mdata.uns["scmodal"]["params"]["precision"] == "bf16-mixed"
    # the embedding is computed after training, in float32
    assert mdata["rna"].obsm["X_scmodal"].dtype == np.float32
    assert transfer_accuracy(mdata) > 0.85


def test_bfloat16_default_is_seeded_and_yields_to_trainer_precision(cpu_with_bfloat16_units):
    mdata = make_linked()
    links = protein_to_gene(mdata)
    runs = [mdata.copy() for _ in range(2)]
    for run in runs:
        scx.tl.scmodal(run, modalities=ROLES, links=links, seed=3, **{**FAST, "max_steps": 30})
    np.testing.assert_array_equal(runs[0].obsm["X_scmodal"], runs[1].obsm["X_scmodal"])
    fast = {**FAST, "trainer_kwargs": {**QUIET, "precision": "32-true"}, "max_steps": 30}
    model = scx.tl.scmodal(mdata, modalities=ROLES, links=links, seed=3, **fast)
    assert str(model.trainer.precision) == "32-true"
    assert mdata.uns["scmodal"]["params"]["precision"] == "32-true"


def test_native_bfloat16_only_on_cpus():
    assert scx.train.native_bfloat16(torch.device("meta")) is False
    assert isinstance(scx.train.native_bfloat16(torch.device("cpu")), bool)


@pytest.mark.parametrize("strategy", ["neighbors", "generator"])
def test_imputed_protein_follows_the_planted_profiles(linked_run, strategy):
    mdata, model = linked_run
    mdata = mdata.copy()
    assert scx.tl.impute(mdata, model, source="rna", target="prot", strategy=strategy) is None
    imputed = mdata["prot_from_rna"].to_df()
    assert imputed.shape == (400, 20) and list(imputed.index) == list(mdata["rna"].obs_names)
    record = mdata.uns["prot_from_rna"]
    assert record["params"] == {
        "source": "rna",
        "target": "prot",
        "strategy": strategy,
        "n_neighbors": 30,
        "to": "modality",
    }
    assert list(record["outputs"]["modalities"]) == ["prot_from_rna"]
    truth = mdata["prot"].varm["log_profile"][:, mdata["rna"].obs["cell_type"].cat.codes].T
    columns = mdata["prot"].var_names.get_indexer(imputed.columns)
    r = [np.corrcoef(imputed.iloc[:, j], truth[:, c])[0, 1] for j, c in enumerate(columns)]
    # the unlinked proteins too: they are only learned through the alignment
    assert np.mean(r) > 0.7 and np.mean(r[6:]) > 0.6, np.round(r, 2)
    # on the model-input scale (log-normalised), and into the obsm of the source
    scx.tl.impute(mdata, model, source="prot", target="rna", strategy=strategy, to="obsm")
    assert mdata["prot"].obsm["scmodal_rna"].shape == (400, 200)
    assert list(mdata["prot"].obsm["scmodal_rna"].columns) == list(model.var_names_of("rna"))
    pd.testing.assert_frame_equal(
        mdata["prot"].obsm["scmodal_rna"],
        model.get_imputed("prot", "rna", strategy=strategy),
        check_names=False,
    )


def test_neighbor_imputation_is_the_mean_of_the_nearest_target_cells(linked_run):
    """Checked against a brute-force search of the latent, and sparse targets stay exact."""
    _, model = linked_run
    z_rna = model.get_latent_representation(modality="rna")
    z_prot = model.get_latent_representation(modality="prot")
    distances = ((z_rna[:, None, :] - z_prot[None, :, :]) ** 2).sum(-1)
    nearest = np.argsort(distances, axis=1)[:, :7]
    measured = model.adata["prot"].X
    measured = measured.toarray() if hasattr(measured, "toarray") else np.asarray(measured)
    expected = measured[nearest].mean(axis=1)
    imputed = model.get_imputed("rna", "prot", n_neighbors=7)
    assert list(imputed.columns) == list(model.var_names_of("prot"))
    np.testing.assert_allclose(imputed.to_numpy(), expected, rtol=1e-5, atol=1e-6)
    # RNA predicted for protein cells: the RNA values are sparse
    genes = model.adata["rna"].X
    assert hasattr(genes, "toarray")
    nearest = np.argsort(distances.T, axis=1)[:, :7]
    np.testing.assert_allclose(
        model.get_imputed("prot", "rna", n_neighbors=7).to_numpy(),
        np.asarray(genes.toarray())[nearest].mean(axis=1),
        rtol=1e-5,
        atol=1e-6,
    )


def test_impute_rerun_replaces_and_copy_leaves_input(linked_run):
    mdata, model = linked_run
    work = mdata.copy()
    before = snapshot(work)
    result = scx.tl.impute(work, model, source="rna", target="prot", key_added="p", copy=True)
    assert_unchanged(before, work)
    assert "p" in result.mod and result.uns["p"]["function"] == "scx.tl.impute"
    # the same name again replaces the earlier output, also when it moves to .obsm
    scx.tl.impute(result, model, source="rna", target="prot", key_added="p", to="obsm")
    assert "p" not in result.mod and result["rna"].obsm["p"].shape == (400, 20)
    assert list(result.uns["p"]["outputs"]["obsm"]) == ["p"]
    # the old positional form still works
    with pytest.warns(FutureWarning, match="by position"):
        scx.tl.impute(work, model, "rna", "prot")
    assert "prot_from_rna" in work.mod


def test_outputs_and_history(linked_run):
    mdata, model = linked_run
    record = mdata.uns["scmodal"]
    params = record["params"]
    assert record["n_links_given"] == 6 and record["n_links_used"] == 6
    assert record["links_swapped"] is True  # a protein → gene dict for modalities[0] = "rna"
    assert record["n_features"] == {"rna": 200, "prot": 20}
    assert params["links"]["prot"] == list(mdata.uns["links"]["prot"])
    assert params["modalities"] == ["rna", "prot"]
    assert params["max_steps"] == 200 and params["max_epochs"] == 2
    assert params["lambda_geo"] == 10.0 and params["n_discriminator_steps"] == 5
    history = model.history
    terms = {"gan", "ae", "la", "mnn", "geo", "n_anchors", "discriminator"}
    assert {f"{t}_train" for t in terms} <= set(history)
    assert history["ae_train"].iloc[-1, 0] < 0.8 * history["ae_train"].iloc[0, 0]
    assert history["mnn_train"].iloc[-1, 0] < history["mnn_train"].iloc[0, 0]
    assert (history["n_anchors_train"].iloc[:, 0] > 0).all()


def test_preprocessing_is_a_stored_transform(linked_run):
    """The reference's recipe as fitted numbers, re-applied exactly to the user's counts."""
    mdata, model = linked_run
    state = model.input_state_
    linked_genes = list(dict.fromkeys(protein_to_gene(mdata).values()))
    totals = np.asarray(mdata["rna"][:, linked_genes].X.sum(axis=1)).ravel()
    for m in ROLES:
        transform = state["transforms"][m]
        assert transform["kind"] == "log_blocks"
        linked_target, _ = transform["target_sums"]
        assert linked_target == max(float(np.median(totals)), MIN_LINKED_TARGET)
        mapped = scx.pp.apply_transform(transform, mdata[m])
        registered = model.adata[m].X
        assert (abs(mapped - registered) > 0).nnz == 0
        assert list(model.var_names_of(m)) == list(transform["features"])
        assert model.adata[m].var["linked"].sum() == 6


def test_new_cells_from_raw_counts(linked_run):
    mdata, model = linked_run
    new = mdata["rna"][:60].copy()
    new = new[:, new.var_names[::-1]].copy()  # any feature order
    np.testing.assert_allclose(
        model.get_latent_representation(new, modality="rna"),
        model.get_latent_representation(modality="rna")[:60],
        atol=1e-5,
    )
    pd.testing.assert_frame_equal(
        model.get_imputed("rna", "prot", new), model.get_imputed("rna", "prot").iloc[:60], atol=1e-5
    )
    with pytest.raises(ValueError, match="lacks"):
        model.get_latent_representation(new[:, :50].copy(), modality="rna")
    # rows of the model's own (preprocessed) inputs are recognised as such
    np.testing.assert_allclose(
        model.get_latent_representation(model.adata["rna"][:60].copy(), modality="rna"),
        model.get_latent_representation(modality="rna")[:60],
        atol=1e-5,
    )
    # impute into a MuData of new cells maps them the same way
    other = mudata.MuData({"rna": new})
    scx.tl.impute(other, model, source="rna", target="prot")
    np.testing.assert_allclose(
        other["prot_from_rna"].X, model.get_imputed("rna", "prot").iloc[:60], atol=1e-5
    )


def test_rna_and_gene_activity_pairing_recovered():
    """Gene → gene links to all of ATAC gene activity; paired cells let FOSCTTM score it."""
    mdata = scx.datasets.synthetic_multiome(
        n_rna=300, n_atac=300, n_genes=150, n_types=4, paired=True, seed=3
    )
    mdata["atac"].obs_names = [f"atac_{c}" for c in mdata["atac"].obs_names]
    mdata.update()
    genes = list(mdata["rna"].var_names)
    links = pd.DataFrame({"atac": genes, "rna": genes})  # columns name the modalities
    scx.tl.scmodal(mdata, modalities=("rna", "atac"), links=links, **{**FAST, "max_steps": 150})
    assert mdata.uns["scmodal"]["links_swapped"] is True
    fosc = scx.metrics.foscttm(mdata["rna"].obsm["X_scmodal"], mdata["atac"].obsm["X_scmodal"])
    assert fosc < 0.2, fosc
    assert transfer_accuracy(mdata, "atac") > 0.9


def test_save_load_keeps_discriminator_and_links(linked_run, tmp_path):
    mdata, model = linked_run
    model.save(tmp_path / "with_data", save_anndata=True)
    model.save(tmp_path / "weights")
    before = snapshot(mdata)
    for loaded in (
        SCMODAL.load(tmp_path / "with_data"),
        SCMODAL.load(tmp_path / "weights", adata=mdata),  # the user's counts
    ):
        original, restored = model.module.state_dict(), loaded.module.state_dict()
        assert any(k.startswith("discriminators.") for k in original)
        assert set(original) == set(restored)
        for key in original:
            torch.testing.assert_close(original[key], restored[key])
        for m in ROLES:
            np.testing.assert_allclose(
                loaded.get_latent_representation(modality=m),
                model.get_latent_representation(modality=m),
                atol=1e-6,
            )
        pd.testing.assert_frame_equal(loaded.get_linked_features(), model.get_linked_features())
        pd.testing.assert_frame_equal(
            loaded.get_imputed("rna", "prot"), model.get_imputed("rna", "prot"), atol=1e-5
        )
        # new raw cells still go through the stored preprocessing
        np.testing.assert_allclose(
            loaded.get_latent_representation(mdata["prot"][:30].copy(), modality="prot"),
            model.get_latent_representation(modality="prot")[:30],
            atol=1e-5,
        )
    assert_unchanged(before, mdata)


def test_same_seed_same_embedding():
    runs = []
    for _ in range(2):
        mdata = make_linked(seed=4, n_rna=200, n_prot=200)
        scx.tl.scmodal(mdata, links=protein_to_gene(mdata), seed=3, **{**FAST, "max_steps": 20})
        runs.append(mdata["prot"].obsm["X_scmodal"])
    np.testing.assert_array_equal(runs[0], runs[1])


def test_values_as_they_are_with_preprocess_false():
    """Log-normalised values in a layer: used as they are, the layer kept for new cells."""
    mdata = make_linked(seed=8, n_rna=200, n_prot=200)
    for m in ROLES:
        X = mdata[m].X
        mdata[m].layers["lognorm"] = scx.pp.log_normalize(sparse.csr_matrix(X, dtype="f4"), 1e4)
        mdata[m].X = sparse.csr_matrix(X.shape, dtype="f4")  # .X must not be read
    with pytest.warns(FutureWarning, match="mod1"):
        model = scx.tl.scmodal(
            mdata,
            mod1="rna",
            mod2="prot",
            links=protein_to_gene(mdata),
            layer="lognorm",
            preprocess=False,
            **{**FAST, "max_steps": 20},
        )
    assert model.input_state_["transforms"]["rna"]["kind"] == "features"
    assert list(model.var_names_of("rna")) == list(mdata["rna"].var_names)
    assert model.adata["rna"].layers["lognorm"] is mdata["rna"].layers["lognorm"]
    assert mdata.uns["scmodal"]["params"]["preprocess"] is False
    new = mdata["rna"][:20].copy()
    np.testing.assert_allclose(
        model.get_latent_representation(new, modality="rna"),
        mdata["rna"].obsm["X_scmodal"][:20],
        atol=1e-5,
    )


# ---------------------------------------------------------------------------- module
def test_mutual_nearest_neighbors_match_brute_force():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 5)), rng.normal(size=(30, 5))
    k = 4
    got = mutual_nearest_neighbors(torch.tensor(x), torch.tensor(y), k).numpy()
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    yn = y / np.linalg.norm(y, axis=1, keepdims=True)
    sim = xn @ yn.T
    near_xy = np.zeros_like(sim, bool)
    np.put_along_axis(near_xy, np.argsort(-sim, axis=1)[:, :k], True, axis=1)
    near_yx = np.zeros_like(sim, bool)
    np.put_along_axis(near_yx, np.argsort(-sim, axis=0)[:k], True, axis=0)
    np.testing.assert_array_equal(got, near_xy & near_yx)
    assert got.sum() > 0


def test_shared_neighbor_scores_match_brute_force():
    rng = np.random.default_rng(1)
    x_a, x_b = torch.tensor(rng.normal(size=(25, 6))), torch.tensor(rng.normal(size=(20, 4)))
    anchors = torch.tensor(rng.random((25, 20)) < 0.2)
    k = 5
    got = shared_neighbor_scores(anchors, kernel_rows(x_a), kernel_rows(x_b), k).numpy()
    near_a = np.argsort(((x_a[:, None] - x_a[None]) ** 2).sum(-1).numpy(), axis=1)[:, :k]
    near_b = np.argsort(((x_b[:, None] - x_b[None]) ** 2).sum(-1).numpy(), axis=1)[:, :k]
    expected = np.zeros((25, 20))
    for i, j in zip(*np.nonzero(anchors.numpy()), strict=True):
        expected[i, j] = anchors.numpy()[np.ix_(near_a[i], near_b[j])].mean()
    np.testing.assert_allclose(got, expected, atol=1e-12)
    assert (got[~anchors.numpy()] == 0).all() and got.max() > 0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_anchor_scores_favour_pairs_their_neighbourhoods_agree_on(seed):
    """Weak links pair cells of different types by chance; each modality's own
    neighbourhoods (strong structure on all features) expose those pairs."""
    rng = np.random.default_rng(seed)
    n, n_types = 300, 4
    types_a, types_b = rng.integers(n_types, size=n), rng.integers(n_types, size=n)

    def cells(types, n_features, signal):
        centres = rng.normal(size=(n_types, n_features)) * signal
        return torch.tensor(centres[types] + rng.normal(size=(len(types), n_features)))

    weak = rng.normal(size=(n_types, 4)) * 0.8  # the same weak linked profile on both sides
    link_a = torch.tensor(weak[types_a] + rng.normal(size=(n, 4)))
    link_b = torch.tensor(weak[types_b] + rng.normal(size=(n, 4)))
    full_a = torch.cat([link_a, cells(types_a, 30, 2.0)], 1)
    full_b = torch.cat([link_b, cells(types_b, 20, 2.0)], 1)
    anchors = mutual_nearest_neighbors(link_a, link_b, 20)
    scores = shared_neighbor_scores(anchors, kernel_rows(full_a), kernel_rows(full_b), 20)
    same = torch.tensor(types_a[:, None] == types_b[None, :], dtype=scores.dtype)
    plain = float((anchors * same).sum() / anchors.sum())
    scored = float((scores * same).sum() / scores.sum())
    assert plain < 0.65  # the links alone pair types poorly (chance: 0.25) ...
    assert scored > plain + 0.1  # ... the scores recover much of the structure


def _module_batch(module, n=16):
    torch.manual_seed(0)
    a, b = module.modalities
    return {
        a: {"X": torch.randn(n, module.n_input[0])},
        b: {"X": torch.randn(n, module.n_input[1])},
    }


def _module() -> SCMODALModule:
    return SCMODALModule(
        12, 6, [0, 1, 2], [0, 1, 2], modalities=["rna", "prot"], n_latent=4, n_hidden=16
    )


def test_minibatch_without_anchor_pairs_gives_finite_loss():
    module = _module()
    outputs = module.forward_step(_module_batch(module), 0)
    outputs["anchors"] = torch.zeros_like(outputs["anchors"])  # no mutual pair in this batch
    loss, terms = module.training_loss(outputs, 0)
    assert torch.isfinite(loss) and terms["mnn"] == 0 and terms["n_anchors"] == 0
    loss.backward()
    grads = [p.grad for p in module.encoders.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    # with pairs, the anchor term is the mean squared latent distance over them
    z_a, z_b = torch.randn(3, 4), torch.randn(2, 4)
    pairs = torch.tensor([[True, False], [False, False], [False, True]])
    expected = (((z_a[0] - z_b[0]) ** 2).mean() + ((z_a[2] - z_b[1]) ** 2).mean()) / 2
    torch.testing.assert_close(anchor_loss(z_a, z_b, pairs), expected)
    # weighted pairs give the weighted mean; all-zero weights contribute nothing
    weights = torch.tensor([[0.75, 0.0], [0.0, 0.0], [0.0, 0.25]])
    expected = 0.75 * ((z_a[0] - z_b[0]) ** 2).mean() + 0.25 * ((z_a[2] - z_b[1]) ** 2).mean()
    torch.testing.assert_close(anchor_loss(z_a, z_b, weights), expected)
    assert anchor_loss(z_a, z_b, torch.zeros(3, 2)) == 0


def test_anchors_and_anchor_term_stay_float32_under_bfloat16_autocast():
    """Mixed precision rounds the networks' products, not the anchor search or distances."""
    module = SCMODALModule(40, 12, list(range(6)), list(range(6)), n_latent=8, n_hidden=32)
    batch = {"A": {"X": torch.randn(200, 40)}, "B": {"X": torch.randn(200, 12)}}
    exact = module.forward_step(batch, 0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = module.forward_step(batch, 0)
        assert mixed["z_a"].dtype == torch.bfloat16  # the networks do run in bfloat16
        term = anchor_loss(mixed["z_a"], mixed["z_b"], mixed["anchors"])
    assert torch.equal(mixed["anchors"], exact["anchors"])
    torch.testing.assert_close(mixed["kernel_a"], exact["kernel_a"])
    # close latents: the distance expansion must not cancel in bfloat16
    z = torch.randn(50, 8) * 10
    near = z + 1e-2 * torch.randn(50, 8)
    pairs = torch.eye(50, dtype=torch.bool)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        close = anchor_loss(z, near, pairs)
    assert term.dtype == close.dtype == torch.float32
    torch.testing.assert_close(close, anchor_loss(z, near, pairs))


def test_geometry_term_is_capped_and_discriminator_separate():
    module = _module()
    outputs = module.forward_step(_module_batch(module), 0)
    _, terms = module.training_loss(outputs, 0)
    assert -2 * 0.975 <= terms["geo"] <= 2
    # the discriminator loss reaches no encoder parameter
    module.discriminator_loss(outputs, 0).backward()
    assert all(p.grad is None for p in module.encoders.parameters())
    assert all(p.grad is not None for p in module.discriminators.parameters())


def test_embed_and_translate_by_modality_position():
    module = _module().eval()
    x = torch.randn(5, 12)
    z = module.embed(x, 0)
    torch.testing.assert_close(z, module.encoders[0](module.standardize(x, 0)))
    torch.testing.assert_close(module.translate(x, 0, 1), module.generative(z, 1)["x"])
    assert module.translate(x, 0, 1).shape == (5, 6)


# ---------------------------------------------------------------------------- links
def test_link_formats_orientation_and_counts():
    features = {
        "rna": pd.Index(["CD3E", "CD3D", "CD4", "CD19", "MS4A1"]),
        "prot": pd.Index(["CD3", "CD4", "CD19", "CD20"]),
    }
    as_dict = {"CD3": ["CD3E", "CD3D"], "CD4": "CD4", "CD19": "CD19", "CD20": "MS4A1"}
    resolved = resolve_links(as_dict, features)
    assert resolved.swapped and resolved.n_used == 5 and resolved.n_given == 5
    assert list(resolved.pairs.columns) == ["rna", "prot"]
    assert resolved.counts()["n_linked_prot"] == 4
    pairs = [("CD3E", "CD3"), ("CD4", "CD4"), ("CD19", "CD19"), ("CD4", "CD4")]  # a duplicate
    resolved = resolve_links(pairs, features)
    assert not resolved.swapped and resolved.n_used == 3
    frame = pd.DataFrame(
        {"prot": ["CD3", "CD4", "CD19", "CDX"], "rna": ["CD3E", "CD4", "CD19", "X"]}
    )
    resolved = resolve_links(frame, features, drop_missing=True)
    assert resolved.n_used == 3 and resolved.counts()["n_links_dropped"] == 1
    assert resolved.missing == {"rna": ["X"], "prot": ["CDX"]}


# ---------------------------------------------------------------------------- bad input
def _missing_names(mdata):
    return {**protein_to_gene(mdata), "protX": "geneY", "protZ": "gene0"}


def _too_few(mdata):
    return dict(list(protein_to_gene(mdata).items())[:2])


def _with_nan(mdata):
    X = mdata["rna"].X.toarray()
    X[3, 5] = np.nan
    mdata["rna"].X = X


def _negative(mdata):
    X = mdata["prot"].X.toarray()
    X[0, 0] = -1.0
    mdata["prot"].X = X


def _duplicated_genes(mdata):
    names = list(mdata["rna"].var_names)
    names[10] = names[11]
    mdata["rna"].var_names = names


@pytest.mark.parametrize(
    ("prepare", "links", "kwargs", "message"),
    [
        (None, _missing_names, {}, r"2 not in `prot` var_names \(e.g. \['protX', 'protZ'\]\)"),
        (None, _too_few, {}, "Only 2 of the 2 links.*at least 3"),
        (None, lambda m: "CD3", {}, "links"),
        (None, None, {}, "`links` is required"),
        (_with_nan, protein_to_gene, {}, "NaN"),
        (_negative, protein_to_gene, {}, "negative"),
        (_duplicated_genes, protein_to_gene, {}, "duplicated feature names"),
        (None, protein_to_gene, {"modalities": ("rna", "atac")}, r"modalities\[1\]='atac'"),
        (None, protein_to_gene, {"modalities": ("rna", "rna")}, "must be different modalities"),
        (None, protein_to_gene, {"layer": {"protein": "counts"}}, "`layer` names modalities"),
        (None, protein_to_gene, {"batch_size": 1000}, "fewer than `batch_size="),
        (None, protein_to_gene, {"batch_size": 1}, "batch_size"),
        (None, protein_to_gene, {"lambda_mnn": -1.0}, "lambda_mnn"),
        (None, protein_to_gene, {"lambda_gan": float("nan")}, "lambda_gan"),
        (None, protein_to_gene, {"lr": 0.0}, "`lr`"),
        (None, protein_to_gene, {"n_discriminator_steps": 0}, "n_discriminator_steps"),
        (None, protein_to_gene, {"init_std": -0.1}, "init_std"),
        (None, protein_to_gene, {"n_top_features": -1}, "n_top_features"),
        (None, protein_to_gene, {"preprocess": "yes"}, "preprocess"),
        (None, protein_to_gene, {"score_anchors": "yes"}, "score_anchors"),
        (None, protein_to_gene, {"ema_decay": 1.5}, "ema_decay"),
        (None, protein_to_gene, {"max_steps": 0}, "max_steps"),
        (None, protein_to_gene, {"max_steps": 5, "max_epochs": 1}, "either"),
    ],
)
def test_bad_input_is_rejected_before_training(prepare, links, kwargs, message):
    mdata = make_linked(seed=5, n_rna=150, n_prot=150)
    if prepare is not None:
        prepare(mdata)
    before = snapshot(mdata)
    with pytest.raises(ValueError, match=message):
        scx.tl.scmodal(
            mdata,
            links=None if links is None else links(mdata),
            **{**FAST, "max_steps": 5, **kwargs},
        )
    assert_unchanged(before, mdata)


def test_non_numeric_input_is_rejected():
    mdata = make_linked(seed=5, n_rna=150, n_prot=150)
    mdata["prot"].layers["text"] = mdata["prot"].X.toarray().astype(str)
    with pytest.raises(ValueError, match="non-numeric"):
        scx.tl.scmodal(
            mdata, links=protein_to_gene(mdata), layer={"prot": "text"}, **{**FAST, "max_steps": 5}
        )
    assert "scmodal" not in mdata.uns
    assert all("X_scmodal" not in mdata[m].obsm for m in mdata.mod)


def test_missing_links_can_be_dropped_and_are_reported():
    mdata = make_linked(seed=6, n_rna=150, n_prot=150)
    scx.tl.scmodal(
        mdata,
        links=_missing_names(mdata),
        drop_missing_links=True,
        **{**FAST, "max_steps": 5},
    )
    record = mdata.uns["scmodal"]
    assert record["n_links_given"] == 8 and record["n_links_used"] == 6
    assert record["n_links_dropped"] == 2
    assert record["params"]["drop_missing_links"] is True
    assert len(record["params"]["links"]["rna"]) == 6


def test_model_needs_a_mudata_of_two_modalities():
    mdata = make_linked(seed=7, n_rna=100, n_prot=100)
    with pytest.raises(ValueError, match="setup_mudata"):
        SCMODAL.setup_anndata(mdata["rna"])
    mdata.mod["third"] = mdata["prot"].copy()
    mdata.update()
    SCMODAL.setup_mudata(mdata)
    with pytest.raises(ValueError, match="exactly two modalities"):
        SCMODAL(mdata, links=protein_to_gene(mdata))


def test_impute_rejects_bad_arguments(linked_run):
    mdata, model = linked_run
    mdata["rna"].obsm["mine"] = np.zeros((mdata["rna"].n_obs, 2))
    mdata.uns["notes"] = {"user": "data"}
    before = snapshot(mdata)
    for kwargs, message in [
        ({"source": "atac", "target": "prot"}, "source='atac'"),
        ({"target": "prot"}, "`source` is required"),
        ({"source": "rna", "target": "rna"}, "must differ"),
        ({"source": "rna", "target": "prot", "to": "layer"}, "`to`"),
        ({"source": "rna", "target": "prot", "key_added": "prot"}, "measured modality"),
        ({"source": "rna", "target": "prot", "to": "obsm", "key_added": "mine"}, "mine"),
        ({"source": "rna", "target": "prot", "to": "obsm", "key_added": "X_scmodal"}, "obsm"),
        ({"source": "rna", "target": "prot", "key_added": "scmodal"}, "uns"),
        ({"source": "rna", "target": "prot", "key_added": "notes"}, "uns"),
        ({"source": "rna", "target": "prot", "key_added": "a/b"}, "key_added"),
        ({"source": "rna", "target": "prot", "copy": "yes"}, "copy"),
    ]:
        with pytest.raises(ValueError, match=message):
            scx.tl.impute(mdata, model, **kwargs)
    with pytest.raises(ValueError, match="cross-modal model"):
        scx.tl.impute(mdata, object(), source="rna", target="prot")
    with pytest.raises(ValueError, match="MuData"):
        scx.tl.impute(mdata["rna"], model, source="rna", target="prot")
    assert_unchanged(before, mdata)
    del mdata["rna"].obsm["mine"], mdata.uns["notes"]
