"""Ray: the address, the one internals adapter, Tune's storage and the oracle pool."""
