"""The task runner, what a process or pod executes: ``python -m luigi_kubeface.runner`` (attempt.py).

Kept empty: backends import runner.process, and a pod imports only what one attempt uses.
"""
