"""Records: MLflow tracking and filters, publishing, sync and export."""
