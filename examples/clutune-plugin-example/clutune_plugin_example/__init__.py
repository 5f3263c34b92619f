"""A worked clutune plugin: the method ``example_er``, the model ``example_mlp`` and the dataset reader
``example_blobs``, each registered in pyproject.toml under clutune's entry point groups."""
