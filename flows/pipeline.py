"""The pipeline flow: the whole chain as subflows, for a schedule on a Prefect server.

ingest (unchanged sources are skipped) -> features (the features flow's own resume: only shards not yet
done, or whose inputs changed, are computed) -> a search (``mode="tune"``) or a training run
(``mode="train"``) -> the report (a summary artifact: the pooled table and where the results are).

Every stage resumes, so a scheduled run after a killed one finishes the work, and one on unchanged
inputs recomputes nothing: the default run id is named by what the results are made from (the
catalog's sources, the feature configuration and every setting), so the same inputs resume the same
run (its stages checkpointed, a search restored with its finished trials) and new data starts a new one.
"""

from __future__ import annotations

import hashlib
import json

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from merflow.configs.names import RunId, check_name
from merflow.configs.train import TrainConfig
from merflow.flows.features import features_flow
from merflow.flows.ingest import ingest_flow
from merflow.flows.parameters import Evaluation, FeatureOptions, IngestOptions, Mode, SearchOptions
from merflow.flows.train import train_flow
from merflow.flows.tune import tune_flow
from merflow.storage import catalog, locations, results
from merflow.training import report


def derived_run_id(mode: str, catalog_dir: str, feature_config_hash: str, settings: dict) -> str:
    """``<mode>-<digest>`` of the catalog's sources (their checksums and ingest settings), the feature
    configuration and the settings: the same inputs give the same id (a rerun resumes it)."""
    sources = catalog.read_sources(catalog_dir)
    inputs = sorted(zip(sources["source_sha256"].astype(str), sources["config"].astype(str)))
    blob = json.dumps({"sources": inputs, "features": feature_config_hash, "settings": settings}, sort_keys=True,
                      default=str)
    return f"{mode}-{hashlib.sha256(blob.encode()).hexdigest()[:12]}"


@flow(name="report", log_prints=True)
def report_flow(out: str, run: RunId, title: str = "") -> dict:
    """The honest test rows of ``run`` (pooled and per dataset: micro, macro, fused at each fold's
    validation-chosen α) read back from the result tables, and where they are, as a markdown artifact."""
    metrics = results.read_table(out, "metrics", run=run)
    if metrics.empty:
        raise LookupError(f"run {run} has no metrics in {out}")
    rows = report.headline(metrics)
    table = [{"scope": r.scope if r.scope == "pooled" else r.key, "model": r.model, "n": int(r.n),
              "accuracy": round(float(r.accuracy), 4), "uf1": round(float(r.uf1), 4), "uar": round(float(r.uar), 4)}
             for r in rows.itertuples()]
    lines = [f"# {title or 'merflow pipeline'}: run `{run}`", "",
             "| scope | model | n | accuracy | UF1 | UAR |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['scope']} | {r['model']} | {r['n']} | {r['accuracy']:.3f} | {r['uf1']:.3f} | {r['uar']:.3f} |"
              for r in table]
    lines += ["", f"Result tables (runs, metrics, predictions{', trials' if rows['trial'].notna().any() else ''}) "
                  f"in `{out}`, partition `run={run}`; plots, if any, in `{locations.join(out, 'plots', run)}`.", "",
              f"`merflow results summary --results {out} --run {run}`"]
    markdown = "\n".join(lines)
    create_markdown_artifact(markdown, key="pipeline-report", description=f"run {run}: pooled test and where it is")
    return {"run": run, "results": out, "table": table}


@flow(name="pipeline", log_prints=True)
def pipeline_flow(sources: list[str], catalog_dir: str, store: str, out: str, mode: Mode = "tune",
                  evaluation: Evaluation = Evaluation(), ingest: IngestOptions = IngestOptions(),
                  features: FeatureOptions = FeatureOptions(), training: TrainConfig = TrainConfig(),
                  search: SearchOptions = SearchOptions(), run: RunId | None = None) -> dict:
    """Ingest ``sources`` into ``catalog_dir``, compute what is missing of their features into ``store``,
    then search (``mode="tune"``: ``search`` over ``training``) or train (``training``) ``evaluation``'s
    protocol into ``out``, and report. ``run``: None names it by its inputs, so that a rerun resumes."""
    logger = get_run_logger()
    ingested = ingest_flow(sources=list(sources), out=catalog_dir, **ingest.model_dump())
    changed = [o["source"] for o in ingested["sources"] if o["status"] == "ingested"]
    logger.info("%d of %d sources changed%s", len(changed), len(sources), f": {', '.join(changed)}" if changed else "")
    computed = features_flow(catalog_dir=catalog_dir, store=store, **features.model_dump())
    logger.info("features: %d shards computed, %d already done", computed["shards_computed"], computed["shards_skipped"])

    settings = {"mode": mode, "evaluation": evaluation.model_dump(), "training": training.to_dict()}
    if mode == "tune":
        settings["search"] = search.model_dump()
    run = check_name(run, "run id") if run is not None else derived_run_id(mode, catalog_dir, computed["config_hash"], settings)
    logger.info("%s run %s", mode, run)
    if mode == "train":
        trained = train_flow(catalog_dir=catalog_dir, store=store, out=out, config=training, run=run,
                             **evaluation.model_dump())
        run = trained["run"]
    else:
        searched = tune_flow(catalog_dir=catalog_dir, store=store, out=out, config=training, run=run,
                             **evaluation.model_dump(), **search.model_dump())
        run = searched["run"]
    title = f"{mode} {evaluation.protocol} {evaluation.dataset or ''}".strip()
    reported = report_flow(out=out, run=run, title=title)
    return {"run": run, "results": out, "catalog": ingested["catalog"], "store": computed["store"],
            "sources_changed": changed, "shards_computed": computed["shards_computed"],
            "shards_skipped": computed["shards_skipped"], "table": reported["table"]}
