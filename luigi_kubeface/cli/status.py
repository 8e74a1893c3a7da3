"""`kubeface status`: a job's counts, runs, failed and slowest elements."""

import time

from .. import cost
from ..master import lease
from ..views.states import ElementState
from ..views.durations import format_duration
from ..views.status_page import page_url
from .common import job_state, utc_minute


def _print_runs(state, out):
    """The lease, the live master's counts, the last run and the results by code version."""
    holder = state.store.lease_holder()
    if holder is not None:
        print("lease: %s" % lease.describe(holder), file=out)
    live = state.live
    if live and not live.final:
        age = time.time() - live.updated
        print(
            "running now (master's counts %s ago%s): %d reused, %d succeeded, %d running, %d pending, %d failed, "
            "%d retried, %d speculated"
            % (
                (format_duration(age), "; it may have stopped" if age > 300 else "")
                + tuple(
                    live.counts.get(n, 0)
                    for n in ("reused", "succeeded", "running", "pending", "failed", "retried", "speculated")
                )
            ),
            file=out,
        )
    run = state.last_dispatch
    if run:
        print(
            "last run %s (%s to %s UTC): %d reused, %d succeeded, %d failed, %d retried, %d speculated%s"
            % (
                (run.run, utc_minute(run.started), utc_minute(run.finished))
                + tuple(run.count(n) for n in ("reused", "succeeded", "failed", "retried", "speculated"))
                + ("; stopped early: %s" % run.stopped if run.stopped else "",)
            ),
            file=out,
        )
    _print_cost(state.cost(), out)
    if state.version_counts:
        current, counted = state.store.code_version, state.store.counted_versions
        print(
            "results by code version: %s"
            % ", ".join(
                "%s%s %d" % (version or "(before code versions)", " (current)" if version in counted else "", n)
                for version, n in sorted(state.version_counts.items(), key=lambda vn: (vn[0] != current, vn[0]))
            ),
            file=out,
        )


def _print_cost(ledger, out):
    """What the job's attempts used (all runs), per category: requests x running time, priced if set (cost.py)."""
    rows = cost.breakdown(ledger)
    if len(rows) == 1:
        return  # no attempt charged (a job run before costs were kept, or nothing ran)
    priced = rows[-1][1].cost > 0
    print("cost (all runs, requests x running time): %s" % cost.describe(rows[-1][1], priced), file=out)
    for category, usage in rows[:-1]:
        print("  %-10s %s" % (category, cost.describe(usage, priced)), file=out)


def _print_elements(elements, running, limit, out):
    """Failed elements, running ones (longest first) and the slowest done; whether any failed."""
    failed = [e for e in elements if e.state == ElementState.FAILED]
    if failed:
        print("\nfailed elements (%d):" % len(failed), file=out)
        for e in failed[:limit]:
            print("  @%-5d %s  %-30s %d attempt(s)  %s" % (e.index, e.key, e.label, len(e.attempts), e.error), file=out)
        if len(failed) > limit:
            print("  ... %d more" % (len(failed) - limit), file=out)
    if running:
        longest = sorted((e for e in elements if e.state == ElementState.RUNNING), key=lambda e: -e.duration)
        print("\nrunning elements (%d), longest first:" % len(longest), file=out)
        for e in longest[:limit]:
            print(
                "  @%-5d %s  %-30s %8s  attempt %s"
                % (e.index, e.key, e.label, format_duration(e.duration), e.attempts[-1]),
                file=out,
            )
    moved = [e for e in elements if e.placement]
    if moved:
        print("\nelements that grew or were preempted (%d):" % len(moved), file=out)
        for e in moved[:limit]:
            print("  @%-5d %s  %-30s %s" % (e.index, e.key, e.label, e.placement), file=out)
    timed = sorted(
        (e for e in elements if e.state == ElementState.DONE and e.duration is not None), key=lambda e: -e.duration
    )
    if timed:
        print("\nslowest elements:", file=out)
        for e in timed[:limit]:
            print(
                "  @%-5d %s  %-30s %8s  %s" % (e.index, e.key, e.label, format_duration(e.duration), e.host), file=out
            )
    return bool(failed)


def cmd_status(args, out):
    state = job_state(args)
    running = state.live_running()
    elements = state.elements(running)
    counts = state.counts(elements)
    store = state.store
    print("job %s  (%s)" % (store.id, store.url), file=out)
    print(
        "function %s, Python %s, cloudpickle %s, last dispatched %s UTC"
        % (
            state.meta.get("function", "?"),
            state.meta.get("python", "?"),
            state.meta.get("cloudpickle", "?"),
            utc_minute(state.meta.get("updated")),
        ),
        file=out,
    )
    print(
        "%d elements: %s; %d attempts"
        % (
            len(elements),
            ", ".join(
                "%d %s" % (counts.get(s, 0), s)
                for s in (
                    ElementState.DONE,
                    ElementState.RUNNING,
                    ElementState.FAILED,
                    ElementState.CANCELLED,
                    ElementState.UNFINISHED,
                    ElementState.NOT_RUN if running is None else ElementState.PENDING,
                )
                if s != ElementState.RUNNING or running is not None
            ),
            counts["attempts"],
        ),
        file=out,
    )
    _print_runs(state, out)
    if state.unread:
        print("(%d older attempt records not read: raise --max-reads)" % state.unread, file=out)
    for key, why in sorted(state.unreadable.items()):
        print("skipped %s: %s" % (key, why), file=out)
    failed = _print_elements(elements, running, args.limit, out)
    print("\nstatus page: %s" % page_url(store), file=out)
    return 1 if failed else 0
