"""Read-only views of a job for people: its state, results tables and charts, the status page."""
