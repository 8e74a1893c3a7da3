"""``python -m luigi_kubeface.runner <job-url> <element> <attempt>``: one attempt (see attempt.py)."""

import sys

from .attempt import main

sys.exit(main())
