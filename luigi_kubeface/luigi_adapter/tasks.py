"""KubefaceMapTask and the two tasks it fans out into, so Luigi (and luigid) see the elements.

    TrainModels (the map task)  requires  KubefaceJob;  its run() then yields  KubefaceElement x N

KubefaceJob runs the engine over every unfinished element at once (bounded concurrency, retries,
failure budget) and shows live counts in luigid. Then the map task hands Luigi its elements as
dynamic requirements: each one whose result blob is there is reported DONE without being run, and
each one without a result runs and fails with its remote traceback. Elements are never pending in
Luigi while the job runs, because Luigi's scheduler walks every pending task on every request for
work: one pending task per element costs time quadratic in the number of elements. Above
[kubeface] luigid_elements, only elements without a result are listed (telling luigid of a task
is one HTTP request). A rerun skips elements whose result exists, from one listing of the results.
"""

import logging

import luigi
from luigi.task import DynamicRequirements

from ..bucket import layout as naming
from ..master.dispatch import dispatch
from ..errors import ConfigurationError, ElementFailedError, KubefaceError
from ..job.definition import Job, elements_from_grid
from ..bucket.signing import KeyRing
from ..bucket.records import Outcome
from ..master.signals import die_with_parent
from .config import load_settings
from .job_ids import default_job_id, task_name
from .targets import AwaitingInputs, CollectedResults, ResultIndex, ResultTarget

log = logging.getLogger(__name__)

# One id per master process (forked Luigi workers share it): marks which dispatches ran "now".
RUN_ID = naming.new_run_id()


# What luigi-kubeface defines for every map task, and what to do instead of overriding it.
_OURS = {
    "output": "its output is its elements' results in the bucket (downstream: self.input().load(), "
    ".records()). Remove output(); to write a file of the results, add a downstream task "
    "that requires this one and writes it in its run()",
    "run": "its run() runs the job. Remove run(): compute one element in run_element(**params), and "
    "work on all results in a downstream task that requires this one",
}


class KubefaceMapTask(luigi.Task):
    """Subclass it: `grid()` lists the elements (it may read self.input(): it is asked only once the
    requirements are complete), `run_element(**params)` computes one, remotely. output() and run()
    are the map task's own: a subclass that defines them is refused.

    Optional: `shared_inputs()` (large data uploaded once and passed to every element as keyword
    arguments), `kubeface_overrides()` (per-task settings), `job_id()` (the storage prefix; by
    default the module and task id, so other tasks or parameters never share results),
    `code_version()` (a version pinned by hand: results of another version are recomputed, and
    edits that keep it are not; None: a digest of run_element and the code shipped with it).
    """

    def __init_subclass__(cls, **kwargs):
        """Refuse, when the class is defined, what would break the map task later (and unclearly)."""
        super().__init_subclass__(**kwargs)
        for name, why in _OURS.items():
            if name in cls.__dict__:
                raise ConfigurationError(
                    "%s.%s defines %s(), which a KubefaceMapTask must not: %s"
                    % (cls.__module__, cls.__qualname__, name, why)
                )

    def grid(self):
        raise NotImplementedError("%s must define grid(): a list of dicts, one per element" % type(self).__name__)

    def run_element(self, **params):
        raise NotImplementedError("%s must define run_element(**params)" % type(self).__name__)

    def shared_inputs(self):
        return {}

    def kubeface_overrides(self):
        return {}

    def job_id(self):
        """The storage prefix: the task's module and task id (a job of an older master's id is kept, see job_ids)."""
        if "_kubeface_job_id" not in self.__dict__:
            settings = self.kubeface_settings()
            self._kubeface_job_id = default_job_id(self, settings.storage_root, settings.storage_retry_deadline)
        return self._kubeface_job_id

    def code_version(self):
        return None

    # -- what Luigi calls -------------------------------------------------------------------

    def _requires(self):
        return super()._requires() + [self._dispatch_task()]

    def output(self):
        if not self.inputs_ready():
            return AwaitingInputs(self)  # missing, without asking grid(): it may read self.input()
        return CollectedResults(self.kubeface_job(), [e.key for e in self.kubeface_job().elements])

    def incomplete_inputs(self):
        """The requirements (of requires(), the user's) whose outputs are not all there."""
        return [t for t in luigi.task.flatten(self.requires()) if not t.complete()]

    def inputs_ready(self):
        """Whether every requirement is complete, so grid() may read self.input(). A "yes" is kept: outputs
        are not removed while Luigi runs; a "no" is asked again, as the upstream may have run since."""
        if not self.__dict__.get("_kubeface_inputs_ready"):
            self._kubeface_inputs_ready = not self.incomplete_inputs()
        return self._kubeface_inputs_ready

    def run(self):
        job = self.kubeface_job()
        if not job.elements:
            log.info("%s: the grid is empty: no results, nothing stored", self)
            return
        if not job.store.elements_shown(RUN_ID):
            # Once per run: Luigi adds the elements (all of a small job, those without a result of a
            # large one): DONE if the result exists, else the element runs and fails with its
            # traceback, so luigid lists each one. Then Luigi runs this task again.
            job.store.mark_elements_shown(RUN_ID)
            shown = self._elements_for_luigid()
            if shown:
                yield DynamicRequirements([self._element_task(e) for e in shown], lambda complete: False)
        if not self.output().exists():
            raise KubefaceError("results of job %s vanished while the job ran (deleted?): rerun" % job.url)
        log.info("%s: all %d element results are in %s", self, len(job.elements), job.url)

    # -- plumbing ---------------------------------------------------------------------------

    def kubeface_settings(self):
        if "_kubeface_settings" not in self.__dict__:
            self._kubeface_settings = load_settings(self.kubeface_overrides())
        return self._kubeface_settings

    def kubeface_job(self):
        """The job behind this task (grid validated, nothing uploaded), built once per instance."""
        if "_kubeface_job" not in self.__dict__:
            if not self.inputs_ready():  # a grid read now could be a placeholder: never build (nor run) it
                raise KubefaceError(
                    "%s: grid() is asked only once its requirements are complete, and %s are not: "
                    "let Luigi run them first (require this task, or yield it from a run())"
                    % (self, ", ".join(map(str, self.incomplete_inputs())))
                )
            settings = self.kubeface_settings()
            self._kubeface_job = Job(
                self.job_id(),
                settings.storage_root,
                self.run_element,
                elements_from_grid(self.grid()),
                retry_deadline=settings.storage_retry_deadline,
                keys=KeyRing.from_settings(settings),
                settings=settings,
                pinned_version=self.code_version(),
            )
            _MAP_TASKS[self._kubeface_job.id] = self
        return self._kubeface_job

    def _elements_for_luigid(self):
        """Every element of a small job; of a large one, only those without a result (capped)."""
        job, limit = self.kubeface_job(), self.kubeface_settings().luigid_elements
        if len(job.elements) <= limit:
            return job.elements
        finished = ResultIndex.finished(job, max_age=0)
        return [e for e in job.elements if e.key not in finished][:limit]

    def _dispatch_task(self):
        """Named by the job id alone: known before the requirements ran, unlike the grid."""
        _MAP_TASKS[self.job_id()] = self
        task = KubefaceJob(job=self.job_id(), run_id=RUN_ID)
        task._map_task = self
        return task

    def _element_task(self, element):
        task = KubefaceElement(job=self.kubeface_job().id, element=element.key, params=element.label)
        task._map_task = self
        return task

    def __getstate__(self):
        """The task is pickled with run_element for the runner: leave the master's state behind."""
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_kubeface_")}


def _share_luigi_logging():
    """Show our progress lines where Luigi shows its own, unless the user configured logging."""
    ours = logging.getLogger("luigi_kubeface")
    if ours.handlers or logging.getLogger().handlers:
        return
    luigi_logger = logging.getLogger("luigi-interface")
    for handler in luigi_logger.handlers:
        ours.addHandler(handler)
    ours.setLevel(luigi_logger.getEffectiveLevel())


# Job id -> its map task in this master, for element tasks that Luigi re-creates from their
# parameters (a yielded requirement crosses from a forked worker process as a name and parameters).
_MAP_TASKS = {}


class _JobPart(luigi.Task):
    """Shared plumbing of the tasks a map task fans out into (never scheduled on their own)."""

    _map_task = None

    @classmethod
    def get_params(cls):
        """Luigi walks dir(cls) on each call, several times per task: cache it, the class never changes."""
        if "_params_cached" not in cls.__dict__:
            cls._params_cached = super().get_params()
        return list(cls._params_cached)

    def _map(self):
        if self._map_task is None:
            self._map_task = _MAP_TASKS.get(self.job)
        if self._map_task is None:
            raise ConfigurationError(
                "%s is created by a KubefaceMapTask and cannot be run on its own: run the map task" % self
            )
        return self._map_task


class KubefaceJob(_JobPart):
    """Runs the engine over every unfinished element of one map task, with live counts in luigid.

    Its identity includes the master's run id: each `luigi` invocation dispatches anew, and
    luigid keeps one entry per dispatch instead of a DONE that would hide missing results.
    """

    job = luigi.Parameter(description="the job id: the map task's storage prefix")
    run_id = luigi.Parameter(description="the master run that dispatches the job")

    def requires(self):
        return self._map().requires()  # the map task's own upstream tasks, before any element runs

    def complete(self):
        if not self._map().inputs_ready():
            return False  # runs after the map task's requirements, which its grid may read
        if not self.__dict__.get("_dispatched"):
            job = self._map().kubeface_job()
            finished = ResultIndex.finished(job, max_age=2.0)
            self._dispatched = (
                all(e.key in finished for e in job.elements) or job.store.run_summary(self.run_id) is not None
            )
        return self._dispatched

    def run(self):
        _share_luigi_logging()
        task = self._map()
        settings = task.kubeface_settings()
        job = task.kubeface_job()
        if not job.elements:  # a map over nothing, as Client.map([]): no job in storage
            self._dispatched = True
            return
        job.shared = task.shared_inputs()
        try:
            report = dispatch(
                job,
                settings,
                on_progress=self._show_progress,
                run_id=self.run_id,
                on_page=self.set_tracking_url,
                details={"task": task_name(task)},
                stop_when=die_with_parent(),
            )  # a forked worker dies with its luigi
        finally:
            ResultIndex.forget(job)
        progress = report.progress
        self._dispatched = True
        if progress.reused == progress.total:
            log.info("job %s: all %d elements already had results; nothing ran", job.id, progress.total)
        if report.stopped:
            self.set_status_message("stopped early: %s\n%s" % (report.stopped, progress.describe()))

    def _show_progress(self, progress):
        self.set_status_message(progress.describe())
        self.set_progress_percentage(round(100.0 * progress.done / max(progress.total, 1), 1))


class KubefaceElement(_JobPart):
    """One element: done when its result blob exists; fails with the remote traceback otherwise."""

    job = luigi.Parameter(description="the job id")
    element = luigi.Parameter(description="the element's key: a digest of its parameters")
    params = luigi.Parameter(description="the element's parameters, readable")

    # No requires(): elements are dynamic requirements of the map task once its job has run, and
    # re-adding the job task here would make luigid forget the job's tracking URL.

    def output(self):
        return ResultTarget(self._map().kubeface_job(), self.element)

    def run(self):
        job = self._map().kubeface_job()
        if self.element in ResultIndex.finished(job, max_age=float("inf")) or job.store.has_result(self.element):
            return  # a cached "missing" may predate the job's run (in another process): ask storage
        attempts = job.store.attempts(self.element)
        record = job.store.attempt_record(self.element, attempts[-1]) if attempts else None
        if record is None or record.outcome is Outcome.CANCELLED:
            summary = job.store.run_summary(RUN_ID)
            reason = (summary.stopped if summary else "") or "the job ended before this element ran"
            raise KubefaceError(
                "element %s was not run: the job stopped early (%s). Fix the failures shown on the failed "
                "elements and rerun: finished results are kept" % (self.params, reason)
            )
        if record.outcome is Outcome.SUCCESS:
            raise KubefaceError(
                "element %s: its last attempt (%s) reported success but its result is not in %s "
                "(deleted?): rerun to compute it again" % (self.params, attempts[-1], job.url)
            )
        raise ElementFailedError(
            self.params, record.get("error_type", "Error"), record.get("message", ""), record.get("traceback", "")
        )
