"""Errors of the data a fold is trained on, as opposed to errors of the machine that trains it.

A ``DataError`` can never succeed on a retry (a class with too few samples in a fold, samples
without features): a Ray Tune trial that raises one fails at once, without retries
(flows/trial.py), and its message is what the user reads, so it names the fold and the samples.
A killed worker or a full disk is any other exception, and is retried.
"""

from __future__ import annotations


class DataError(ValueError):
    """The fold's data cannot be trained on as it is; retrying will not help. Name the fold and samples."""
