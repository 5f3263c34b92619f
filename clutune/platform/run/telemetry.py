"""Telemetry off unless the user asks for it: MLflow 3 sends usage events by default, Ray's usage stats are
turned off separately (``RAY_USAGE_STATS_ENABLED=0`` in the CLI's Ray environment).

Applied when clutune is imported, before MLflow is, so the CLI and the Python API behave alike. A user who sets
either variable decides: ``MLFLOW_DISABLE_TELEMETRY=false`` turns MLflow's telemetry back on.
"""

from __future__ import annotations

import os

TELEMETRY_VARIABLES = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1"}


def telemetry_off_by_default() -> None:
    """Set both variables, unless the user has set either (then their choice stands untouched)."""
    if any(name in os.environ for name in TELEMETRY_VARIABLES):
        return
    os.environ.update(TELEMETRY_VARIABLES)


__all__ = ["TELEMETRY_VARIABLES", "telemetry_off_by_default"]
