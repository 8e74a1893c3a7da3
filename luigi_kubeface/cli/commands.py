"""`kubeface`: see and debug jobs from their storage alone, from any machine.

    kubeface list                          jobs under the storage root
    kubeface status JOB                    counts, failed and slowest elements
    kubeface results JOB [--sort NAME] [--ascending] [--top N] [--format table|csv|json]
    kubeface logs JOB ELEMENT [--attempt N] [--follow]
    kubeface reproduce JOB ELEMENT [--pdb] run one element here, in this Python
    kubeface cleanup JOB | --older-than 7d [--blobs] [--yes] [--force]

`status` exits with 1 when elements failed, and every command with 2 on bad input (unknown job...).
JOB is a job id under --storage-root (default: [kubeface] storage_root in luigi.cfg) or a job's
full URL (gs://bucket/prefix/job, or its directory). ELEMENT is an element key (or 4+ leading
characters of it), its parameters as `status` shows them (x=3), or @N for the N-th grid element.
"""

import argparse
import contextlib
import os
import sys

from ..backends import all_backend_tools
from ..errors import KubefaceError
from ..terminal import strip_controls
from .cleanup import cmd_cleanup
from .common import configured
from .listing import cmd_list
from .logs import cmd_logs
from .reproduce import cmd_reproduce
from .results import cmd_results
from .status import cmd_status


def _backend_flags(cmd):
    """Flags the backends' tools read (where a cluster is), on the commands that use those tools."""
    for tools in all_backend_tools():
        tools.add_arguments(cmd)


def parser():
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--storage-root", help="where jobs live (default: [kubeface] storage_root in luigi.cfg)")
    top = argparse.ArgumentParser(
        prog="kubeface",
        description=__doc__.split("\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n", 2)[2],
    )
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    cmd = commands.add_parser("list", parents=[common], help="jobs under the storage root")
    cmd.set_defaults(run=cmd_list)
    cmd = commands.add_parser("status", parents=[common], help="counts, failed and slowest elements of a job")
    cmd.add_argument("job")
    cmd.add_argument("--limit", type=int, default=10, help="elements shown per list (default 10)")
    cmd.add_argument(
        "--max-reads",
        type=int,
        default=5000,
        help="attempt records read at most (those of unfinished elements first; default 5000)",
    )
    cmd.set_defaults(run=cmd_status)
    cmd = commands.add_parser("results", parents=[common], help="one row per element: parameters and result values")
    cmd.add_argument("job")
    cmd.add_argument(
        "--sort",
        metavar="NAME",
        help="the result value to rank by, highest first (default: the map task's result_metric, else the first value)",
    )
    cmd.add_argument("--ascending", action="store_true", help="lowest first")
    cmd.add_argument("--top", type=int, default=0, metavar="N", help="only the first N rows")
    cmd.add_argument("--format", choices=("table", "csv", "json"), default="table")
    cmd.add_argument("--max-reads", type=int, default=10**9, help=argparse.SUPPRESS)
    cmd.set_defaults(run=cmd_results)
    cmd = commands.add_parser("logs", parents=[common], help="an attempt's stdout and stderr")
    cmd.add_argument("job")
    cmd.add_argument("element")
    cmd.add_argument("--attempt", help="attempt number (1, 2, ...) or id; default: the last one")
    cmd.add_argument("--follow", "-f", action="store_true", help="wait for a running attempt's log")
    cmd.add_argument("--poll", type=float, default=2.0, help=argparse.SUPPRESS)
    _backend_flags(cmd)
    cmd.set_defaults(run=cmd_logs)
    cmd = commands.add_parser("reproduce", parents=[common], help="run one element in this Python")
    cmd.add_argument("job")
    cmd.add_argument("element")
    cmd.add_argument("--pdb", action="store_true", help="debug post-mortem if the element raises")
    cmd.add_argument("--image", help="the image of the printed `docker run` line (default: [kubeface] image)")
    cmd.set_defaults(run=cmd_reproduce)
    cmd = commands.add_parser("cleanup", parents=[common], help="delete a job's pods and blobs (dry run by default)")
    cmd.add_argument("job", nargs="?")
    cmd.add_argument("--older-than", metavar="DURATION", help="every job not active for this long (30m, 12h, 7d)")
    cmd.add_argument("--blobs", action="store_true", help="delete the job's blobs too (results included)")
    cmd.add_argument("--yes", action="store_true", help="really delete (default: only print what would go)")
    cmd.add_argument("--force", action="store_true", help="also a job whose master is running (its lease is live)")
    _backend_flags(cmd)
    cmd.set_defaults(run=cmd_cleanup)
    return top


class TerminalText:
    """A terminal stream that drops control characters: labels, errors and logs come from the unsigned bucket."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, text):
        return self.stream.write(strip_controls(text))

    def __getattr__(self, name):
        return getattr(self.stream, name)


def _for_terminal(stream, terminal):
    tty = terminal if terminal is not None else getattr(stream, "isatty", lambda: False)()
    return TerminalText(stream) if tty else stream


def main(argv=None, out=None, terminal=None):
    """terminal: whether out and stderr are terminals (None: ask them), so bucket text is stripped of controls."""
    args = parser().parse_args(argv)
    out = _for_terminal(out or sys.stdout, terminal)
    with contextlib.redirect_stderr(_for_terminal(sys.stderr, terminal)):
        try:
            configured()  # storages are opened with luigi.cfg's options (s3_endpoint_url ...), as pipelines do
            code = args.run(args, out)
            out.flush()  # here, not at exit: a closed pipe is answered below
            return code
        except KubefaceError as error:
            print("kubeface %s: %s" % (args.command, error), file=sys.stderr)
            return 2
        except BrokenPipeError:  # `kubeface status ... | head`: the reader has what it wanted
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
            return 128 + 13  # as if killed by SIGPIPE, like other commands in a pipeline


if __name__ == "__main__":
    sys.exit(main())
