"""Reports of result tables: the honest headline numbers, paper-style summary tables, the ranking of a
hyperparameter search, and PNG plots (α x shots heatmaps, confusion matrices).

Pure functions of the DataFrames of ``storage.results`` (read through ``storage.queries`` or
``results.read_table``); the plots are written with matplotlib's Agg backend and nothing else is written.

Honesty: the numbers to report are test scores whose every choice was made on validation subjects:
micro and macro as trained, the fused model at each fold's validation-chosen α (``chosen``), and for a
search the ``selected`` trial (configuration and α chosen per fold on validation). Ranking a search's
configurations on test is an oracle; ``best_table`` ranks on validation unless told otherwise.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from merflow.configs.results import DEFAULT_METHOD, SELECTED

MODELS = ("micro", "macro", "fused")
SCORES = ("accuracy", "uf1", "uar")
SPLITS = ("validation", "test")
SINGLE_DATASET_PROTOCOLS = ("loso", "lovo")  # every other protocol is a composite of datasets
SCORE_LABELS = {"accuracy": "accuracy", "uf1": "UF1", "uar": "UAR"}


def file_name(*parts: str, suffix: str = ".png") -> str:
    """A file name of letters, digits, '-', '_' and '.' only: parts joined by '_', anything else as '-'."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", "_".join(p for p in parts if p)).strip("-") + suffix


def honest_trials(trial: pd.Series) -> pd.Series:
    """Rows of an honest trial: a plain training run's (trial null) or a search's "selected" one."""
    return trial.isna() | (trial == SELECTED)


def _for_run(frame: pd.DataFrame, run: str | None) -> pd.DataFrame:
    return frame if run is None else frame[frame["run"] == run]


def _in_canonical_order(frame: pd.DataFrame, *columns: str) -> pd.DataFrame:
    """Sorted by ``columns``, models, scopes and splits in reading order rather than alphabetically."""
    order = {"model": MODELS, "scope": ("pooled", "dataset", "fold"), "split": SPLITS}

    def rank(column: pd.Series) -> pd.Series:
        if column.name in order:
            return column.map({v: i for i, v in enumerate(order[column.name])}).fillna(len(order[column.name]))
        return column

    return frame.sort_values(list(columns), key=rank, kind="stable").reset_index(drop=True)


def headline(metrics: pd.DataFrame) -> pd.DataFrame:
    """The honest test rows of each (run, protocol): plain runs (trial null) and searches' "selected" trial, pooled
    and per dataset; micro, macro and the fused model at the α chosen on each fold's validation subjects.

    A model with ``chosen`` rows (the fused model; all three for "selected") is represented by them, any
    other by its α-free row, so the fused rows of the α grid, which were scored with hindsight, never appear.
    """
    rows = metrics[honest_trials(metrics["trial"]) & (metrics["split"] == "test")
                   & metrics["scope"].isin(["pooled", "dataset"])]
    group = ["run", "protocol", "trial", "scope", "key", "model"]
    has_chosen = rows.groupby(group, dropna=False)["chosen"].transform("any").astype(bool)
    rows = rows[rows["chosen"] | (~has_chosen & rows["alpha"].isna())]
    columns = [*group, "n", *SCORES, "per_class_accuracy", "confusion"] + [c for c in ("method",) if c in rows]
    return _in_canonical_order(rows[columns], "run", "protocol", "trial", "scope", "key", "model")


def run_classes(runs: pd.DataFrame | None, run: str, protocol: str, per_class_json: str | None = None) -> list[str]:
    """The classes of (run, protocol) in their model order: from the runs table, else from a per-class JSON
    (written in class order)."""
    if runs is not None and len(runs):
        match = runs[(runs["run"] == run) & (runs["protocol"] == protocol)]
        if len(match):
            return [str(c) for c in match["classes"].iat[0]]
    if per_class_json:
        return list(json.loads(per_class_json))
    raise LookupError(f"no classes for run {run} protocol {protocol}: it has no row in the runs table")


def _run_dataset(runs: pd.DataFrame | None, run: str, protocol: str) -> str | None:
    if runs is None or not len(runs):
        return None
    match = runs[(runs["run"] == run) & (runs["protocol"] == protocol)]
    return match["dataset"].iat[0] if len(match) and pd.notna(match["dataset"].iat[0]) else None


def pooled_table(metrics: pd.DataFrame, chosen_label: str = " (α chosen on validation)") -> list[dict]:
    """Pooled test metrics of a run as rows: micro, macro, fused at each fold's chosen α, then the α grid."""
    pooled = metrics[(metrics["scope"] == "pooled") & (metrics["split"] == "test")]
    order = {"micro": 0, "macro": 1, "fused": 2}
    pooled = pooled.assign(_order=pooled["model"].map(order) + (~pooled["chosen"]) * 1.5).sort_values(["_order", "alpha"])
    return [{"model": r.model + (chosen_label if r.chosen else ""),
             "alpha": None if r.alpha != r.alpha or r.alpha is None else round(float(r.alpha), 2),
             "n": int(r.n), "accuracy": round(r.accuracy, 4), "uf1": round(r.uf1, 4), "uar": round(r.uar, 4)}
            for r in pooled.itertuples()]


def run_record(runs: pd.DataFrame | None, run: str, protocol: str) -> dict:
    """The configuration a run recorded (its runs row's ``config`` JSON: the settings, and its notes under
    ``data``); {} where the run has no row."""
    if runs is None or not len(runs) or "config" not in runs:
        return {}
    match = runs[(runs["run"] == run) & (runs["protocol"] == protocol)]
    if not len(match) or not isinstance(match["config"].iat[0], str):
        return {}
    return json.loads(match["config"].iat[0])


def run_leaks(record: dict, protocol: str) -> list[str]:
    """Why the run's numbers read test labels, from its record (runs written before the record kept them:
    LOVO, and the survey's balancing before the split, read from the protocol and the settings)."""
    data = record.get("data") or {}
    if "leaks" in data:
        return list(data["leaks"])
    reasons = []
    if protocol == "lovo":
        reasons.append("LOVO: a held-out sample's person has other clips in training")
    if record.get("balance") == "undersample":
        reasons.append("balanced before the split: the held-out samples were removed by their labels")
    return reasons


def _short_leak(reason: str) -> str:
    return reason.split(":")[0]


def honesty(record: dict, protocol: str, method: str, model: str, trial) -> str:
    """What the figure of one row rests on: ``uses test labels (...)`` where the run leaks (LOVO, balancing
    before the split), ``chosen on validation subjects`` where something was chosen on them, else
    ``nothing chosen`` (fixed settings, the last epoch, a fixed α)."""
    leaks = run_leaks(record, protocol)
    if leaks:
        return "uses test labels (" + ", ".join(_short_leak(reason) for reason in leaks) + ")"
    if model == "floor" or run_chooses(record, method) == "nothing":
        return "nothing chosen"
    if trial == SELECTED:
        return "chosen on validation subjects"
    validated = float(record.get("validation_fraction", 0.2)) > 0
    if model == "fused" and validated:
        return "chosen on validation subjects"
    if record.get("epoch_choice", "last") != "last" and validated:
        return "chosen on validation subjects"
    return "nothing chosen"


def _what_chose(record: dict, protocol: str, method: str, trial) -> str:
    """The title's account of what chose the run's epochs, α and settings, from the run's own record."""
    data = record.get("data") or {}
    differences = data.get("recipe_differences") or []
    recipe = record.get("recipe")
    if run_chooses(record, method) == "nothing":  # one model on a fixed schedule, or nothing learned
        # Nothing learned (no schedule: the record has no epochs; the run's choices say "model": nothing learned).
        if "model" in (data.get("chosen") or {}) or "epochs" not in record:
            title = data.get("title")
            return f"{method}: {title}, nothing learned or chosen" if title else (
                f"{method}: " + (data.get("chosen") or {}).get("model", "nothing learned or chosen"))
        title = data.get("title") or f"fixed schedule ({record.get('epochs')} epochs, the last)"
        if not differences and recipe_is_published(method, record):
            return f"{method}, the published {title}, nothing chosen"
        what = "; ".join(differences) if differences else "settings differ from the published (see runs.config)"
        return f"{method}, a {title}, nothing chosen; recipe custom: {what}"
    if trial == SELECTED:
        return "configuration and α chosen per fold on validation subjects"
    validated = float(record.get("validation_fraction", 0.2)) > 0
    alpha = ("fused at the α chosen per fold on validation" if validated
             else "fused at α 1.0, fixed (no validation subjects: nothing chose α)")
    epochs = ("each stage's last epoch" if record.get("epoch_choice", "last") == "last"
              else f"epochs chosen on validation ({record.get('epoch_choice')})")
    label = f"{alpha}; {epochs}"
    if recipe == "published" and differences:
        label += "; recipe published with changes: " + "; ".join(differences)
    elif recipe:
        label += f"; recipe {recipe}"
    return label


def run_chooses(record: dict, method: str) -> str:
    """What chose the run's settings, as its record says (the registry's ``ModelInfo.chooses``, recorded by
    training/run.py ``finish``): "nothing" or "validation subjects". Runs recorded before it was kept: the
    tables' first model (storage/results.py DEFAULT_METHOD) chose on validation subjects, the others nothing."""
    data = record.get("data") or {}
    if data.get("chooses"):
        return data["chooses"]
    return "validation subjects" if method == DEFAULT_METHOD else "nothing"


def recipe_is_published(method: str, record: dict) -> bool:
    """Whether a survey-cnn or ststnet run's record says its recipe was the published one (runs written before
    the record listed differences: the survey-cnn defaults of their time are read as custom unless they say so)."""
    data = record.get("data") or {}
    if "recipe_differences" in data:
        return not data["recipe_differences"]
    return False


def run_warnings(record: dict) -> list[str]:
    """What ``merflow train`` warned about a run, from its record: a cut to the first folds (``--max-folds``),
    features that differ from the recipe's, samples left out, folds skipped."""
    data = record.get("data") or {}
    lines = []
    if data.get("max_folds"):
        cut = data["max_folds"]
        lines.append(f"only the first {cut['first']} of {cut['of']} folds ran (--max-folds): a quick look, not a "
                     "result to report")
    if data.get("feature_mismatch"):
        lines.append("recipe published on features that differ from the published code's: "
                     + "; ".join(data["feature_mismatch"]))
    if data.get("excluded_samples"):
        lines.append(f"{len(data['excluded_samples'])} samples left out (quarantined by the features flow)")
    if data.get("skipped_folds"):
        lines.append(f"{len(data['skipped_folds'])} folds skipped: " + ", ".join(list(data["skipped_folds"])[:5]))
    if data.get("input"):
        lines.append(f"input: {data['input']}")
    return lines


def floor_input(record: dict) -> str:
    """What the run's floor read, from its record (``data.floor``, training/run.py ``finish``): flow u, v, or the
    apex pixels of imported images; runs recorded before it was noted read flow u, v."""
    used = ((record or {}).get("data") or {}).get("floor") or {}
    return used.get("text") or "flow u, v"


def summary_blocks(metrics: pd.DataFrame, runs: pd.DataFrame | None, run: str | None = None,
                   floor: pd.DataFrame | None = None) -> list[tuple[str, pd.DataFrame, list[str], list[str]]]:
    """``summary_tables``' tables with, for each, the run's warnings (``run_warnings``) and each row's honesty
    (``honesty``: nothing chosen, chosen on validation subjects, or uses test labels), from the run's record."""
    rows = headline(_for_run(metrics, run))
    floors = headline(_for_run(floor, run)) if floor is not None and len(floor) else None
    blocks = []
    for (run_id, protocol, trial), part in rows.groupby(["run", "protocol", "trial"], sort=False, dropna=False):
        method = part["method"].iat[0] if "method" in part and pd.notna(part["method"].iat[0]) else DEFAULT_METHOD
        beside = (floors[(floors["run"] == run_id) & (floors["protocol"] == protocol)] if floors is not None
                  else pd.DataFrame())
        if len(beside):  # after the models of each block (pooled, then each dataset)
            part = _in_canonical_order(pd.concat([part, beside], ignore_index=True), "scope", "key", "model")
        classes = run_classes(runs, run_id, protocol, next(iter(part["per_class_accuracy"].dropna()), None))
        per_class = pd.DataFrame([json.loads(v) if isinstance(v, str) else {} for v in part["per_class_accuracy"]],
                                 index=part.index).reindex(columns=classes).astype(float)
        table = pd.concat([part[["key", "model"]].rename(columns={"key": "data"}), per_class,
                           part[[*SCORES, "n"]].rename(columns=SCORE_LABELS)], axis=1)
        # loso/lovo over a whole class set (no dataset) spans datasets too: a block per dataset
        composite = protocol not in SINGLE_DATASET_PROTOCOLS or part.loc[part["scope"] == "dataset", "key"].nunique() > 1
        shown = part if composite else part[part["scope"] == "pooled"]
        if not composite:  # the one dataset's block repeats the pooled one
            table = table[part["scope"] == "pooled"].drop(columns="data")
        record = run_record(runs, run_id, protocol)
        dataset = _run_dataset(runs, run_id, protocol)
        chosen = _what_chose(record, protocol, method, trial)
        if len(beside):
            chosen += f"; floor: nearest-centroid on {floor_input(record)} (learns nothing), the same folds"
        leaks = run_leaks(record, protocol)
        if leaks:
            chosen += "; leaky, uses test labels: " + "; ".join(leaks)
        title = (f"{run_id} · {protocol}{f' ({dataset})' if dataset else ''}: test, pooled over folds"
                 f"{' and per dataset' if composite else ''}; {chosen}")
        honest = [honesty(record, protocol, method, model, trial) for model in shown["model"]]
        blocks.append((title, table.reset_index(drop=True), run_warnings(record), honest))
    return blocks


def summary_tables(metrics: pd.DataFrame, runs: pd.DataFrame | None, run: str | None = None,
                   floor: pd.DataFrame | None = None) -> list[tuple[str, pd.DataFrame]]:
    """One titled table per (run, protocol, honest trial): rows micro / macro / fused (α chosen on
    validation), columns the per-class accuracy of each class, accuracy, UF1, UAR and n, on test subjects
    pooled over folds. A composite protocol adds a block of rows per dataset (column ``data``), as in the
    paper's Table 7. ``floor`` (the floor_metrics table): the run's floor, a row "floor" beside the models
    (runs written before the floor have none, and their tables are as before). Each title says what chose
    the run's epochs, α and settings, from the run's own record (``summary_blocks`` adds its warnings and
    each row's honesty)."""
    return [(title, table) for title, table, _, _ in summary_blocks(metrics, runs, run, floor)]


def _by_split(rows: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Validation and test scores of the same rows side by side: validation_accuracy ... test_uar."""
    wide = None
    for split in SPLITS:
        scores = rows.loc[rows["split"] == split, [*keys, *SCORES]].rename(columns={s: f"{split}_{s}" for s in SCORES})
        # merge matches missing keys (α of micro / macro, shots of "selected") to each other, as wanted here
        wide = scores if wide is None else wide.merge(scores, on=keys, how="outer")
    return wide


def best_table(metrics: pd.DataFrame, by: str = "uf1", split: str = "validation", top: int = 10,
               run: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """The ``top`` (configuration, model, α) rows of each search (run, protocol), ranked by the pooled ``by``
    score on ``split``, and the search's honest "selected" fused row.

    Returns ``(ranking, selected)``. ``ranking``: run, protocol, rank, trial, shots, model, alpha and
    validation_/test_ accuracy, uf1, uar; its rows are the configurations' micro and macro models and their
    fused models at every α of the grid (not the per-fold chosen α). ``selected``: the same score columns for
    the "selected" fused row of each (run, protocol), or None where no search wrote one. Ranking on
    ``split="test"`` is an oracle: the caller must say so; the honest number is ``selected``'s test score.
    """
    if by not in SCORES:
        raise ValueError(f"rank by one of {', '.join(SCORES)}, not {by!r}")
    if split not in SPLITS:
        raise ValueError(f"rank on one of {', '.join(SPLITS)}, not {split!r}")
    if top < 1:
        raise ValueError(f"top must be at least 1, got {top}")
    pooled = _for_run(metrics, run)
    pooled = pooled[pooled["scope"] == "pooled"]
    searched = pooled[~honest_trials(pooled["trial"])]
    candidates = searched[((searched["model"] != "fused") & searched["alpha"].isna())
                          | ((searched["model"] == "fused") & ~searched["chosen"] & searched["alpha"].notna())]
    keys = ["run", "protocol", "trial", "shots", "model", "alpha"]
    ranking = _by_split(candidates, keys)
    ranking = ranking.sort_values(["run", "protocol", f"{split}_{by}", "trial", "model", "alpha"],
                                  ascending=[True, True, False, True, True, True], na_position="last", kind="stable")
    ranking.insert(2, "rank", ranking.groupby(["run", "protocol"]).cumcount() + 1)
    ranking = ranking[ranking["rank"] <= top].reset_index(drop=True)

    chosen = pooled[(pooled["trial"] == SELECTED) & (pooled["model"] == "fused") & pooled["chosen"]]
    selected = _by_split(chosen, ["run", "protocol", "trial", "model"]).reset_index(drop=True) if len(chosen) else None
    return ranking, selected


def searched_settings(trials: pd.DataFrame | None) -> pd.DataFrame:
    """Per (run, protocol, trial): the searched settings other than shots, as canonical JSON ("{}" if none)."""
    columns = ["run", "protocol", "trial", "settings"]
    if trials is None or not len(trials):
        return pd.DataFrame(columns=columns)
    unique = trials.drop_duplicates(["run", "protocol", "trial"])
    settings = [json.dumps({k: v for k, v in json.loads(s).items() if k != "shots"}, sort_keys=True)
                for s in unique["searched"]]
    return unique[columns[:3]].assign(settings=settings)[columns]


def _settings_label(settings: str) -> str:
    return ", ".join(f"{k}={v}" for k, v in json.loads(settings).items()) if settings else ""


def alpha_shots_grids(metrics: pd.DataFrame, run: str | None = None, metric: str = "uf1",
                      trials: pd.DataFrame | None = None) -> list[tuple[str, str, str, dict[str, pd.DataFrame]]]:
    """For each search (run, protocol) and setting of the searched settings other than shots: the fused
    model's pooled ``metric`` as a shots x α grid per split, ``(run, protocol, settings JSON, {split: grid})``.

    Configurations that share a shots value differ in other searched settings: ``trials`` (whose ``searched``
    JSON names them) separates them; without it such a clash is a ValueError.
    """
    if metric not in SCORES:
        raise ValueError(f"metric must be one of {', '.join(SCORES)}, not {metric!r}")
    rows = _for_run(metrics, run)
    rows = rows[~honest_trials(rows["trial"]) & (rows["model"] == "fused") & ~rows["chosen"]
                & (rows["scope"] == "pooled") & rows["alpha"].notna()]
    rows = rows.merge(searched_settings(trials), on=["run", "protocol", "trial"], how="left")
    rows = rows.assign(settings=rows["settings"].fillna(""), shots=rows["shots"].astype(int),
                       alpha=rows["alpha"].astype(float).round(6))  # α is float32 on disk: 0.1 -> 0.100000001
    grids = []
    for (run_id, protocol, settings), group in rows.groupby(["run", "protocol", "settings"], sort=True):
        if (group.groupby(["split", "shots", "alpha"])["trial"].nunique() > 1).any():
            raise ValueError(f"run {run_id} protocol {protocol}: several configurations share a shots value; "
                             "pass the trials table so that each setting of the other searched settings gets a grid")
        by_split = {split: group[group["split"] == split].pivot(index="shots", columns="alpha", values=metric)
                    for split in SPLITS}
        shots = sorted(set().union(*(g.index for g in by_split.values())))
        alphas = sorted(set().union(*(g.columns for g in by_split.values())))
        grids.append((run_id, protocol, settings,
                      {split: grid.reindex(index=shots, columns=alphas) for split, grid in by_split.items()}))
    return grids


def alpha_shots_heatmaps(metrics: pd.DataFrame, out_dir: Path, run: str | None = None, metric: str = "uf1",
                         trials: pd.DataFrame | None = None) -> list[Path]:
    """For each grid of ``alpha_shots_grids``: one PNG with two heatmaps, shots x α of the fused model's pooled
    ``metric`` on validation (left: what selection sees) and on test (right), one colour scale for both."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for run_id, protocol, settings, grids in alpha_shots_grids(metrics, run, metric, trials):
        shots, alphas = grids["validation"].index, grids["validation"].columns
        values = {split: grid.to_numpy(float) for split, grid in grids.items()}
        every = np.concatenate([v.ravel() for v in values.values()])
        low, high = (np.nanmin(every), np.nanmax(every)) if np.isfinite(every).any() else (0.0, 1.0)

        figure = Figure(figsize=(3.0 + 1.6 * len(alphas), 1.8 + 0.55 * len(shots)), layout="constrained")
        axes = figure.subplots(1, 2)
        for axis, split in zip(axes, SPLITS):
            image = axis.imshow(values[split], vmin=low, vmax=high, cmap="viridis", aspect="auto")
            axis.set_xticks(range(len(alphas)), labels=[f"{a:g}" for a in alphas])
            axis.set_yticks(range(len(shots)), labels=[str(s) for s in shots])
            axis.set_xlabel("α (weight of the macro scores)")
            axis.set_ylabel("shots")
            axis.set_title("validation (what selection sees)" if split == "validation"
                           else "test (an oracle: never select on it)", fontsize=9)
            middle = (low + high) / 2
            for (i, j), value in np.ndenumerate(values[split]):
                axis.text(j, i, "–" if np.isnan(value) else f"{value:.2f}", ha="center", va="center", fontsize=8,
                          color="white" if np.isnan(value) or value < middle else "black")
        figure.colorbar(image, ax=list(axes), label=f"pooled {SCORE_LABELS[metric]}")
        label = _settings_label(settings)
        figure.suptitle(f"{run_id} · {protocol}: fused {SCORE_LABELS[metric]}, pooled over folds"
                        + (f"\n{label}" if label else ""), fontsize=10)
        slug = "_".join(f"{k}-{v}" for k, v in json.loads(settings).items()) if settings else ""
        path = out_dir / file_name("heatmap", run_id, protocol, metric, slug)
        if path in written:  # two settings that differ only in characters a file name cannot hold
            path = path.with_name(f"{path.stem}-{len(written)}{path.suffix}")
        figure.savefig(path, dpi=110)
        written.append(path)
    return written


def honest_confusions(metrics: pd.DataFrame, runs: pd.DataFrame | None, run: str | None = None
                      ) -> list[tuple[pd.Series, pd.DataFrame]]:
    """Per (run, protocol, honest trial): its headline fused pooled test row and that row's confusion matrix
    as a DataFrame (index the true class, columns the predicted one, in the run's class order)."""
    rows = headline(_for_run(metrics, run))
    rows = rows[(rows["scope"] == "pooled") & (rows["model"] == "fused") & rows["confusion"].notna()]
    confusions = []
    for _, row in rows.iterrows():
        classes = run_classes(runs, row["run"], row["protocol"], row["per_class_accuracy"])
        matrix = np.asarray(json.loads(row["confusion"]), dtype=np.int64)
        if matrix.shape != (len(classes), len(classes)):
            raise ValueError(f"run {row['run']} protocol {row['protocol']}: a {matrix.shape} confusion matrix "
                             f"for {len(classes)} classes")
        confusions.append((row, pd.DataFrame(matrix, index=pd.Index(classes, name="true"),
                                             columns=pd.Index(classes, name="predicted"))))
    return confusions


def confusion_plots(metrics: pd.DataFrame, runs: pd.DataFrame | None, out_dir: Path,
                    run: str | None = None) -> list[Path]:
    """Per (run, protocol): the confusion matrix of the honest fused model (pooled test, α chosen on
    validation; for a search the "selected" trial) as a PNG, class names on the axes, counts in the cells."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for row, confusion in honest_confusions(metrics, runs, run):
        classes, matrix = list(confusion.index), confusion.to_numpy()
        size = 2.5 + 0.7 * len(classes)
        figure = Figure(figsize=(size + 1.0, size), layout="constrained")
        axis = figure.subplots()
        image = axis.imshow(matrix, cmap="Blues")
        axis.set_xticks(range(len(classes)), labels=classes, rotation=45, ha="right")
        axis.set_yticks(range(len(classes)), labels=classes)
        axis.set_xlabel("predicted")
        axis.set_ylabel("true")
        for (i, j), count in np.ndenumerate(matrix):
            axis.text(j, i, str(count), ha="center", va="center", fontsize=9,
                      color="white" if count > matrix.max() / 2 else "black")
        figure.colorbar(image, ax=axis, label="samples")
        what = "selected configuration, " if row["trial"] == SELECTED else ""
        axis.set_title(f"{row['run']} · {row['protocol']}: fused ({what}α chosen on validation), pooled test\n"
                       f"accuracy {row['accuracy']:.3f} · UF1 {row['uf1']:.3f} · UAR {row['uar']:.3f} · n {row['n']}",
                       fontsize=9)
        path = out_dir / file_name("confusion", row["run"], row["protocol"], row["trial"] if pd.notna(row["trial"]) else "")
        figure.savefig(path, dpi=110)
        written.append(path)
    return written


def floor_table(floor) -> list[dict]:
    """The run's floor metrics (nearest centroid, flow u, v, same folds) as the pooled table's last row; none if it has none."""
    if floor is None or not len(floor):
        return []
    return [{"model": "floor (nearest-centroid, flow u, v)", "alpha": None, "n": int(r.n),
             "accuracy": round(r.accuracy, 4), "uf1": round(r.uf1, 4), "uar": round(r.uar, 4)}
            for r in floor.itertuples() if r.scope == "pooled" and r.split == "test"]
