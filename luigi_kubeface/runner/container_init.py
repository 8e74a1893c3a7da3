"""What the runner does when it is PID 1 of its container: a minimal init in front of the attempt.

Why: the kernel gives PID 1 no default signal action, so a runner that is PID 1 ignores the SIGTERM
of a pod deletion, an eviction or a master's cancel; the pod then takes its whole grace period and
the attempt runs on, and may record a result nobody wants any more. The kernel also hands every
orphan of the container to PID 1, which must reap it.

So PID 1 forks. The child runs the attempt exactly as a runner outside a container does (SIGTERM
ends its element and writes the attempt's record: runner.py). PID 1 forwards SIGTERM, SIGINT and
SIGHUP to the child's process group, reaps every zombie, kills what is left once the child is gone
(or KILL_AFTER seconds after a SIGTERM the child could not act on, e.g. stuck in C code), and exits
with the child's status, as tini and Docker's --init do.
"""

import atexit
import contextlib
import os
import signal
import sys
import traceback

# Seconds PID 1 gives the attempt after forwarding a SIGTERM (the pods' grace period is 10 s).
KILL_AFTER = 5
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def is_init():
    return os.getpid() == 1


def run_as_init(child_main):
    """Fork; the child runs child_main() (its return value is the exit code); return the child's status."""
    child = os.fork()
    if child == 0:
        os.setpgid(0, 0)  # its own group: PID 1 signals the element's processes along with it
        for sig in FORWARDED:
            signal.signal(sig, signal.SIG_DFL)
        code = 3
        try:
            code = child_main()
        except BaseException:  # noqa: BLE001 - the child must never return into PID 1's code
            traceback.print_exc()
        finally:
            with contextlib.suppress(BaseException):
                atexit._run_exitfuncs()  # as a normal exit of the runner would
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(code if isinstance(code, int) else 3)
    with contextlib.suppress(OSError):
        os.setpgid(child, child)  # no race with the child's own setpgid: whichever runs first wins

    def forward(signum, _frame):
        with contextlib.suppress(OSError):
            os.killpg(child, signum)
        if signum == signal.SIGTERM:
            signal.alarm(KILL_AFTER)

    def kill_child(_signum, _frame):
        with contextlib.suppress(OSError):
            os.killpg(child, signal.SIGKILL)

    for sig in FORWARDED:
        signal.signal(sig, forward)
    signal.signal(signal.SIGALRM, kill_child)
    return _reap_until(child)


def _reap_until(child):
    """Reap every process handed to PID 1; once the child is gone, kill and reap the rest."""
    status = None
    while True:
        try:
            pid, raw = os.wait()
        except ChildProcessError:
            break
        if pid == child:
            status = os.waitstatus_to_exitcode(raw)
            signal.alarm(0)
            with contextlib.suppress(OSError):
                os.kill(-1, signal.SIGKILL)  # as PID 1: every other process of the container
    if status is None:
        return 3
    return status if status >= 0 else 128 - status
