"""The train flow: Meta-MMFNet on every fold of a protocol, results as Parquet tables.

Thin: it reads the catalog and the feature store, runs ``training.run.train_protocol`` (which
checkpoints every stage of every fold, so a rerun resumes), logs per fold and keeps the pooled
test table as a Prefect artifact.
"""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact

from merflow.flows.parameters import Protocol
from merflow.storage import locations
from merflow.training import models
from merflow.training.fit import TrainConfig
from merflow.training.models.survey_cnn import SurveyConfig
from merflow.training.run import train_protocol


def pooled_table(metrics, chosen_label: str = " (α chosen on validation)") -> list[dict]:
    """Pooled test metrics: micro, macro, fused at each fold's chosen α, then the α grid."""
    pooled = metrics[(metrics["scope"] == "pooled") & (metrics["split"] == "test")]
    order = {"micro": 0, "macro": 1, "fused": 2}
    pooled = pooled.assign(_order=pooled["model"].map(order) + (~pooled["chosen"]) * 1.5).sort_values(["_order", "alpha"])
    return [{"model": r.model + (chosen_label if r.chosen else ""),
             "alpha": None if r.alpha != r.alpha or r.alpha is None else round(float(r.alpha), 2),
             "n": int(r.n), "accuracy": round(r.accuracy, 4), "uf1": round(r.uf1, 4), "uar": round(r.uar, 4)}
            for r in pooled.itertuples()]


@flow(name="train", log_prints=True)
def train_flow(catalog_dir: str, store: str, protocol: Protocol = "loso", dataset: str | None = "casme2",
               out: str = "results", class_set: str | None = None, config: TrainConfig | None = None,
               run: str | None = None, sample_list: str | None = None, sample_lists: str | None = None,
               feature_config: str | None = None, model: str = models.DEFAULT_MODEL,
               survey_config: SurveyConfig | None = None, balance: str | None = None) -> dict:
    """Train and evaluate every fold of ``protocol``; write runs, metrics and predictions under ``out``.
    ``sample_list`` ('survey'): only the samples of that published list (folder ``sample_lists``);
    ``feature_config``: the hash of the store's feature configuration to train on, where it holds several.
    ``model`` (training/models/): meta-mmfnet with ``config``, or survey-cnn with ``survey_config``;
    ``balance`` (none | undersample) overrides the model's default."""
    locations.require(catalog_dir, store, out)  # a missing extra is one line, before any work
    logger = get_run_logger()
    if model != models.DEFAULT_MODEL:
        return _train_other(models.get(model), catalog_dir, store, protocol, dataset, out, class_set, run,
                            survey_config, balance, logger, sample_list=sample_list, sample_lists=sample_lists,
                            feature_config=feature_config)
    if balance not in (None, "none"):
        raise ValueError(f"--balance {balance} is implemented for --model survey-cnn only; Meta-MMFNet trains on "
                         "every sample (its episodes draw the same number of samples of every class)")
    config = config or TrainConfig()

    def on_fold(index, total, fold, result):
        chosen = result["chosen"]
        logger.info("fold %d/%d %s: α %.1f, epochs micro %d+%d, macro %d", index, total, fold.name,
                    chosen["alpha"], chosen["micro_pretrain_epoch"], chosen["micro_meta_epoch"],
                    chosen["macro_meta_epoch"])

    result = train_protocol(catalog_dir, store, protocol, dataset, config, out, run=run,
                            class_set=class_set, on_fold=on_fold, on_note=logger.warning,
                            sample_list=sample_list, sample_lists=sample_lists, feature_config=feature_config)
    # Without validation subjects (--recipe published) nothing chooses α: the plain sum, α = 1.0.
    table = pooled_table(result["metrics"], " (α chosen on validation)" if config.validation_fraction > 0
                         else " (α 1.0: no validation split to choose on)")
    create_table_artifact(table, key="train-pooled-test", description=f"{protocol} {dataset or ''}: pooled test metrics")
    return {k: v for k, v in result.items() if k not in ("metrics", "predictions")} | {"pooled": table,
                                                                                       "results": str(out)}


def _train_other(info, catalog_dir, store, protocol, dataset, out, class_set, run, config, balance, logger,
                 **protocol_options) -> dict:
    """A registry model other than Meta-MMFNet (survey-cnn): its own train_protocol, the same tables."""
    module = info.load()
    config = config or module.default_config()

    def on_fold(index, total, fold, result):
        if index == total or index % 50 == 0:
            logger.info("%s: %d/%d folds trained (last %s)", info.name, index, total, fold.name)

    result = module.train_protocol(catalog_dir, store, protocol, dataset, config, out, run=run, class_set=class_set,
                                   on_fold=on_fold, on_note=logger.warning, balance=balance, **protocol_options)
    leaky = " (LOVO: leaky, a held-out person's other clips are in training)" if result.get("leaky") else ""
    table = [{"model": r.model + leaky, "alpha": None, "n": int(r.n), "accuracy": round(r.accuracy, 4),
              "uf1": round(r.uf1, 4), "uar": round(r.uar, 4)}
             for r in result["metrics"].itertuples() if r.scope == "pooled" and r.split == "test"]
    create_table_artifact(table, key="train-pooled-test", description=f"{info.name} {protocol}: pooled test metrics")
    return {k: v for k, v in result.items() if k not in ("metrics", "predictions")} | {"pooled": table,
                                                                                       "results": str(out)}
