"""The algorithm library: PyTorch only. Importing it never imports ray, mlflow or sklearn."""
