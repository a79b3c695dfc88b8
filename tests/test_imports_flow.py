"""flows/imports.py through the real Prefect flow (ephemeral API) and the CLI: sources -> catalog and store, a rerun
that reads and writes nothing, what a model reads of an imported store, and the floor on the real survey sets and
flows."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import zarr
from mat_files import write_categorical, write_survey_images
from test_imports import flow_folder, flow_image, write_list

from merflow.flows.imports import import_flow
from merflow.flows.protocol import load_protocol, train_protocol
from merflow.storage import catalog
from merflow.storage.features import FeatureStore
from merflow.training.models import nearest_centroid as nc

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_backend")]


def _marks(store: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in store.rglob("_done/*.json")}


def test_a_survey_set_is_imported_resumed_and_read_by_name(tmp_path):
    rng = np.random.default_rng(5)
    labels = [1 + i % 4 for i in range(12)]
    images = rng.integers(0, 60, (28, 28, 3, 12)).astype(np.uint8) + 40 * np.array(labels, np.uint8)  # class in pixels
    sources = [str(write_survey_images(tmp_path / "C4.mat", images)),
               str(write_categorical(tmp_path / "label4.mat", ["Other", "negative", "positive", "surprise"], labels))]
    cat, store = tmp_path / "cat", tmp_path / "f.zarr"
    result = import_flow(sources=sources[::-1], catalog_dir=str(cat), store=str(store))  # any order: paired by name
    (outcome,) = result["sources"]
    assert (outcome["status"], outcome["samples"], outcome["format"]) == ("imported", 12, "survey-mat")
    assert outcome["labels"].endswith("label4.mat") and outcome["groups"] == [f"survey_c4-{outcome['config_hash']}"]
    samples = catalog.read_samples(cat)
    assert set(samples["origin"]) == {"imported"} and samples["frame_files"].isna().all()
    source_row = catalog.read_sources(cat).iloc[0]
    assert source_row["kind"] == "survey-mat" and json.loads(source_row["config"])["feature_config"]["imported"]["labels"].endswith(
        "label4.mat")

    # A rerun of the unchanged source reads nothing and writes nothing.
    before = _marks(store)
    again = import_flow(sources=sources, catalog_dir=str(cat), store=str(store))["sources"][0]
    assert (again["status"], again["shards_written"], again["shards_done"]) == ("skipped", 0, 1)
    assert _marks(store) == before and "unchanged since its last import" in again["detail"]

    # What a model reads: the apex images by their convention; a model needing another input is one line.
    data = load_protocol(cat, str(store), "lovo", "survey_c4", model="nearest-centroid")
    assert set(data.source.arrays) == {"apex"} and data.source.conventions["apex"]["origin"] == "imported"
    assert data.source.conventions["apex"]["channels"] == ["red", "green", "blue"]
    with pytest.raises(LookupError) as error:
        load_protocol(cat, str(store), "lovo", "survey_c4", model="meta-mmfnet")
    assert "\n" not in str(error.value) and str(error.value).startswith("meta-mmfnet reads the 'diff' array")
    with pytest.raises(ValueError, match="holds out people"):
        load_protocol(cat, str(store), "loso", "survey_c4", model="nearest-centroid")
    trained = train_protocol(cat, str(store), "lovo", "survey_c4", nc.default_config(features="apex"),
                             tmp_path / "results", model="nearest-centroid")
    assert trained.notes["floor"]["features"] == "apex" and trained.floor_metrics["accuracy"].max() > 0.5


def test_the_cli_prints_what_it_quarantined_by_name(tmp_path, capsys):
    from merflow.flows.cli import main

    folder = flow_folder(tmp_path / "flows")
    (folder / "s02_s02_sur_01 .png").unlink()
    import cv2

    cv2.imwrite(str(folder / "sub09_EP01_01 .png"), flow_image(9))
    listed = write_list(tmp_path / "gt.csv")
    cat, store = tmp_path / "cat", tmp_path / "f.zarr"
    assert main(["import-features", str(folder), "--list", str(listed), "--catalog", str(cat), "--store",
                 str(store)]) == 0
    printed = capsys.readouterr().out
    assert "quarantined unlisted/sub09_EP01_01 .png: unlisted_file" in printed
    assert "quarantined smic_hs/s2/s2_sur_01: missing_file" in printed
    assert "stored as flow (strain, v, u)" in printed
    groups = {g["name"] for g in FeatureStore(store).groups()}
    assert {g.split("-")[0] for g in groups} == {"casme2", "samm", "smic_hs"}
    group = zarr.open_group(str(store), mode="r")[sorted(groups)[0]]
    assert list(group.array_keys()) == ["flow"]
    # A folder without its list, and a features run on a catalog of imports, are one line each.
    assert main(["import-features", str(folder), "--catalog", str(tmp_path / "c2"), "--store", str(store)]) == 2
    assert "give the list that names, labels and groups them" in capsys.readouterr().out
    assert main(["features", "--catalog", str(cat), "--store", str(store)]) == 2
    assert "was imported with its features" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------ the real inputs
@pytest.mark.slow
def test_the_floor_on_the_real_survey_sets_and_flows(reference, tmp_path):
    """The figures of the issue: a raw-pixel nearest centroid scores 45.1% (C4) and 27.8% (C9) LOVO; the flows'
    u, v nearest centroid (merflow's floor: each channel divided by its largest |value| on the training subjects)."""
    survey = reference / "survey"
    cat, store = tmp_path / "cat", str(tmp_path / "f.zarr")
    import_flow(sources=[str(survey / n) for n in ("C4.mat", "label4.mat", "C9.mat", "label9.mat")],
                catalog_dir=str(cat), store=store)
    for dataset, accuracy in (("survey_c4", 0.451), ("survey_c9", 0.278)):
        data = load_protocol(cat, store, "lovo", dataset, model="nearest-centroid")
        pooled = nc.floor(data, data.folds)["metrics"].query("scope == 'pooled'").iloc[0]
        assert round(pooled["accuracy"], 3) == accuracy
    import_flow(sources=[str(reference / "megc2019_features" / "STSNet_whole_norm_u_v_os")], catalog_dir=str(cat),
                store=store, sample_list=str(reference / "megc2019" / "combined_3class_gt.csv"))
    data = load_protocol(cat, store, "megc2019", None, model="nearest-centroid")
    assert len(data.folds) == 68 and len(data.samples) == 442
    floor = nc.floor(data, data.folds)
    assert floor["input"]["text"] == "imported flow u, v"
    assert round(floor["metrics"].query("scope == 'pooled'").iloc[0]["uf1"], 3) == 0.570
