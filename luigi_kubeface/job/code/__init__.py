"""The code a job ships: which modules (package.py), what the function reaches (reach.py)."""
