"""The code a job ships: which modules (discover.py), their version (version.py), what the function reaches
(reach.py, reading code with bytecode.py and sources with module_source.py), the runner's install (install.py)."""
