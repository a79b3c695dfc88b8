"""What a search's trials report to Tune, named once: the trial (flows/trial.py) reports them, the
scheduler (``scheduler.py``) stops on them, the rows (``tables.py``) read them back."""

METRIC = "validation_accuracy"
TIME_ATTR = "meta_epoch"
COMPLETED = "fold_evaluated"  # in the last report only (Tune's own "done" is set on stopped trials too)
DATA_ERROR = "data_error"      # the last report of a trial ended by a DataError (not retried)
