"""Searching: the sweep, PBT, samplers, search spaces, objectives and convergence."""
