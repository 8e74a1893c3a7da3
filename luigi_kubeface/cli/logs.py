"""`kubeface logs`: an attempt's stdout and stderr, from storage or live from where it runs."""

import sys
import time

from ..bucket import layout as naming
from ..errors import BlobNotFoundError, KubefaceError, UnreadableRecordError
from .common import configured, job_state, job_tools


def follow_live(job, element, attempt, out, args):
    """Stream a running attempt's log from where it runs (a pod) to out until it ends.

    attempt is the running attempt's id when the master's progress.json names one, else None
    ("the element's running attempt"). Returns False when no live source is known, so the caller
    waits for the log in storage instead.
    """
    tools, meta = job_tools(job)
    if tools is None:
        return False
    return tools.follow_log(job, meta, configured(), args, element, attempt, out)


def _pick_attempt(state, element, wanted):
    if not element.attempts:
        return None
    if wanted is None:
        return element.attempts[-1]
    numbered = naming.numbered_attempts(element.attempts)  # the numbers the status page shows, "#N"
    for number, attempt in numbered:
        if attempt == wanted or (wanted.isdigit() and number == int(wanted)):
            return attempt
    raise KubefaceError(
        "element %s has no attempt %s: its attempts are %s"
        % (element.key, wanted, ", ".join("%d (%s)" % pair for pair in numbered))
    )


def cmd_logs(args, out):
    state = job_state(args)
    element = state.find(args.element)
    job = state.job
    known = set(element.attempts)
    live = [a for a, (key, _) in sorted((state.live_running() or {}).items()) if key == element.key]
    attempt = live[-1] if live and args.attempt is None else _pick_attempt(state, element, args.attempt)
    if args.follow and args.attempt is None and follow_live(job, element.key, live[-1] if live else None, out, args):
        return 0  # the element's attempt was running and its live log was streamed to the end
    while True:
        if attempt is not None:
            try:
                text = job.read_log(element.key, attempt)
            except BlobNotFoundError:
                try:
                    record = job.attempt_record(element.key, attempt)
                except UnreadableRecordError as error:
                    record = {"outcome": "unreadable record", "message": str(error)}
                if record is not None:
                    print(
                        "attempt %s of element %s left no log (%s: %s)"
                        % (attempt, element.key, record.get("outcome"), record.get("message", "")),
                        file=sys.stderr,
                    )
                    return 1
            else:
                print("== element %s (%s), attempt %s ==" % (element.key, element.label, attempt), file=sys.stderr)
                out.write(text.decode(errors="replace"))
                out.flush()
                return 0
        if not args.follow:
            if attempt in live:
                print(
                    "attempt %s of element %s (%s) is running: its log reaches storage when it ends (add "
                    "--follow to wait for it, or --attempt N for an earlier one)"
                    % (attempt, element.key, element.label),
                    file=sys.stderr,
                )
            elif attempt is None:
                print(
                    "element %s (%s) has no attempts yet: it has not run, or its first attempt is still "
                    "running (add --follow to wait for its log)" % (element.key, element.label),
                    file=sys.stderr,
                )
            return 1
        time.sleep(args.poll)  # the runner writes the log when the attempt ends
        if args.attempt is None:  # follow the element's newest attempt, even one that starts later
            newer = [a for a in job.attempts(element.key) if a not in known]
            if newer:
                attempt = newer[-1]
