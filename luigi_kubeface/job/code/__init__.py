"""The code a job ships: which modules (discover.py), their version (version.py), what the function reaches (reach.py), the runner's install (install.py)."""
