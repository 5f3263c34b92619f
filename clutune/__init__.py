"""clutune: continual learning-unlearning research at scale."""

__version__ = "0.1.0"
