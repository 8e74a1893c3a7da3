"""`kubeface reproduce`: run one element here, in this Python (and the `docker run` line)."""

import os
import shlex
import sys
import tempfile
import traceback

from ..bucket import blobs as serialization
from ..bucket import layout as naming
from ..bucket.signing import KeyRing
from ..errors import BlobNotFoundError, ConfigurationError, KubefaceError
from ..runner.call import UnusableCall, load_call, module_hint, working_folder
from ..storage import storage_class
from .common import configured, job_state


def docker_command(job_url, storage_root, element, attempt, image, env_file):
    """The `docker run` line that runs one attempt as a pod would: every part quoted, the key only in a file."""
    parts = ["docker", "run", "--rm"]
    if not storage_class(job_url).remote:
        parts += ["-v", "%s:%s" % (storage_root, storage_root)]
    parts += [
        "--env-file",
        env_file,
        image or "IMAGE",
        "python",
        "-m",
        "luigi_kubeface.runner",
        job_url,
        element,
        attempt,
    ]
    return " ".join(shlex.quote(p) for p in parts)


def cmd_reproduce(args, out):
    state = job_state(args)
    element = state.find(args.element)
    if not naming.is_element_key(element.key):  # elements.json is unsigned: never pass its text to a shell
        raise KubefaceError(
            "element %r of job %s is not an element key (24 lowercase hex characters): the job's "
            "elements.json was altered; rerun the job to write it again" % (element.key, state.job.id)
        )
    job = state.job
    settings = configured()
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
                raise KubefaceError(
                    "element %s (%s) has no input in storage: inputs are uploaded when an element's "
                    "first attempt launches, so it has not run yet. Run the job first" % (element.key, element.label)
                ) from None
            if isinstance(unusable.error, KubefaceError):
                raise unusable.error from None
            raise ConfigurationError(
                "element %s cannot be loaded here: %s: %s%s. Run reproduce in an environment with the job's "
                "packages (as its image has them)"
                % (element.key, type(unusable.error).__name__, unusable.error, module_hint(unusable.error))
            ) from None
        print(
            "# running element %s (%s) in this Python; nothing is written to storage" % (element.key, element.label),
            file=out,
        )
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
