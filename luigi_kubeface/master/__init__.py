"""The master: one run of a job (dispatch), the engine's loop, the judge's decisions, the lease, signals."""
