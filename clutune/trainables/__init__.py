"""Ray Tune trainables that wrap the runner."""

from clutune.trainables.clu_trainable import clu_trainable, objective_name

__all__ = ["clu_trainable", "objective_name"]
