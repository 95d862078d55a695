"""scMODAL: planted types aligned through a few links, imputation, anchors, save/load, errors."""

import mudata
import numpy as np
import pandas as pd
import pytest
import torch

import scx
from conftest import QUIET, assert_unchanged, snapshot
from scx._neighbors import knn_transfer
from scx.scmodal import SCMODAL, SCMODALModule, mutual_nearest_neighbors, resolve_links

#: Small networks and few steps keep the tests fast; the planted structure is easy.
FAST = {"n_hidden": 64, "max_steps": 200, "batch_size": 128, **QUIET}


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
    model = scx.tl.scmodal(mdata, "rna", "prot", links=protein_to_gene(mdata), **FAST)
    return mdata, model


def test_generated_modalities_are_weakly_linked():
    mdata = make_linked()
    assert mdata["rna"].n_vars == 200 and mdata["prot"].n_vars == 20
    assert len(mdata.uns["links"]) == 6
    assert not set(mdata["rna"].obs_names) & set(mdata["prot"].obs_names)


def test_planted_types_are_aligned_across_modalities(linked_run):
    mdata, _ = linked_run
    for m in ("rna", "prot"):
        z = mdata[m].obsm["X_scmodal"]
        assert z.shape == (400, 20) and np.isfinite(z).all()
    assert mdata.obsm["X_scmodal"].shape == (800, 20)
    # chance is about 0.25 with four types
    assert transfer_accuracy(mdata) > 0.85


def test_imputed_protein_follows_the_planted_profiles(linked_run):
    mdata, model = linked_run
    imputed = scx.tl.impute(mdata, model, "rna", "prot")
    assert imputed.shape == (400, 20) and list(imputed.index) == list(mdata["rna"].obs_names)
    assert "prot_from_rna" in mdata.mod and mdata["prot_from_rna"].n_vars == 20
    truth = mdata["prot"].varm["log_profile"][:, mdata["rna"].obs["cell_type"].cat.codes].T
    columns = mdata["prot"].var_names.get_indexer(imputed.columns)
    r = [np.corrcoef(imputed.iloc[:, j], truth[:, c])[0, 1] for j, c in enumerate(columns)]
    # the unlinked proteins too: they are only learned through the alignment
    assert np.mean(r) > 0.7 and np.mean(r[6:]) > 0.6, np.round(r, 2)
    # on the model-input scale (log-normalised), and into the obsm of the source
    scx.tl.impute(mdata, model, "prot", "rna", to="obsm")
    assert mdata["prot"].obsm["scmodal_rna"].shape == (400, 200)


def test_outputs_and_history(linked_run):
    mdata, model = linked_run
    params = mdata.uns["scmodal"]["params"]
    assert params["n_links_given"] == 6 and params["n_links_used"] == 6
    assert params["links_swapped"] is True  # a protein → gene dict for mod1="rna"
    assert params["linked_prot"] == list(mdata.uns["links"]["prot"])
    assert params["max_steps"] == 200 and params["lambda_geo"] == 10.0
    history = model.history
    terms = {"gan", "ae", "la", "mnn", "geo", "n_anchors", "discriminator"}
    assert {f"{t}_train" for t in terms} <= set(history)
    assert history["ae_train"].iloc[-1, 0] < 0.8 * history["ae_train"].iloc[0, 0]
    assert history["mnn_train"].iloc[-1, 0] < history["mnn_train"].iloc[0, 0]
    assert (history["n_anchors_train"].iloc[:, 0] > 0).all()


def test_rna_and_gene_activity_pairing_recovered():
    """Gene → gene links to all of ATAC gene activity; paired cells let FOSCTTM score it."""
    mdata = scx.datasets.synthetic_multiome(
        n_rna=300, n_atac=300, n_genes=150, n_types=4, paired=True, seed=3
    )
    mdata["atac"].obs_names = [f"atac_{c}" for c in mdata["atac"].obs_names]
    mdata.update()
    genes = list(mdata["rna"].var_names)
    links = pd.DataFrame({"atac": genes, "rna": genes})  # columns name the modalities
    scx.tl.scmodal(mdata, "rna", "atac", links=links, **{**FAST, "max_steps": 150})
    assert mdata.uns["scmodal"]["params"]["links_swapped"] is True
    fosc = scx.metrics.foscttm(mdata["rna"].obsm["X_scmodal"], mdata["atac"].obsm["X_scmodal"])
    assert fosc < 0.2, fosc
    assert transfer_accuracy(mdata, "atac") > 0.9


def test_save_load_keeps_discriminator_and_links(linked_run, tmp_path):
    _, model = linked_run
    model.save(tmp_path / "scmodal", save_anndata=True)
    loaded = SCMODAL.load(tmp_path / "scmodal")
    original, restored = model.module.state_dict(), loaded.module.state_dict()
    assert any(k.startswith("discriminators.") for k in original)
    assert set(original) == set(restored)
    for key in original:
        torch.testing.assert_close(original[key], restored[key])
    for m in ("rna", "prot"):
        np.testing.assert_allclose(
            loaded.get_latent_representation(modality=m),
            model.get_latent_representation(modality=m),
            atol=1e-6,
        )
    pd.testing.assert_frame_equal(loaded.get_linked_features(), model.get_linked_features())
    pd.testing.assert_frame_equal(
        loaded.get_imputed("rna", "prot"), model.get_imputed("rna", "prot"), atol=1e-5
    )


def test_same_seed_same_embedding():
    runs = []
    for _ in range(2):
        mdata = make_linked(seed=4, n_rna=200, n_prot=200)
        scx.tl.scmodal(mdata, links=protein_to_gene(mdata), seed=3, **{**FAST, "max_steps": 20})
        runs.append(mdata["prot"].obsm["X_scmodal"])
    np.testing.assert_array_equal(runs[0], runs[1])


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


def _module_batch(module, n=16):
    torch.manual_seed(0)
    return {
        "A": {"X": torch.randn(n, module.n_input[0])},
        "B": {"X": torch.randn(n, module.n_input[1])},
    }


def test_minibatch_without_anchor_pairs_gives_finite_loss():
    module = SCMODALModule(12, 6, [0, 1, 2], [0, 1, 2], n_latent=4, n_hidden=16)
    outputs = module.adversarial_forward(_module_batch(module), 0)
    outputs["anchors"] = torch.zeros_like(outputs["anchors"])  # no mutual pair in this batch
    loss, terms = module.generator_loss(outputs, 0)
    assert torch.isfinite(loss) and terms["mnn"] == 0 and terms["n_anchors"] == 0
    loss.backward()
    grads = [p.grad for p in module.encoders.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    # with pairs, the anchor term is the mean squared latent distance over them
    z_a, z_b = torch.randn(3, 4), torch.randn(2, 4)
    pairs = torch.tensor([[True, False], [False, False], [False, True]])
    expected = (((z_a[0] - z_b[0]) ** 2).mean() + ((z_a[2] - z_b[1]) ** 2).mean()) / 2
    torch.testing.assert_close(module.anchor_loss(z_a, z_b, pairs), expected)


def test_geometry_term_is_capped_and_discriminator_separate():
    module = SCMODALModule(12, 6, [0, 1, 2], [0, 1, 2], n_latent=4, n_hidden=16)
    outputs = module.adversarial_forward(_module_batch(module), 0)
    _, terms = module.generator_loss(outputs, 0)
    assert -2 * 0.975 <= terms["geo"] <= 2
    # the discriminator loss reaches no encoder parameter
    module.discriminator_loss(outputs, 0).backward()
    assert all(p.grad is None for p in module.encoders.parameters())
    assert all(p.grad is not None for p in module.discriminators.parameters())


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


@pytest.mark.parametrize(
    ("prepare", "links", "kwargs", "message"),
    [
        (None, _missing_names, {}, r"2 not in `prot` var_names \(e.g. \['protX', 'protZ'\]\)"),
        (None, _too_few, {}, "Only 2 of the 2 links.*at least 3"),
        (None, lambda m: "CD3", {}, "links"),
        (None, None, {}, "`links` is required"),
        (_with_nan, protein_to_gene, {}, "NaN"),
        (_negative, protein_to_gene, {}, "negative"),
        (None, protein_to_gene, {"mod2": "atac"}, "mod2='atac'"),
        (None, protein_to_gene, {"batch_size": 1000}, "fewer cells than the mini-batch"),
        (None, protein_to_gene, {"lambda_mnn": -1.0}, "lambda_mnn"),
        (None, protein_to_gene, {"max_steps": 0}, "max_steps"),
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
    params = mdata.uns["scmodal"]["params"]
    assert params["n_links_given"] == 8 and params["n_links_used"] == 6
    assert params["n_links_dropped"] == 2


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
    before = snapshot(mdata)
    for kwargs, message in [
        ({"source": "atac", "target": "prot"}, "source='atac'"),
        ({"source": "rna", "target": "rna"}, "must differ"),
        ({"source": "rna", "target": "prot", "to": "layer"}, "`to`"),
        ({"source": "rna", "target": "prot", "key_added": "prot"}, "overwrite"),
    ]:
        with pytest.raises(ValueError, match=message):
            scx.tl.impute(mdata, model, **kwargs)
    with pytest.raises(ValueError, match="cross-modal model"):
        scx.tl.impute(mdata, object(), "rna", "prot")
    assert_unchanged(before, mdata)
