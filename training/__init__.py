"""Training and evaluation, pure computation (no storage, no Prefect): the registered models
(``models/``: one module each, discovered on first use), their stages and networks, episodes, folds,
metrics, the one run's units (``run.py``) and prediction rows (``predictions.py``), the selection of a
search's configuration (``selection.py``) and the search's own tables (``search/``). The Ray Tune
trainable is flows/trial.py (it orchestrates)."""
