"""`kubeface list`: the jobs under a storage root."""

from ..bucket.job_store import JobStore
from .common import jobs_under, root_of, utc_minute


def cmd_list(args, out):
    root = root_of(args)
    jobs = jobs_under(root)
    if not jobs:
        print("no jobs under %s" % root, file=out)
        return 0
    print("%-40s %9s %9s  %-16s  %s" % ("JOB", "ELEMENTS", "DONE", "LAST ACTIVE (UTC)", "FUNCTION"), file=out)
    for job_id, meta, latest in sorted(jobs, key=lambda j: -j[2]):
        done = len(JobStore.at(root, job_id, retry_deadline=30.0).finished())
        print(
            "%-40s %9s %9d  %-16s  %s"
            % (job_id, meta.get("elements", "?"), done, utc_minute(latest), meta.get("function", "?")),
            file=out,
        )
    return 0
