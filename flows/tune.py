"""The tune flow: a Ray Tune search over shots (and optionally learning rates) with the α grid scored
in every trial, result tables as Parquet, plots and the honest result as Prefect artifacts.

Thin: ``flows.search.run_search`` runs the search on Ray and writes the tables through storage (it
resumes a run given the same id) and returns them as written; this flow logs each finished trial, draws
the α × shots heatmaps and confusion matrices from those tables into ``RESULTS/plots/<run>/`` and keeps
them, with the pooled test table of the per-fold selected model, as artifacts (nothing read back). Trials that still failed after their retries fail the flow run
(``TrialsFailed``: which, why, how to resume, and the run and results location), after everything else
has been written, so that a scheduled run cannot lose them silently.
"""

from __future__ import annotations

import base64
import tempfile
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from merflow.configs.names import RunId
from merflow.configs.search import SearchConfig, SearchSpace
from merflow.configs.train import TrainConfig
from merflow.flows.defaults import default
from merflow.flows.parameters import RESULTS, SEARCH_ALPHAS, Evaluation, Protocol, Scheduler, SelectBy
from merflow.flows.search import run_search
from merflow.storage import locations
from merflow.training import report
from merflow.training.report import floor_table


class TrialsFailed(RuntimeError):
    """Some trials failed every retry: the message says which, why and how to resume; every table (the
    trials table with each error) is written under ``results`` for ``run`` before it is raised, and
    ``merflow tune`` prints what finished from there. A raised exception, not a returned ``Failed`` state:
    a caller of a flow that returns ``Failed(data=...)`` gets a TypeError, subflow callers too (checked on
    Prefect 3.8)."""

    def __init__(self, message: str, run: str, results: str):
        super().__init__(message)
        self.run, self.results = run, results

    def __reduce__(self):  # Prefect may pickle a flow run's exception: keep run and results
        return type(self), (str(self), self.run, self.results)


def failed_trials_message(errors, max_failures: int, run: str) -> str:
    """One line: how many trials failed and why (the first five errors' last lines), and how to resume."""
    lines = [f"{row.trial} on {row.fold}: {str(row.error).strip().splitlines()[-1] if row.error else '?'}"
             for row in errors.itertuples()]
    return (f"{len(errors)} trial(s) failed (a data error at once, any other error after {max_failures} retries): "
            + "; ".join(lines[:5]) + (" ..." if len(lines) > 5 else "")
            + f"; run {run} again (the same --run) to retry them, its finished trials kept (a data error ends "
              "its trial for good)")


def headline_table(metrics, floor_metrics) -> list[dict]:
    """The selected result's pooled and per-dataset test rows (scores to 4 places), then the floor's on the
    same folds: the flow's table artifact and the rows ``merflow tune`` prints."""
    headline = report.headline(metrics)
    table = [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}
             for row in headline[["scope", "key", "model", "n", "accuracy", "uf1", "uar"]].to_dict("records")]
    # The floor on the same folds (nearest centroid, flow u, v), so the selected result is never read without it.
    return table + [{"scope": "pooled", "key": None} | row for row in floor_table(floor_metrics)]


def plot_locations(out: str, run: str) -> list[str]:
    """The plots ``draw_plots`` left in ``RESULTS/plots/<run>/``, as it names them, heatmaps first."""
    folder = locations.join(out, "plots", run)
    names = sorted((n for n in locations.listdir(folder) if n.endswith(".png")),
                   key=lambda n: (not n.startswith("heatmap"), n))
    if locations.is_remote(out):
        return [locations.join(folder, n) for n in names]
    return [str(locations.local_path(folder) / n) for n in names]


def draw_plots(out: str, run: str, tables: dict, local_folder: Path | None = None) -> list[tuple[str, Path]]:
    """Heatmaps of α by shots (validation and test) and the selected model's confusion matrix, from the run's
    ``tables`` (``metrics``, ``trials``, ``runs`` as written), in ``RESULTS/plots/<run>/``: (location, local
    file) of each. Results on an object store are drawn into ``local_folder`` (matplotlib writes local files)
    and uploaded."""
    metrics, trials, runs = tables["metrics"], tables["trials"], tables["runs"]
    remote = locations.is_remote(out)
    folder = local_folder if remote else locations.local_path(locations.join(out, "plots", run))
    pictures = (report.alpha_shots_heatmaps(metrics, folder, run=run, trials=trials)
                + report.confusion_plots(metrics, runs, folder, run=run))
    if not remote:
        return [(str(p), Path(p)) for p in pictures]
    return [(locations.put_file(p, locations.join(out, "plots", run, Path(p).name)), Path(p)) for p in pictures]


@flow(name="tune", log_prints=True)
def tune_flow(catalog_dir: str, store: str, protocol: Protocol = default(Evaluation, "protocol"),
              dataset: str | None = default(Evaluation, "dataset"), out: str = RESULTS,
              shots: list[int] = default(SearchSpace, "shots"), alphas: list[float] = SEARCH_ALPHAS,
              meta_lr: list[float] = default(SearchSpace, "meta_lr"),
              pretrain_lr: list[float] = default(SearchSpace, "pretrain_lr"), config: TrainConfig | None = None,
              class_set: str | None = None, scheduler: Scheduler = default(SearchConfig, "scheduler"),
              select_by: SelectBy = default(SearchConfig, "select_by"),
              cpus_per_trial: float = default(SearchConfig, "cpus_per_trial"),
              gpus_per_trial: float = default(SearchConfig, "gpus_per_trial"),
              max_failures: int = default(SearchConfig, "max_failures"),
              max_folds: int | None = default(SearchConfig, "max_folds"),
              ray_address: str | None = default(SearchConfig, "ray_address"), run: RunId | None = None,
              sample_list: str | None = None, sample_lists: str | None = None,
              feature_config: str | None = None) -> dict:
    """Search shots (and learning rates) on every fold of ``protocol``, scoring the whole α grid in each
    trial; write runs, trials, metrics and predictions under ``out``."""
    logger = get_run_logger()
    space = SearchSpace(shots=tuple(sorted(set(shots))), alphas=tuple(sorted(set(alphas))),
                        meta_lr=tuple(meta_lr), pretrain_lr=tuple(pretrain_lr))
    search = SearchConfig(catalog_dir=str(catalog_dir), store=str(store), protocol=protocol, dataset=dataset,
                          class_set=class_set, out=str(out), run=run, base=config or TrainConfig(), space=space,
                          scheduler=scheduler, select_by=select_by, cpus_per_trial=cpus_per_trial,
                          gpus_per_trial=gpus_per_trial, max_failures=max_failures, max_folds=max_folds,
                          ray_address=ray_address, sample_list=sample_list, sample_lists=sample_lists,
                          feature_config=feature_config)
    finished = []

    def on_trial(spec: dict, status: str) -> None:
        finished.append(status)
        logger.info("trial %d: %s %s on %s: %s", len(finished), spec["id"], spec["searched"], spec["fold"], status)

    summary = run_search(search, on_trial=on_trial)
    tables = summary.pop("tables")  # the trials, metrics and runs rows as written: nothing is read back
    logger.info("%d trials (%s), %d failed attempts retried; %d configurations on %d folds",
                summary["trials"], ", ".join(f"{k} {v}" for k, v in summary["status"].items()),
                summary["failures"], summary["configurations"], summary["folds"])
    table = headline_table(tables["metrics"], tables.get("floor_metrics"))
    if table:
        create_table_artifact(table, key="tune-selected-test",
                              description=f"{protocol} {dataset or ''}: pooled test metrics of the per-fold "
                                          "validation-selected configuration and α")
    with tempfile.TemporaryDirectory(prefix="merflow-plots-") as scratch:
        pictures = draw_plots(out, summary["run"], tables, Path(scratch))
        if pictures:
            create_markdown_artifact("\n\n".join(
                f"**{p.name}**\n\n![{p.name}](data:image/png;base64,{base64.b64encode(p.read_bytes()).decode()})"
                for _, p in pictures), key="tune-plots", description=f"run {summary['run']}: α × shots and confusion")
    summary = summary | {"pictures": [where for where, _ in pictures], "headline": table, "max_failures": max_failures}
    if len(summary["errors"]):  # every table and plot is written: the message says which failed and how to resume
        raise TrialsFailed(failed_trials_message(summary["errors"], max_failures, summary["run"]), summary["run"], out)
    return summary
