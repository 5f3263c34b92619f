"""The core: config, scenarios, oracles, the experiment, metrics and results. No Ray, no MLflow."""
