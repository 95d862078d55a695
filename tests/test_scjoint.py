import matplotlib

matplotlib.use("Agg")

import anndata as ad
import mudata
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
import torch

import scx
from conftest import QUIET, assert_unchanged, make_unpaired, snapshot
from scx.scjoint import (
    REFERENCE_SETTINGS,
    SCJOINT,
    center_loss,
    cosine_top_p_loss,
    nndr_loss,
)


# ---------------------------------------------------------------------------- losses
def test_nndr_code_variant_matches_definition():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(32, 5))
    centred = z - z.mean(0)
    cov = centred.T @ centred / 31
    expected = np.abs(np.triu(cov, 1)).sum() / 25 + 1 / np.abs(centred).mean() + np.abs(z).mean()
    got = nndr_loss(torch.tensor(z), "code").item()
    assert got == pytest.approx(expected, rel=1e-6)


def test_nndr_paper_variant_uses_correlation():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(64, 4)) * np.array([1, 10, 100, 1000])
    corr = np.corrcoef(z.T)
    centred = z - z.mean(0)
    expected = (np.abs(corr).sum() - 4) / 12 + 1 / np.abs(centred).mean() + np.abs(z.mean(0)).mean()
    assert nndr_loss(torch.tensor(z), "paper").item() == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="nndr"):
        nndr_loss(torch.tensor(z), "other")


def test_cosine_top_p_leaves_out_worst_matches():
    reference = torch.tensor([[1.0, 0.0]])
    query = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.0]])
    # best cosines: 1, 0, 0.707, -1; top 2 of 4 at p=0.5
    assert cosine_top_p_loss(query, reference, 0.5).item() == pytest.approx(-(1 + 0.5**0.5) / 2)


def test_center_loss_is_finite_at_the_centre_and_pulls_centres():
    centers = torch.zeros(3, 2, requires_grad=True)
    z = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
    labels = torch.tensor([0, 1])
    loss = center_loss(z, labels, centers)
    assert loss.item() == pytest.approx(5 / (2 * 3))
    loss.backward()
    assert torch.isfinite(centers.grad).all()
    # the gradient moves centre 1 towards its cell at (3, 4)
    assert (centers.grad[1] * torch.tensor([3.0, 4.0])).sum() < 0


# ---------------------------------------------------------------------------- tool
def test_scjoint_transfers_planted_labels(trained_scjoint):
    mdata, truth, _ = trained_scjoint
    scores = scx.metrics.label_transfer_accuracy(truth, mdata["atac"].obs["scjoint_label"])
    assert scores["accuracy"] > 0.9
    assert scores["macro_f1"] > 0.9


def test_scjoint_outputs(trained_scjoint):
    mdata, _, model = trained_scjoint
    rna_rows = scx.base.global_rows(mdata, "rna")
    atac_rows = scx.base.global_rows(mdata, "atac")
    z = mdata.obsm["X_scjoint"]
    assert z.shape == (mdata.n_obs, 64)
    assert np.isfinite(z).all()
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1, rtol=1e-5)
    np.testing.assert_array_equal(z[atac_rows], mdata["atac"].obsm["X_scjoint"])
    label = mdata.obs["scjoint_label"]
    assert isinstance(label.dtype, pd.CategoricalDtype)
    assert label.iloc[rna_rows].isna().all() and label.iloc[atac_rows].notna().all()
    assert set(label.cat.categories) == set(model.labels_)
    conf = mdata.obs["scjoint_confidence"].to_numpy()
    assert np.isnan(conf[rna_rows]).all()
    assert ((conf[atac_rows] > 0) & (conf[atac_rows] <= 1)).all()
    params = mdata.uns["scjoint"]["params"]
    assert params["labels_key"] == "cell_type" and params["n_pcs"] == 30
    # confidence is the real neighbour agreement: recompute it from the embedding
    rna_z, atac_z = mdata["rna"].obsm["X_scjoint"], mdata["atac"].obsm["X_scjoint"]
    idx, _ = scx._neighbors.knn(rna_z, atac_z, 30)
    neighbour_labels = mdata["rna"].obs["cell_type"].astype(str).to_numpy()[idx]
    agreement = (neighbour_labels == label.iloc[atac_rows].astype(str).to_numpy()[:, None]).mean(1)
    np.testing.assert_allclose(conf[atac_rows], agreement, atol=1e-6)


def test_scjoint_history_and_plot(trained_scjoint):
    _, _, model = trained_scjoint
    history = model.history
    for key in ("loss_train", "nndr_train", "cosine_train", "ce_reference_train", "stage"):
        assert key in history
    assert "center_train" in history and "ce_query_train" in history
    stages = history["stage"].iloc[:, 0].astype(float).to_numpy()
    assert list(stages) == [1.0] * 8 + [3.0] * 8
    axes = scx.pl.history(model)
    assert axes.size >= 6


def test_scanpy_chaining(trained_scjoint):
    mdata, _, _ = trained_scjoint
    mdata = mdata.copy()
    sc.pp.neighbors(mdata, use_rep="X_scjoint", n_neighbors=15)
    sc.tl.umap(mdata)
    assert mdata.obsm["X_umap"].shape == (mdata.n_obs, 2)
    mdata.obs["modality"] = np.where(mdata.obsm["rna"], "rna", "atac")
    sc.pl.umap(mdata, color=["modality", "scjoint_label"], show=False)
    sc.tl.leiden(mdata, flavor="igraph", n_iterations=2)
    assert mdata.obs["leiden"].nunique() > 1


def test_scjoint_from_peaks_with_annotation():
    mdata = scx.datasets.synthetic_multiome(
        n_rna=400, n_atac=400, n_genes=150, n_types=4, atac_features="peaks", seed=3
    )
    truth = mdata["atac"].obs.pop("cell_type").astype(str)
    annotation = mdata["atac"].uns["gene_annotation"]
    scx.tl.scjoint(
        mdata,
        labels_key="cell_type",
        annotation=annotation,
        max_epochs=6,
        batch_size=100,
        trainer_kwargs=QUIET,
    )
    assert mdata.uns["scjoint"]["params"]["annotation"] == "DataFrame"
    scores = scx.metrics.label_transfer_accuracy(truth, mdata["atac"].obs["scjoint_label"])
    assert scores["accuracy"] > 0.85


def test_paired_mudata_aligns_the_same_cells():
    mdata = scx.datasets.synthetic_multiome(
        n_rna=400, n_atac=400, n_genes=150, n_types=4, paired=True, seed=9
    )
    mdata["atac"].obs = mdata["atac"].obs.drop(columns="cell_type")
    with pytest.warns(UserWarning, match="share cells"):
        scx.tl.scjoint(
            mdata, labels_key="cell_type", max_epochs=6, batch_size=100, trainer_kwargs=QUIET
        )
    assert "X_scjoint" not in mdata.obsm  # one global row per cell would be ambiguous
    assert "scjoint_label" not in mdata.obs
    z_rna, z_atac = mdata["rna"].obsm["X_scjoint"], mdata["atac"].obsm["X_scjoint"]
    # cells of the same type are close across modalities: FOSCTTM far below random (0.5)
    assert scx.metrics.foscttm(z_rna, z_atac) < 0.3
    truth = mdata["rna"].obs["cell_type"].astype(str)
    predicted = mdata["atac"].obs["scjoint_label"].astype(str)
    assert (truth.to_numpy() == predicted.to_numpy()).mean() > 0.9


def test_reference_settings_also_learn():
    mdata, truth = make_unpaired(seed=2)
    model = scx.tl.scjoint(
        mdata,
        labels_key="cell_type",
        max_epochs=8,
        batch_size=128,
        **REFERENCE_SETTINGS,
        trainer_kwargs=QUIET,
    )
    assert model.module.n_pcs is None and model.module.latent_norm is None
    scores = scx.metrics.label_transfer_accuracy(truth, mdata["atac"].obs["scjoint_label"])
    assert scores["accuracy"] > 0.85


def test_centres_learned_or_fixed():
    for learn in (True, False):
        mdata, _ = make_unpaired(seed=4, n_rna=300, n_atac=300, n_genes=100)
        SCJOINT.setup_mudata(mdata, modalities=["rna", "atac"], labels_key={"rna": "cell_type"})
        model = SCJOINT(mdata, learn_centers=learn)
        # warm start keeps the centres drawn at construction, so a change is due to training
        before = model.module.centers.detach().clone()
        model.train(max_epochs=2, batch_size=100, stage3_init="warm", **QUIET)
        moved = not torch.allclose(before, model.module.centers.detach())
        assert moved is learn


def test_validation_losses_in_history():
    mdata, _ = make_unpaired(seed=10, n_rna=300, n_atac=300, n_genes=100)
    model = scx.tl.scjoint(
        mdata,
        labels_key="cell_type",
        max_epochs=3,
        batch_size=64,
        train_size=0.8,
        trainer_kwargs=QUIET,
    )
    for key in ("loss_validation", "cosine_validation", "center_validation"):
        assert key in model.history
    assert len(model.history["loss_validation"]) == 6  # both stages
    assert np.isfinite(model.history["loss_validation"].to_numpy(dtype=float)).all()
    # every cell is still embedded and labelled, not only the training cells
    assert np.isfinite(mdata.obsm["X_scjoint"]).all()
    assert mdata["atac"].obs["scjoint_label"].notna().all()


def test_deterministic_with_seed():
    runs = []
    for _ in range(2):
        mdata, _ = make_unpaired(seed=5, n_rna=300, n_atac=300, n_genes=100)
        scx.tl.scjoint(
            mdata,
            labels_key="cell_type",
            max_epochs=2,
            batch_size=100,
            seed=7,
            trainer_kwargs=QUIET,
        )
        runs.append(mdata.obsm["X_scjoint"])
    np.testing.assert_array_equal(runs[0], runs[1])


def test_save_load_round_trip(tmp_path, trained_scjoint):
    _, _, model = trained_scjoint
    internal = model.adata
    z = model.get_latent_representation()
    pred = model.predict()
    model.save(tmp_path / "with_data", save_anndata=True)
    model.save(tmp_path / "weights_only")
    for loaded in (
        SCJOINT.load(tmp_path / "with_data"),
        SCJOINT.load(tmp_path / "weights_only", adata=internal),
    ):
        z2 = loaded.get_latent_representation()
        for m in z:
            np.testing.assert_array_equal(z[m], z2[m])
        pd.testing.assert_frame_equal(pred, loaded.predict())
        assert loaded.labels_ == model.labels_
        assert loaded.history["loss_train"].shape == model.history["loss_train"].shape


def test_embed_and_predict_new_cells(trained_scjoint):
    _, _, model = trained_scjoint
    new = model.adata["atac"][:50].copy()
    # reversed gene order must be realigned to the model's genes
    new = new[:, new.var_names[::-1]].copy()
    np.testing.assert_allclose(
        model.get_latent_representation(new, modality="atac"),
        model.get_latent_representation(modality="atac")[:50],
        atol=1e-6,
    )
    pred = model.predict(new, modality="atac", min_confidence=1.0)
    unassigned = (pred["label"] == "unassigned").to_numpy()
    np.testing.assert_array_equal(unassigned, pred["confidence"].to_numpy() < 1)
    with pytest.raises(ValueError, match="lacks"):
        model.get_latent_representation(new[:, :10].copy(), modality="atac")


def test_counts_in_a_layer(tmp_path):
    mdata, truth = make_unpaired(seed=8, n_rna=300, n_atac=300, n_genes=100)
    for m in ("rna", "atac"):
        mdata[m].layers["counts"] = mdata[m].X.copy()
        mdata[m].X = mdata[m].X * 0  # .X must not be what the model reads
    model = scx.tl.scjoint(
        mdata,
        labels_key="cell_type",
        layer="counts",
        max_epochs=6,
        batch_size=100,
        trainer_kwargs=QUIET,
    )
    scores = scx.metrics.label_transfer_accuracy(truth, mdata["atac"].obs["scjoint_label"])
    assert scores["accuracy"] > 0.85
    # new cells are read from the same layer
    new = mdata["atac"][:20].copy()
    np.testing.assert_allclose(
        model.get_latent_representation(new, modality="atac"),
        mdata["atac"].obsm["X_scjoint"][:20],
        atol=1e-5,
    )


def test_setup_anndata_split_by_key():
    mdata, truth = make_unpaired(seed=6, n_rna=300, n_atac=300, n_genes=100)
    rna, atac = mdata["rna"].copy(), mdata["atac"].copy()
    atac.obs["cell_type"] = "unknown"  # query labels are never used by scJoint
    rna.obs["modality"], atac.obs["modality"] = "rna", "atac"
    adata = ad.concat([rna, atac])
    SCJOINT.setup_anndata(adata, modality_key="modality", labels_key="cell_type")
    model = SCJOINT(adata, reference="rna")
    assert model.modalities == ["atac", "rna"]
    assert model.sources["atac"].n_obs == 300
    model.train(max_epochs=6, batch_size=100, **QUIET)
    pred = model.predict()
    assert (pred.index == atac.obs_names).all()
    scores = scx.metrics.label_transfer_accuracy(truth, pred["label"], exclude=["unknown"])
    assert scores["accuracy"] > 0.85


# ---------------------------------------------------------------------------- bad input
def _bad_runs():
    def drop_labels(m):
        m["rna"].obs = m["rna"].obs.drop(columns="cell_type")

    def single_class(m):
        m["rna"].obs["cell_type"] = "T cell"

    def nan_values(m):
        m["atac"].X.data[3] = np.nan

    def inf_values(m):
        m["rna"].X.data[0] = np.inf

    def negative(m):
        m["rna"].X.data[5] = -2.0

    def no_shared_genes(m):
        m["atac"].var_names = [f"other{i}" for i in range(m["atac"].n_vars)]

    def missing_label(m):
        m["rna"].obs["cell_type"] = m["rna"].obs["cell_type"].astype(object)
        m["rna"].obs.iloc[0, 0] = None

    return [
        (drop_labels, {}, "labels_key='cell_type'.*not a column"),
        (lambda m: None, {"labels_key": "celltype"}, "celltype"),
        (lambda m: None, {"labels_key": None}, "labels_key"),
        (lambda m: None, {"modalities": ("gex", "atac")}, r"modalities\[0\]='gex'.*modalities are"),
        (lambda m: None, {"modalities": ("rna", "peaks")}, r"modalities\[1\]='peaks'"),
        (lambda m: None, {"modalities": ("rna", "rna")}, "different modalities"),
        (lambda m: None, {"modalities": "rna"}, "`modalities` must name"),
        (lambda m: None, {"layer": {"rna": None, "atc": None}}, "names modalities.*atc"),
        (lambda m: None, {"lr": -0.1}, "`lr`"),
        (lambda m: None, {"center_weight": float("nan")}, "center_weight"),
        (lambda m: None, {"min_confidence": "high"}, "min_confidence"),
        (lambda m: None, {"batch_size": 1}, "batch_size"),
        (single_class, {}, "at least two classes"),
        (missing_label, {}, "missing labels"),
        (nan_values, {}, "NaN"),
        (inf_values, {}, "infinite"),
        (negative, {}, "negative values"),
        (no_shared_genes, {}, "shares no genes"),
        (lambda m: None, {"batch_size": 10_000}, "batch_size"),
        (lambda m: None, {"layer": "counts"}, "layer='counts'"),
        (lambda m: None, {"n_latent": 0}, "n_latent"),
        (lambda m: None, {"p": 1.5}, "`p`"),
    ]


@pytest.mark.parametrize("mutate, kwargs, message", _bad_runs())
def test_bad_input_raises_before_training_and_leaves_input_unchanged(mutate, kwargs, message):
    mdata, _ = make_unpaired(seed=0, n_rna=200, n_atac=200, n_genes=60)
    mutate(mdata)
    mdata.update()
    before = snapshot(mdata)
    call = {"labels_key": "cell_type", "max_epochs": 1, "batch_size": 64, "trainer_kwargs": QUIET}
    call.update(kwargs)
    with pytest.raises(ValueError, match=message):
        scx.tl.scjoint(mdata, **call)
    assert_unchanged(before, mdata)


def test_atac_peaks_without_annotation():
    mdata = scx.datasets.synthetic_multiome(
        n_rna=100, n_atac=100, n_genes=40, atac_features="peaks", seed=0
    )
    before = snapshot(mdata)
    with pytest.raises(ValueError, match="pass `annotation=`"):
        scx.tl.scjoint(mdata, labels_key="cell_type", batch_size=50, trainer_kwargs=QUIET)
    assert_unchanged(before, mdata)


def test_atac_with_neither_coordinates_nor_genes():
    mdata = scx.datasets.synthetic_multiome(n_rna=100, n_atac=100, n_genes=40, seed=0)
    mdata["atac"].var_names = [f"feature{i}" for i in range(40)]
    mdata.update()
    before = snapshot(mdata)
    with pytest.raises(ValueError, match="no peak coordinates"):
        scx.tl.scjoint(mdata, labels_key="cell_type", batch_size=50, trainer_kwargs=QUIET)
    annotation = scx.datasets.synthetic_annotation(40)
    with pytest.raises(ValueError, match="coordinate"):
        scx.tl.scjoint(
            mdata,
            labels_key="cell_type",
            batch_size=50,
            annotation=annotation,
            trainer_kwargs=QUIET,
        )
    assert_unchanged(before, mdata)


def test_empty_modality_and_not_mudata():
    mdata, _ = make_unpaired(n_rna=100, n_atac=100, n_genes=40)
    empty = mudata.MuData({"rna": mdata["rna"], "atac": mdata["atac"][:0].copy()})
    with pytest.raises(ValueError, match="empty"):
        scx.tl.scjoint(empty, labels_key="cell_type", trainer_kwargs=QUIET)
    with pytest.raises(ValueError, match="must be a MuData"):
        scx.tl.scjoint(mdata["rna"], labels_key="cell_type", trainer_kwargs=QUIET)


def test_stale_mudata_index():
    mdata, _ = make_unpaired(n_rna=100, n_atac=100, n_genes=40)
    mdata.mod["atac"] = mdata["atac"][:80].copy()  # modality replaced without mdata.update()
    with pytest.raises(ValueError, match=r"mdata\.update\(\)"):
        scx.tl.scjoint(mdata, labels_key="cell_type", batch_size=50, trainer_kwargs=QUIET)


# ---------------------------------------------------------------------------- contract details
def test_raw_peaks_of_new_cells_and_load_on_user_data(tmp_path):
    """A model built from peaks maps new raw-peak cells and reloads onto the user's MuData."""
    mdata = scx.datasets.synthetic_multiome(
        n_rna=300, n_atac=300, n_genes=120, n_types=4, atac_features="peaks", seed=3
    )
    annotation = mdata["atac"].uns.pop("gene_annotation")
    truth = mdata["atac"].obs.pop("cell_type").astype(str)
    model = scx.tl.scjoint(
        mdata,
        labels_key="cell_type",
        annotation=annotation,
        max_epochs=6,
        batch_size=100,
        trainer_kwargs=QUIET,
    )
    new = mdata["atac"][:40].copy()  # raw peaks, as the user holds them
    np.testing.assert_allclose(
        model.get_latent_representation(new, modality="atac"),
        mdata["atac"].obsm["X_scjoint"][:40],
        atol=1e-5,
    )
    pred = model.predict(new, modality="atac")
    assert (pred["label"].astype(str).to_numpy() == truth[:40].to_numpy()).mean() > 0.8
    model.save(tmp_path / "model")
    before = snapshot(mdata)
    loaded = SCJOINT.load(tmp_path / "model", adata=mdata)
    assert_unchanged(before, mdata)
    np.testing.assert_allclose(
        loaded.get_latent_representation(modality="atac"),
        mdata["atac"].obsm["X_scjoint"],
        atol=1e-6,
    )


def test_old_argument_names_still_work_with_a_warning():
    mdata, _truth = make_unpaired(seed=11, n_rna=200, n_atac=200, n_genes=80)
    with pytest.warns(FutureWarning, match="`rna=` is deprecated"):
        scx.tl.scjoint(
            mdata,
            rna="rna",
            atac="atac",
            labels_key="cell_type",
            max_epochs=2,
            batch_size=64,
            trainer_kwargs=QUIET,
        )
    assert list(mdata.uns["scjoint"]["params"]["modalities"]) == ["rna", "atac"]
    with pytest.warns(FutureWarning, match="trainer_kwargs"):
        scx.tl.scjoint(mdata, labels_key="cell_type", max_epochs=1, batch_size=64, **QUIET)


def test_modality_column_and_rerun_replaces_outputs(trained_scjoint):
    mdata, _, _ = trained_scjoint
    mdata = mdata.copy()
    modality = mdata.obs["modality"]
    assert set(modality.cat.categories) == {"rna", "atac"}
    assert (modality.iloc[scx.base.global_rows(mdata, "atac")] == "atac").all()
    scx.tl.scjoint(
        mdata,
        labels_key="cell_type",
        max_epochs=1,
        batch_size=128,
        min_confidence=1.0,
        trainer_kwargs=QUIET,
    )
    atac = mdata["atac"].obs
    unassigned = (atac["scjoint_label"] == "unassigned").to_numpy()
    np.testing.assert_array_equal(unassigned, atac["scjoint_confidence"].to_numpy() < 1)
    assert mdata.uns["scjoint"]["params"]["min_confidence"] == 1.0


def test_interrupt_surfaces_as_keyboard_interrupt(monkeypatch):
    mdata, _ = make_unpaired(seed=12, n_rna=200, n_atac=200, n_genes=80)
    before = snapshot(mdata)

    def interrupt(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(scx.train.LossTrainingPlan, "training_step", interrupt)
    with pytest.raises(KeyboardInterrupt):
        scx.tl.scjoint(
            mdata, labels_key="cell_type", max_epochs=1, batch_size=64, trainer_kwargs=QUIET
        )
    assert_unchanged(before, mdata)


def test_every_step_non_finite_is_an_error_not_a_result(monkeypatch):
    mdata, _ = make_unpaired(seed=13, n_rna=200, n_atac=200, n_genes=80)
    before = snapshot(mdata)
    original = scx.scjoint.SCJOINTModule.training_loss

    def nan_loss(self, outputs, step):
        loss, terms = original(self, outputs, step)
        return loss * float("nan"), terms

    monkeypatch.setattr(scx.scjoint.SCJOINTModule, "training_loss", nan_loss)
    with pytest.raises(RuntimeError, match="not finite at any"):
        scx.tl.scjoint(
            mdata, labels_key="cell_type", max_epochs=1, batch_size=64, trainer_kwargs=QUIET
        )
    assert_unchanged(before, mdata)
