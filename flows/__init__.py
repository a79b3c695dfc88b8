"""Prefect flows and the merflow CLI: they wire tasks and storage, they do no work themselves.

Prefect reads its settings when it is first imported, so the defaults an offline machine needs
(each commented below) are set here, before any flow module imports it. A user's own
environment wins: these are defaults only.
"""

import os

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")          # telemetry errors offline
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")  # default 20 s is tight on 2 cores
os.environ.setdefault("PREFECT_LOGGING_TO_API_BATCH_INTERVAL", "0.5")
