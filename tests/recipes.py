"""The small oracle recipe the cache and oracle tests train: an MLP on digits with the shipped SGD settings, so a
test names only what it changes (width, epochs)."""

from __future__ import annotations

from clutune.core.oracle import OracleRecipe


def tiny_recipe(hidden: int = 16, epochs: int = 1) -> OracleRecipe:
    return OracleRecipe(
        model={"name": "mlp", "hidden": [hidden]},
        epochs=epochs,
        lr=0.05,
        momentum=0.9,
        weight_decay=5e-4,
        batch_size=64,
        schedule="cosine",
        augment=False,
    )
