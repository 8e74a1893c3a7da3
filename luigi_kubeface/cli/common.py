"""What the commands share: the job a command names, its state, durations, the backend's tools."""

import os
import re
import sys
import time

from ..backends import backend_tools
from ..bucket.catalog import list_jobs, open_job
from ..bucket.signing import KeyRing
from ..errors import ConfigurationError
from ..luigi_adapter.config import load_settings  # luigi.cfg's [kubeface] section, as pipelines read it
from ..views.job_state import JobState

DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def job_tools(job):
    """(the tools of the backend the job ran on, its job.json) or (None, None): the local backend has none."""
    meta = job.meta()
    tools = backend_tools(meta.get("backend"))
    return (tools, meta) if tools is not None else (None, None)


def configured():
    """The [kubeface] settings of luigi.cfg (and LUIGI_CONFIG_PATH), read as pipelines read them: the one place
    the commands read their configuration."""
    return load_settings()


def default_storage_root():
    """[kubeface] storage_root from luigi.cfg (and LUIGI_CONFIG_PATH), the same one pipelines use."""
    return configured().storage_root


def parse_duration(text):
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text or "")
    if not match:
        raise ConfigurationError("%r is not a duration: write a number with a unit, e.g. 90s, 30m, 12h, 7d, 2w" % text)
    return float(match.group(1)) * DURATION_UNITS[match.group(2) or "s"]


def job_state(args):
    store = open_job(args.job, args.storage_root or default_storage_root)
    store.keys = KeyRing.from_settings(configured())  # key_dir, signing_key_file: as the master had them
    return JobState(store, max_reads=args.max_reads if hasattr(args, "max_reads") else 2000).refresh()


def root_of(args):
    root = args.storage_root or default_storage_root()
    return root if "://" in root else os.path.abspath(os.path.expanduser(root))


def jobs_under(root):
    """(job id, JobMeta, last activity) of every job directly under root; links and malformed jobs are skipped."""
    return list_jobs(root, on_skip=warn)


def warn(text):
    print("kubeface: warning: %s" % text, file=sys.stderr)


def when(seconds):
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(seconds)) if seconds else "?"
