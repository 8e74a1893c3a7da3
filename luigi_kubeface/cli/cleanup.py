"""`kubeface cleanup`: delete what a job left running and, with --blobs, its blobs."""

import os
import time

from ..bucket import layout as naming
from ..bucket.catalog import open_job
from ..bucket.job_store import JobStore
from ..bucket.signing import KeyRing
from ..errors import ConfigurationError, JobRunningError, KubefaceError, StorageError
from ..master import lease
from .common import configured, default_storage_root, job_tools, jobs_under, parse_duration, root_of, warn


def cleanup_running(job, dry_run, args):
    """Delete (or, on a dry run, list) what the job left running (pods); returns their descriptions."""
    tools, meta = job_tools(job)
    if tools is None:
        return []
    return tools.cleanup(job, meta, configured(), args, dry_run)


def cmd_cleanup(args, out):
    if bool(args.job) == bool(args.older_than):
        raise ConfigurationError("cleanup takes a JOB or --older-than DURATION (e.g. 7d), not both or neither")
    jobs = _jobs_named(args, out)
    if not jobs:
        return 0
    dry_run = not args.yes
    for job in _not_running(jobs, args):
        _clean(job, args, dry_run, out)
    if dry_run:
        print("dry run: nothing was deleted; add --yes to delete", file=out)
    return 0


def _jobs_named(args, out):
    """The job named, or every job idle for --older-than (none: says so)."""
    if args.job:
        return [open_job(args.job, args.storage_root or default_storage_root)]
    age = parse_duration(args.older_than)
    root = root_of(args)
    cutoff = time.time() - age
    found = jobs_under(root)
    for job_id, meta, _ in found:
        if meta.get("unreadable"):
            warn("skipping %s/%s: its %s is not a valid JSON record" % (root.rstrip("/"), job_id, naming.JOB_META))
    jobs = [
        JobStore.at(root, job_id, retry_deadline=30.0)
        for job_id, meta, latest in found
        if latest < cutoff and not meta.get("unreadable")
    ]
    if not jobs:
        readable = sum(1 for _, meta, _ in found if not meta.get("unreadable"))
        print(
            "no job under %s has been idle for %s or longer%s: nothing to clean up"
            % (
                root,
                args.older_than,
                " (%d job%s, each active within the last %s)"
                % (readable, "" if readable == 1 else "s", args.older_than)
                if readable
                else "",
            ),
            file=out,
        )
    return jobs


def _not_running(jobs, args):
    """The jobs no master may be running (all, with --force); a named job that may run is an error."""
    kept = []
    for job in jobs:
        why = _may_be_running(job)
        if why and not args.force:
            if args.job:
                raise JobRunningError(
                    "job %s %s. Deleting its pods and Secret now would fail it; stop that master first (or wait "
                    "for it), or add --force" % (job.id, why)
                )
            warn("skipping job %s: it %s; add --force to delete it anyway" % (job.id, why))
            continue
        kept.append(job)
    return kept


def _clean(job, args, dry_run, out):
    """Delete (or list) one job's pods and, with --blobs, its blobs."""
    verb = "would delete" if dry_run else "deleted"
    pods = cleanup_running(job, dry_run, args)
    for pod in pods:
        print("%s pod %s" % (verb, pod), file=out)
    if not args.blobs:
        print(
            "%s %d pods of job %s; its blobs are kept (add --blobs to delete them too)" % (verb, len(pods), job.id),
            file=out,
        )
        return
    listed = job.storage.list("")
    keys = [k for k in listed if naming.is_job_key(k)]  # only what luigi-kubeface writes
    if len(keys) < len(listed):
        warn(
            "%d entries of job %s are not luigi-kubeface's and are kept (e.g. %s)"
            % (len(listed) - len(keys), job.id, next(k for k in listed if not naming.is_job_key(k)))
        )
    if not dry_run:
        _delete_blobs(job, keys)
    print("%s %d blobs of job %s (%s)" % (verb, len(keys), job.id, job.url), file=out)


def _delete_blobs(job, keys):
    """job.json last: an interrupted cleanup leaves a job that `list` still shows."""
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
        key = KeyRing.from_settings(configured()).load(job.url)
    except KubefaceError:
        key = None
    if not lease.verified(holder, key):
        return (
            "may be running: its lease says it is free, but it is not signed by this job's key (forged in "
            "storage, written by an earlier release, or the key is not on this machine)"
        )
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
