"""A map task's default job id: its module and its Luigi task id, so that classes of one name in two
projects sharing a storage root never share a job (and never each other's results).

Masters before this named a job by the task id alone (`TrainModels__99914b932b`). Such a job is
still used by the task that wrote it: while no job exists under the new id, an old-id job whose
job.json names this task (its `task`, or from older masters its function and a shipped module of
this name) is adopted under its old id, keys and results included. Anything else starts afresh.
"""

import os
import sys

from ..bucket import layout as naming
from ..bucket.job_store import JobStore

_MAX_ID = 200


def task_name(task):
    """`module.Class` of a task; a script's module (`__main__`) is named after its file."""
    cls = type(task)
    module = cls.__module__
    if module == "__main__":
        path = getattr(sys.modules.get("__main__"), "__file__", None)
        module = os.path.splitext(os.path.basename(path))[0] if path else module
    return "%s.%s" % (module, cls.__qualname__)


def qualified_job_id(task):
    """The task's module, then its task id (kept whole: the module part is cut if the id is too long)."""
    task_part = naming.job_id_from_task_id(task.task_id)
    module = task_name(task).rsplit(".", 1)[0]
    room = _MAX_ID - len(task_part) - 1
    if room < 1:
        return task_part
    return naming.job_id_from_task_id(module[:room] + "." + task_part)


def _written_by(meta, task):
    """Whether an old-id job's job.json says this task wrote it (unsure: no)."""
    if "task" in meta:
        return meta["task"] == task_name(task)
    module = task_name(task).rsplit(".", 1)[0]
    code = meta.get("code") if isinstance(meta.get("code"), dict) else {}
    modules = code.get("modules") if isinstance(code.get("modules"), list) else []
    return meta.get("function") == task.run_element.__qualname__ and module in modules


def default_job_id(task, storage_root, retry_deadline=30.0):
    """The new id, unless only an old-id job of this very task exists: then that one, to reuse its results."""
    new, old = qualified_job_id(task), naming.job_id_from_task_id(task.task_id)
    if new == old:
        return new
    if JobStore.at(storage_root, new, retry_deadline=retry_deadline).storage.exists(naming.JOB_META):
        return new
    legacy = JobStore.at(storage_root, old, retry_deadline=retry_deadline)
    return old if _written_by(legacy.meta(), task) else new
