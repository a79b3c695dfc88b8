"""The train flow: Meta-MMFNet on every fold of a protocol, results as Parquet tables.

Thin: it reads the catalog and the feature store, runs ``training.run.train_protocol`` (which
checkpoints every stage of every fold, so a rerun resumes), logs per fold and keeps the pooled
test table as a Prefect artifact.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact

from merflow.training.fit import TrainConfig
from merflow.training.run import train_protocol


def pooled_table(metrics) -> list[dict]:
    """Pooled test metrics: micro, macro, fused at each fold's chosen α, then the α grid."""
    pooled = metrics[(metrics["scope"] == "pooled") & (metrics["split"] == "test")]
    order = {"micro": 0, "macro": 1, "fused": 2}
    pooled = pooled.assign(_order=pooled["model"].map(order) + (~pooled["chosen"]) * 1.5).sort_values(["_order", "alpha"])
    return [{"model": r.model + (" (α chosen on validation)" if r.chosen else ""),
             "alpha": None if r.alpha != r.alpha or r.alpha is None else round(float(r.alpha), 2),
             "n": int(r.n), "accuracy": round(r.accuracy, 4), "uf1": round(r.uf1, 4), "uar": round(r.uar, 4)}
            for r in pooled.itertuples()]


@flow(name="train", log_prints=True)
def train_flow(catalog_dir: str, store: str, protocol: str = "loso", dataset: str | None = "casme2",
               out: str = "results", class_set: str | None = None, config: TrainConfig | None = None,
               run: str | None = None) -> dict:
    """Train and evaluate every fold of ``protocol``; write runs, metrics and predictions under ``out``."""
    logger = get_run_logger()
    config = config or TrainConfig()

    def on_fold(index, total, fold, result):
        chosen = result["chosen"]
        logger.info("fold %d/%d %s: α %.1f, epochs micro %d+%d, macro %d", index, total, fold.name,
                    chosen["alpha"], chosen["micro_pretrain_epoch"], chosen["micro_meta_epoch"],
                    chosen["macro_meta_epoch"])

    result = train_protocol(Path(catalog_dir), store, protocol, dataset, config, Path(out), run=run,
                            class_set=class_set, on_fold=on_fold)
    table = pooled_table(result["metrics"])
    create_table_artifact(table, key="train-pooled-test", description=f"{protocol} {dataset or ''}: pooled test metrics")
    return {k: v for k, v in result.items() if k not in ("metrics", "predictions")} | {"pooled": table,
                                                                                       "results": str(out)}
