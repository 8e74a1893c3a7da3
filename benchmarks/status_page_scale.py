"""How long a status page refresh takes for a large job in local storage; prints figures, asserts nothing.

    python benchmarks/status_page_scale.py [ELEMENTS]

Builds a synthetic job (elements.json, one result and one attempt record per finished element,
a few failures) without running anything, then times the first and later refreshes and a render.
Twice: as jobs were before results were summarised (labels only, no summaries: today's page, no
Results section drawn), and with three parameters per element (a log-spread learning rate, a depth,
an optimizer) and a summary of two numbers per result (the Results section: table, slice charts,
parallel coordinates). With Chromium installed, it also times how long each final page takes to
load and lay out in headless Chromium.
"""

import json
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from luigi_kubeface.bucket import signing, layout as naming, seal as summary_seal  # noqa: E402
from luigi_kubeface.job import identity
from luigi_kubeface.bucket.job_store import JobStore  # noqa: E402
from luigi_kubeface.views.job_state import JobState  # noqa: E402
from luigi_kubeface.views.status_page import render  # noqa: E402


def grid_params(i):
    """A model-selection grid: learning rate spread over 5 decades, 12 depths, 3 optimizers."""
    rng = random.Random(i)
    return {
        "learning_rate": 10 ** rng.uniform(-5, 0),
        "depth": 1 + i % 12,
        "optimizer": ("adam", "sgd", "rmsprop")[i % 3],
    }


def grid_summary(params, i):
    rng = random.Random(-i - 1)
    accuracy = 0.95 - 0.02 * (math.log10(params["learning_rate"]) + 2.5) ** 2 / 6 - 0.004 * abs(params["depth"] - 7)
    return {
        "accuracy": round(accuracy - 0.01 * (params["optimizer"] == "sgd") + rng.gauss(0, 0.01), 5),
        "loss": round(rng.uniform(0.1, 0.5), 5),
    }


def build(root, count, results=False):
    """A finished job of count elements; results: with parameters in elements.json and summaries in records."""
    job = JobStore.at(root, "scale", keys=signing.KeyRing(os.path.join(root, "scale-keys")))
    job_key = job.create_key()  # the runner signs its summaries: an unsigned one would be refused
    params = [grid_params(i) if results else {"i": i} for i in range(count)]
    keys = [identity.element_key((), p) for p in params]
    labels = [", ".join("%s=%r" % kv for kv in p.items()) for p in params]
    job.storage.write(
        naming.JOB_META,
        json.dumps(
            {"job": "scale", "elements": count, "updated": time.time(), "result_metric": "accuracy" if results else ""}
        ).encode(),
    )
    index = {"keys": keys, "labels": labels, **({"params": params} if results else {})}
    job.storage.write(naming.ELEMENTS, json.dumps(index).encode())
    start = time.time() - 3600
    for i, key in enumerate(keys):
        attempt = "001-%d-%06x" % (int(start), i)
        began = start + random.uniform(0, 3000)
        failed = i % 500 == 7
        record = {
            "element": key,
            "attempt": attempt,
            "outcome": "error" if failed else "success",
            "host": "node-%d" % (i % 40),
            "started": began,
            "finished": began + random.uniform(5, 60),
            "error_type": "ValueError" if failed else "",
            "message": "bad" if failed else "",
            "traceback": "",
        }
        record["duration"] = record["finished"] - record["started"]
        if results and not failed:
            record.update(result_type="dict", result_size=2, summary=grid_summary(params[i], i))
            summary_seal.seal(record, signing.attempt_key(job_key, "scale", key, "", attempt), "scale", key, attempt)
        path = os.path.join(root, "scale", naming.attempt_record_key(key, attempt))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            json.dump(record, f)
        if not failed:
            path = os.path.join(root, "scale", naming.result_key(key))
            os.makedirs(os.path.dirname(path), exist_ok=True)
            open(path, "wb").close()
    return job


def chromium_seconds(page, workdir):
    """Seconds headless Chromium takes to load and lay out the page (None without Chromium)."""
    binary = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
    if not binary:
        return None
    began = time.perf_counter()
    subprocess.run(
        [
            binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--user-data-dir=" + os.path.join(workdir, "profile"),
            "--dump-dom",
            "file://" + page,
        ],
        capture_output=True,
        timeout=600,
        check=True,
    )
    return time.perf_counter() - began


def measure(count, results):
    with tempfile.TemporaryDirectory(dir="/dev/shm" if os.path.isdir("/dev/shm") else None) as root:
        began = time.perf_counter()
        job = build(root, count, results)
        print(
            "%s: built a job of %d elements in %.1fs"
            % ("with results" if results else "today's page", count, time.perf_counter() - began)
        )
        state = JobState(job, max_reads=2000)
        for round_ in range(4):
            began = time.perf_counter()
            state.refresh()
            refreshed = time.perf_counter() - began
            began = time.perf_counter()
            page = render(state)
            print(
                "  refresh %d: %.2fs (%d records cached, %d unread); render %.2fs, page %d KB"
                % (
                    round_ + 1,
                    refreshed,
                    len(state.records),
                    state.unread,
                    time.perf_counter() - began,
                    len(page) >> 10,
                )
            )
        state.refresh(max_reads=count * 2)  # every record, as a long job's page ends up
        began = time.perf_counter()
        page = render(state)
        rendered = time.perf_counter() - began
        path = os.path.join(root, "status.html")
        with open(path, "w") as f:
            f.write(page)
        loaded = chromium_seconds(path, root)
        print(
            "  every record read: render %.2fs, page %d KB%s"
            % (rendered, len(page) >> 10, ", Chromium load and layout %.2fs" % loaded if loaded is not None else "")
        )


def main():
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 50000
    measure(count, results=False)
    measure(count, results=True)


if __name__ == "__main__":
    main()
