"""Meta-MMFNet LOSO end to end through the real train flow: accuracy, fusion, result tables."""

import pytest

from merflow.configs.train import TrainConfig
from merflow.flows.train import train_flow
from merflow.storage import results

# LOSO's 26 folds trained through the train flow: minutes on 2 cores.
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(900)]

SMALL = TrainConfig(macro_epochs=10, pretrain_epochs=15, meta_epochs=2, batches_per_epoch=8)


@pytest.fixture(scope="module")
def run(training_set):
    out = training_set["root"] / "results"
    summary = train_flow(catalog_dir=str(training_set["catalog"]), store=training_set["store"], protocol="loso",
                         dataset="casme2", out=str(out), config=SMALL, run="loso-small")
    return summary, out


def _pooled_test(metrics):
    return metrics[(metrics["scope"] == "pooled") & (metrics["split"] == "test")]


def test_loso_on_26_synthetic_subjects_is_far_above_chance(run):
    summary, out = run
    assert summary["folds"] == 26 and summary["classes"] == ("disgust", "happiness", "repression", "surprise")
    pooled = _pooled_test(results.read_table(out, "metrics", run="loso-small"))
    chosen = pooled[(pooled["model"] == "fused") & pooled["chosen"]].iloc[0]
    assert chosen["accuracy"] >= 0.8, chosen  # chance is 0.25
    best_single = pooled[pooled["model"].isin(["micro", "macro"])]["accuracy"].max()
    # Fusion at the α chosen on validation matches or beats the better single model (one sample of slack).
    assert chosen["accuracy"] >= best_single - 1 / chosen["n"]


def test_result_tables_hold_every_fold_model_and_alpha(run):
    _, out = run
    metrics = results.read_table(out, "metrics", run="loso-small")
    folds = metrics[metrics["scope"] == "fold"]
    assert folds["key"].nunique() == 26
    fused = folds[(folds["model"] == "fused") & ~folds["chosen"] & (folds["split"] == "test")]
    assert sorted(fused["alpha"].round(1).unique()) == list(SMALL.alphas)
    predictions = results.read_table(out, "predictions", run="loso-small")
    test = predictions[(predictions["split"] == "test") & (predictions["model"] == "micro")]
    assert test["sample_key"].is_unique and test["fold"].nunique() == 26
    # Each fold's test samples belong to its held-out subject only.
    assert (test.groupby("fold")["subject_key"].nunique() == 1).all()
    runs = results.read_table(out, "runs")
    assert runs.loc[0, "run"] == "loso-small" and '"encoder": "small"' in runs.loc[0, "config"]
    assert len(runs.loc[0, "feature_config_hash"]) == 12
    # What the tables say equals what the predictions give.
    micro = _pooled_test(metrics)
    micro = micro[micro["model"] == "micro"].iloc[0]
    assert micro["accuracy"] == pytest.approx((test["label"] == test["pred"]).mean())


def test_a_unit_is_retried_unless_its_data_can_never_train(prefect_backend):
    from prefect import flow, task

    from merflow.flows.train import RETRIED, UNIT_RETRIES
    from merflow.training.errors import DataError
    from merflow.training.stages import FoldSkipped

    attempts = []

    @task(**RETRIED)
    def unit(error: type) -> None:
        attempts.append(error)
        raise error("fold f: it fails")

    @flow
    def runs(error: type) -> None:
        try:
            unit(error)
        except Exception as raised:
            assert isinstance(raised, error)

    for error, expected in ((DataError, 1), (OSError, UNIT_RETRIES + 1)):
        attempts.clear()
        runs(error)
        assert len(attempts) == expected, error

    class Skipped(FoldSkipped):  # a skipped fold is a DataError: never retried
        def __init__(self, message):
            super().__init__("f", message)

    attempts.clear()
    runs(Skipped)
    assert len(attempts) == 1
