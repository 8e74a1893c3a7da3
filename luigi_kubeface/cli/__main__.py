"""``python -m luigi_kubeface.cli``: the ``kubeface`` command."""

import sys

from .commands import main

sys.exit(main())
