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
import csv
import json
import os
import re
import shlex
import sys
import tempfile
import time
import traceback

from ..master import lease
from ..bucket import layout as naming, blobs as serialization
from ..backends import all_backend_tools, backend_tools
from ..errors import (
    BlobNotFoundError, ConfigurationError, JobRunningError, KubefaceError, StorageError, UnreadableRecordError,
)
from ..views.job_state import JobState
from ..storage import storage_class
from ..terminal import strip_controls
from ..bucket.job_store import JobStore, list_jobs, open_job
from ..bucket.signing import KeyRing
from ..luigi_adapter.config import load_settings  # luigi.cfg's [kubeface] section, read as pipelines read it
from ..runner.attempt import UnusableCall, load_call, module_hint, working_folder
from ..views.result_table import csv_cell, pick_metric, ranked, result_rows, table_columns
from ..views.status_page import format_duration, page_url

DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


# -- the tools of the backend a job ran on (backends/__init__.py BackendTools): live state --------

def _job_tools(job):
    """(the tools of the backend the job ran on, its job.json) or (None, None): the local backend has none."""
    meta = job.meta()
    tools = backend_tools(meta.get("backend"))
    return (tools, meta) if tools is not None else (None, None)


def follow_live(job, element, attempt, out, args):
    """Stream a running attempt's log from where it runs (a pod) to out until it ends.

    attempt is the running attempt's id when the master's progress.json names one, else None
    ("the element's running attempt"). Returns False when no live source is known, so the caller
    waits for the log in storage instead.
    """
    tools, meta = _job_tools(job)
    if tools is None:
        return False
    return tools.follow_log(job, meta, load_settings(), args, element, attempt, out)


def cleanup_running(job, dry_run, args):
    """Delete (or, on a dry run, list) what the job left running (pods); returns their descriptions."""
    tools, meta = _job_tools(job)
    if tools is None:
        return []
    return tools.cleanup(job, meta, load_settings(), args, dry_run)


# -- helpers -------------------------------------------------------------------------------------

def default_storage_root():
    """[kubeface] storage_root from luigi.cfg (and LUIGI_CONFIG_PATH), the same one pipelines use."""
    return load_settings().storage_root


def parse_duration(text):
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text or "")
    if not match:
        raise ConfigurationError("%r is not a duration: write a number with a unit, e.g. 90s, 30m, 12h, 7d, 2w" % text)
    return float(match.group(1)) * DURATION_UNITS[match.group(2) or "s"]


def _state(args):
    store = open_job(args.job, args.storage_root or default_storage_root)
    store.keys = KeyRing.from_settings(load_settings())  # key_dir, signing_key_file: as the master had them
    return JobState(store, max_reads=args.max_reads if hasattr(args, "max_reads") else 2000).refresh()


def _root(args):
    root = args.storage_root or default_storage_root()
    return root if "://" in root else os.path.abspath(os.path.expanduser(root))


def _jobs(root):
    """(job id, JobMeta, last activity) of every job directly under root; links and malformed jobs are skipped."""
    return list_jobs(root, on_skip=_warn)


def _warn(text):
    print("kubeface: warning: %s" % text, file=sys.stderr)


def _when(seconds):
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(seconds)) if seconds else "?"


# -- commands ------------------------------------------------------------------------------------

def cmd_list(args, out):
    root = _root(args)
    jobs = _jobs(root)
    if not jobs:
        print("no jobs under %s" % root, file=out)
        return 0
    print("%-40s %9s %9s  %-16s  %s" % ("JOB", "ELEMENTS", "DONE", "LAST ACTIVE (UTC)", "FUNCTION"), file=out)
    for job_id, meta, latest in sorted(jobs, key=lambda j: -j[2]):
        done = len(JobStore.at(root, job_id, retry_deadline=30.0).finished())
        print("%-40s %9s %9d  %-16s  %s" % (job_id, meta.get("elements", "?"), done, _when(latest),
                                             meta.get("function", "?")), file=out)
    return 0


def _print_runs(state, out):
    """The lease, the live master's counts, the last run and the results by code version."""
    holder = state.store.lease_holder()
    if holder is not None:
        print("lease: %s" % lease.describe(holder), file=out)
    live = state.live
    if live and not live.final:
        age = time.time() - live.updated
        print("running now (master's counts %s ago%s): %d reused, %d succeeded, %d running, %d pending, %d failed, "
              "%d retried, %d speculated" % (
                  (format_duration(age), "; it may have stopped" if age > 300 else "")
                  + tuple(live.counts.get(n, 0) for n in ("reused", "succeeded", "running", "pending", "failed",
                                                          "retried", "speculated"))), file=out)
    run = state.last_dispatch
    if run:
        print("last run %s (%s to %s UTC): %d reused, %d succeeded, %d failed, %d retried, %d speculated%s" % (
            (run.run, _when(run.started), _when(run.finished))
            + tuple(run.count(n) for n in ("reused", "succeeded", "failed", "retried", "speculated"))
            + ("; stopped early: %s" % run.stopped if run.stopped else "",)), file=out)
    if state.version_counts:
        current, counted = state.store.code_version, state.store.counted_versions
        print("results by code version: %s" % ", ".join(
            "%s%s %d" % (version or "(before code versions)", " (current)" if version in counted else "", n)
            for version, n in sorted(state.version_counts.items(), key=lambda vn: (vn[0] != current, vn[0]))),
            file=out)


def _print_elements(elements, running, limit, out):
    """Failed elements, running ones (longest first) and the slowest done; whether any failed."""
    failed = [e for e in elements if e.state == "failed"]
    if failed:
        print("\nfailed elements (%d):" % len(failed), file=out)
        for e in failed[:limit]:
            print("  @%-5d %s  %-30s %d attempt(s)  %s" % (e.index, e.key, e.label, len(e.attempts), e.error), file=out)
        if len(failed) > limit:
            print("  ... %d more" % (len(failed) - limit), file=out)
    if running:
        longest = sorted((e for e in elements if e.state == "running"), key=lambda e: -e.duration)
        print("\nrunning elements (%d), longest first:" % len(longest), file=out)
        for e in longest[:limit]:
            print("  @%-5d %s  %-30s %8s  attempt %s" % (e.index, e.key, e.label, format_duration(e.duration),
                                                        e.attempts[-1]), file=out)
    timed = sorted((e for e in elements if e.state == "done" and e.duration is not None), key=lambda e: -e.duration)
    if timed:
        print("\nslowest elements:", file=out)
        for e in timed[:limit]:
            print("  @%-5d %s  %-30s %8s  %s" % (e.index, e.key, e.label, format_duration(e.duration), e.host), file=out)
    return bool(failed)


def cmd_status(args, out):
    state = _state(args)
    running = state.live_running()
    elements = state.elements(running)
    counts = state.counts(elements)
    store = state.store
    print("job %s  (%s)" % (store.id, store.url), file=out)
    print("function %s, Python %s, cloudpickle %s, last dispatched %s UTC" % (
        state.meta.get("function", "?"), state.meta.get("python", "?"), state.meta.get("cloudpickle", "?"),
        _when(state.meta.get("updated"))), file=out)
    print("%d elements: %s; %d attempts" % (
        len(elements), ", ".join("%d %s" % (counts.get(s, 0), s)
                                 for s in ("done", "running", "failed", "cancelled", "unfinished",
                                           "not run" if running is None else "pending")
                                 if s != "running" or running is not None),
        counts["attempts"]), file=out)
    _print_runs(state, out)
    if state.unread:
        print("(%d older attempt records not read: raise --max-reads)" % state.unread, file=out)
    for key, why in sorted(state.unreadable.items()):
        print("skipped %s: %s" % (key, why), file=out)
    failed = _print_elements(elements, running, args.limit, out)
    print("\nstatus page: %s" % page_url(store), file=out)
    return 1 if failed else 0


def _cell(value):
    if isinstance(value, float):
        return "%.6g" % value
    return "" if value is None else str(value)


def cmd_results(args, out):
    state = _state(args)
    rows = result_rows(state.elements(state.live_running()))
    recorded = state.meta.get("result_metric") or ""
    metric = pick_metric(rows, args.sort or (recorded if recorded in {n for r in rows for n in r.values} else ""))
    descending = not args.ascending
    if not args.sort and state.meta.get("result_direction") == "minimize":
        descending = args.ascending  # the map task said lowest is best: --ascending has nothing to flip
    total = len(rows)
    rows = ranked(rows, metric, descending)[: args.top if args.top else None]
    params, values, own = table_columns(rows, ("#", "state", "duration", "code_version"))
    for note in state.summary_notes():  # on stderr: csv and json stay parseable
        _warn(note)
    if args.format == "json":
        json.dump([{"index": r.index, "element": r.key, "params": r.params, "summary": r.values, "state": r.state,
                    "duration": r.duration, "code_version": r.code_version, "result_type": r.result_type,
                    "error": r.error} for r in rows], out, indent=1)
        out.write("\n")
        return 0
    header = own[:1] + params + [column for column, _ in values] + own[1:]  # unique: a parameter keeps its name
    table = [[str(r.index)] + [r.params.get(name) for name in params] + [r.values.get(name) for _, name in values]
             + [r.state, r.duration, r.code_version] for r in rows]
    if args.format == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow([csv_cell(v) for v in header])
        writer.writerows([[csv_cell(v) for v in line] for line in table])
        return 0
    text = [[_cell(v) for v in line[:-2]] + [format_duration(line[-2]), (line[-1] or "")[:12]] for line in table]
    widths = [min(30, max([len(h)] + [len(line[i]) for line in text])) for i, h in enumerate(header)]
    numeric = [i == 0 or i > len(params) and i < len(header) - 3 or i == len(header) - 2 for i in range(len(header))]
    print("job %s: %d elements%s, %s" % (state.job.id, total, "" if len(rows) == total else " (the first %d)" % len(rows),
                                          "best first on %s (%s)" % (
        metric, "highest first" if descending else "lowest first") if metric else "no numeric results"), file=out)
    for line in [header] + text:
        print("  ".join((cell[:w].rjust(w) if right else cell[:w].ljust(w))
                        for cell, w, right in zip(line, widths, numeric)).rstrip(), file=out)
    if state.unread:
        print("(%d attempt records not read: raise --max-reads)" % state.unread, file=out)
    return 0


def _pick_attempt(state, element, wanted):
    if not element.attempts:
        return None
    if wanted is None:
        return element.attempts[-1]
    numbered = naming.numbered_attempts(element.attempts)  # the numbers the status page shows, "#N"
    for number, attempt in numbered:
        if attempt == wanted or (wanted.isdigit() and number == int(wanted)):
            return attempt
    raise KubefaceError("element %s has no attempt %s: its attempts are %s"
                        % (element.key, wanted, ", ".join("%d (%s)" % pair for pair in numbered)))


def cmd_logs(args, out):
    state = _state(args)
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
                    print("attempt %s of element %s left no log (%s: %s)" % (
                        attempt, element.key, record.get("outcome"), record.get("message", "")), file=sys.stderr)
                    return 1
            else:
                print("== element %s (%s), attempt %s ==" % (element.key, element.label, attempt), file=sys.stderr)
                out.write(text.decode(errors="replace"))
                out.flush()
                return 0
        if not args.follow:
            if attempt in live:
                print("attempt %s of element %s (%s) is running: its log reaches storage when it ends (add "
                      "--follow to wait for it, or --attempt N for an earlier one)" % (attempt, element.key,
                                                                                     element.label), file=sys.stderr)
            elif attempt is None:
                print("element %s (%s) has no attempts yet: it has not run, or its first attempt is still "
                      "running (add --follow to wait for its log)" % (element.key, element.label), file=sys.stderr)
            return 1
        time.sleep(args.poll)  # the runner writes the log when the attempt ends
        if args.attempt is None:  # follow the element's newest attempt, even one that starts later
            newer = [a for a in job.attempts(element.key) if a not in known]
            if newer:
                attempt = newer[-1]


def docker_command(job_url, storage_root, element, attempt, image, env_file):
    """The `docker run` line that runs one attempt as a pod would: every part quoted, the key only in a file."""
    parts = ["docker", "run", "--rm"]
    if not storage_class(job_url).remote:
        parts += ["-v", "%s:%s" % (storage_root, storage_root)]
    parts += ["--env-file", env_file, image or "IMAGE", "python", "-m", "luigi_kubeface.runner", job_url, element,
              attempt]
    return " ".join(shlex.quote(p) for p in parts)


def cmd_reproduce(args, out):
    state = _state(args)
    element = state.find(args.element)
    if not naming.is_element_key(element.key):  # elements.json is unsigned: never pass its text to a shell
        raise KubefaceError("element %r of job %s is not an element key (24 lowercase hex characters): the job's "
                            "elements.json was altered; rerun the job to write it again" % (element.key, state.job.id))
    job = state.job
    settings = load_settings()
    job.keys = KeyRing.from_settings(settings)
    image = args.image or settings.image  # not job.json's: it is unsigned
    attempt = naming.new_attempt_id(naming.next_attempt_number(element.attempts))
    print("# the same element in the job's image, as a pod runs it (writes an attempt record and log):", file=out)
    if not image:
        print("# replace IMAGE with the job's image (or pass --image, or set [kubeface] image)", file=out)
    env_file = job.keys.env_file(job.url, serialization.KEY_ENV)  # mode 0600: the key is never in argv
    print(docker_command(job.url, job.storage_root, element.key, attempt, image, env_file), file=out)
    if job.storage.container_hint():
        print(job.storage.container_hint(), file=out)
    if os.getcwd() not in sys.path:  # the pipeline's module is usually importable from here
        sys.path.insert(0, os.getcwd())
    with tempfile.TemporaryDirectory(prefix="kubeface-code-") as code_dir:  # the code the pods ran
        try:
            function, call_args, kwargs, _ = load_call(job.storage, element.key, job.signing_key(), code_dir)
        except UnusableCall as unusable:
            if isinstance(unusable.error, BlobNotFoundError) and unusable.stage == "input":
                raise KubefaceError("element %s (%s) has no input in storage: inputs are uploaded when an element's "
                                    "first attempt launches, so it has not run yet. Run the job first"
                                    % (element.key, element.label)) from None
            if isinstance(unusable.error, KubefaceError):
                raise unusable.error from None
            raise ConfigurationError(
                "element %s cannot be loaded here: %s: %s%s. Run reproduce in an environment with the job's "
                "packages (as its image has them)" % (element.key, type(unusable.error).__name__, unusable.error,
                                                      module_hint(unusable.error))) from None
        print("# running element %s (%s) in this Python; nothing is written to storage" % (element.key, element.label),
              file=out)
        out.flush()
        try:
            with working_folder(code_dir):  # the project's root as the job ships it, as in a pod
                value = function(*call_args, **kwargs)
        except Exception:  # noqa: BLE001 - the element's own failure, shown or debugged here
            if args.pdb:
                import pdb

                traceback.print_exc()
                pdb.post_mortem(sys.exc_info()[2])
            else:
                traceback.print_exc()
                print("# the element raised: rerun with --pdb to debug it post-mortem", file=out)
            return 1
    print("result: %r" % (value,), file=out)
    return 0


def cmd_cleanup(args, out):
    if bool(args.job) == bool(args.older_than):
        raise ConfigurationError("cleanup takes a JOB or --older-than DURATION (e.g. 7d), not both or neither")
    if args.job:
        jobs = [open_job(args.job, args.storage_root or default_storage_root)]
    else:
        age = parse_duration(args.older_than)
        root = _root(args)
        cutoff = time.time() - age
        found = _jobs(root)
        for job_id, meta, _ in found:
            if meta.get("unreadable"):
                _warn("skipping %s/%s: its %s is not a valid JSON record" % (root.rstrip("/"), job_id, naming.JOB_META))
        jobs = [JobStore.at(root, job_id, retry_deadline=30.0) for job_id, meta, latest in found
                if latest < cutoff and not meta.get("unreadable")]
        if not jobs:
            readable = sum(1 for _, meta, _ in found if not meta.get("unreadable"))
            print("no job under %s has been idle for %s or longer%s: nothing to clean up" % (
                root, args.older_than, " (%d job%s, each active within the last %s)" % (
                    readable, "" if readable == 1 else "s", args.older_than) if readable else ""), file=out)
            return 0
    dry_run = not args.yes
    verb = "would delete" if dry_run else "deleted"
    for job in list(jobs):
        why = _may_be_running(job)
        if why and not args.force:
            if args.job:
                raise JobRunningError(
                    "job %s %s. Deleting its pods and Secret now would fail it; stop that master first (or wait "
                    "for it), or add --force" % (job.id, why))
            _warn("skipping job %s: it %s; add --force to delete it anyway" % (job.id, why))
            jobs.remove(job)
    for job in jobs:
        pods = cleanup_running(job, dry_run, args)
        for pod in pods:
            print("%s pod %s" % (verb, pod), file=out)
        if args.blobs:
            listed = job.storage.list("")
            keys = [k for k in listed if naming.is_job_key(k)]  # only what luigi-kubeface writes
            if len(keys) < len(listed):
                _warn("%d entries of job %s are not luigi-kubeface's and are kept (e.g. %s)"
                      % (len(listed) - len(keys), job.id, next(k for k in listed if not naming.is_job_key(k))))
            if not dry_run:
                # job.json last: an interrupted cleanup leaves a job that `list` still shows
                for done, key in enumerate(sorted(keys, key=lambda k: k == naming.JOB_META)):
                    try:
                        job.storage.delete(key)
                    except (OSError, StorageError) as error:
                        raise StorageError(
                            "cannot delete %s/%s (%s): %d of %d blobs of job %s were deleted. Make the storage "
                            "writable for this user (or run as its owner) and run cleanup again"
                            % (job.url, key, getattr(error, "strerror", None) or error, done, len(keys), job.id)
                        ) from None
                _prune_empty_directories(job.url)
            print("%s %d blobs of job %s (%s)" % (verb, len(keys), job.id, job.url), file=out)
        else:
            print("%s %d pods of job %s; its blobs are kept (add --blobs to delete them too)"
                  % (verb, len(pods), job.id), file=out)
    if dry_run:
        print("dry run: nothing was deleted; add --yes to delete", file=out)
    return 0


def _may_be_running(job):
    """Why a master may run the job ("" when its lease is signed and says it is free).

    lease.json is in the bucket: a lease that says "released" (or old activity times, for
    --older-than) counts only when it is signed with the job's key, which must be on this machine.
    """
    holder, _ = lease.read_lease(job.storage)
    if holder is None:
        return ""
    if not lease.lapsed(holder):
        return "is running: its lease is %s" % lease.describe(holder)
    try:
        key = KeyRing.from_settings(load_settings()).load(job.url)
    except KubefaceError:
        key = None
    if not lease.verified(holder, key):
        return ("may be running: its lease says it is free, but it is not signed by this job's key (forged in "
                "storage, written by an earlier release, or the key is not on this machine)")
    return ""


def _prune_empty_directories(url):
    """Remove the job's empty directories bottom up, through directory descriptors opened without following
    links: a directory swapped for a link is never entered, and nothing outside the job is removed."""
    if "://" in url or os.path.islink(url):
        return  # buckets have no directories; links are never followed
    parent, name = os.path.split(url.rstrip("/"))
    try:
        parent_fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        _prune_in(parent_fd, name)
    finally:
        os.close(parent_fd)


def _prune_in(parent_fd, name):
    try:
        fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent_fd)
    except OSError:
        return  # gone, or a link (never followed)
    try:
        with os.scandir(fd) as entries:
            children = [e.name for e in entries if e.is_dir(follow_symlinks=False)]
        for child in children:
            _prune_in(fd, child)
    finally:
        os.close(fd)
    try:
        os.rmdir(name, dir_fd=parent_fd)  # rmdir never follows a link: a link swapped in here is not removed
    except OSError:
        pass


# -- entry point ---------------------------------------------------------------------------------

def _backend_flags(cmd):
    """Flags the backends' tools read (where a cluster is), on the commands that use those tools."""
    for tools in all_backend_tools():
        tools.add_arguments(cmd)


def parser():
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--storage-root", help="where jobs live (default: [kubeface] storage_root in luigi.cfg)")
    top = argparse.ArgumentParser(prog="kubeface", description=__doc__.split("\n")[0],
                                  formatter_class=argparse.RawDescriptionHelpFormatter,
                                  epilog=__doc__.split("\n", 2)[2])
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    cmd = commands.add_parser("list", parents=[common], help="jobs under the storage root")
    cmd.set_defaults(run=cmd_list)
    cmd = commands.add_parser("status", parents=[common], help="counts, failed and slowest elements of a job")
    cmd.add_argument("job")
    cmd.add_argument("--limit", type=int, default=10, help="elements shown per list (default 10)")
    cmd.add_argument("--max-reads", type=int, default=5000,
                     help="attempt records read at most (those of unfinished elements first; default 5000)")
    cmd.set_defaults(run=cmd_status)
    cmd = commands.add_parser("results", parents=[common], help="one row per element: parameters and result values")
    cmd.add_argument("job")
    cmd.add_argument("--sort", metavar="NAME", help="the result value to rank by, highest first (default: the map "
                     "task's result_metric, else the first value)")
    cmd.add_argument("--ascending", action="store_true", help="lowest first")
    cmd.add_argument("--top", type=int, default=0, metavar="N", help="only the first N rows")
    cmd.add_argument("--format", choices=("table", "csv", "json"), default="table")
    cmd.add_argument("--max-reads", type=int, default=10 ** 9, help=argparse.SUPPRESS)
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
            load_settings()  # storages are opened with luigi.cfg's options (s3_endpoint_url ...), as pipelines do
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
