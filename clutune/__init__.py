"""clutune: continual learning-unlearning research at scale."""

from clutune.telemetry import telemetry_off_by_default

__version__ = "0.1.0"

telemetry_off_by_default()  # before anything imports MLflow (docs/reliability.md, Telemetry)
