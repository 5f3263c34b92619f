"""The platform layer: sweeps, oracle pools, tracking. It wraps the library and holds no algorithm code."""
