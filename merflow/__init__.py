"""merflow: a micro-expression recognition pipeline from raw dataset archives to result tables.

The code lives in the repository's top-level folders, installed as subpackages:
``merflow.flows`` (Prefect flows and the CLI), ``merflow.tasks`` (units of work),
``merflow.storage`` (on-disk formats) and ``merflow.training`` (model and evaluation).
"""

__version__ = "0.1.0"
