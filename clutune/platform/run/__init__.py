"""The set-up path and the one engine: process settings, launch, grids, the trainable."""
