"""A progress bar for Client.map, with the engine's counts (tqdm): a widget in a notebook, text elsewhere."""

import contextlib
import sys

from luigi_kubeface import notebook


class ProgressBar:
    """Off unless asked, or unless the output is a terminal or a notebook; log lines print above it, not through it."""

    def __init__(self, total, job_id, enabled=None, file=None):
        self.file = file or sys.stderr
        in_kernel = file is None and notebook.in_kernel()  # the kernel's stderr is the cell's output
        self.enabled = (self.file.isatty() or in_kernel) if enabled is None else bool(enabled)
        self._bar = None
        self._stack = contextlib.ExitStack()
        if self.enabled:
            tqdm = _tqdm_class(in_kernel)
            from tqdm.contrib.logging import logging_redirect_tqdm

            self._bar = tqdm(
                total=total, desc=job_id, unit="element", file=self.file, dynamic_ncols=True, smoothing=0.1
            )
            self._stack.enter_context(logging_redirect_tqdm(tqdm_class=tqdm))

    def update(self, progress):
        if self._bar is None:
            return
        self._bar.n = progress.done + progress.failed
        self._bar.set_postfix_str(progress.describe().split(": ", 1)[1], refresh=False)
        self._bar.refresh()

    def close(self):
        if self._bar is not None:
            self._stack.close()
            self._bar.close()
            self._bar = None


def _tqdm_class(in_kernel):
    """A notebook widget in a kernel with ipywidgets (tqdm.auto), else the text bar (tqdm.auto warns once why)."""
    if in_kernel:
        from tqdm.auto import tqdm
    else:
        from tqdm import tqdm
    return tqdm
