"""How long a status page refresh takes for a large job in local storage; prints figures, asserts nothing.

    python benchmarks/status_page_scale.py [ELEMENTS]

Builds a synthetic job (elements.json, one result and one attempt record per finished element,
a few failures) without running anything, then times the first and later refreshes and a render.
"""

import json
import os
import random
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from luigi_kubeface import naming  # noqa: E402
from luigi_kubeface.job import Job  # noqa: E402
from luigi_kubeface.job_state import JobState  # noqa: E402
from luigi_kubeface.status_page import render  # noqa: E402


def build(root, count):
    job = Job("scale", root)
    keys = [naming.element_key((), {"i": i}) for i in range(count)]
    job.storage.write(naming.JOB_META, json.dumps({"job": "scale", "elements": count, "updated": time.time()}).encode())
    job.storage.write(naming.ELEMENTS, json.dumps({"keys": keys, "labels": ["i=%d" % i for i in range(count)]}).encode())
    start = time.time() - 3600
    for i, key in enumerate(keys):
        attempt = "001-%d-%06x" % (int(start), i)
        began = start + random.uniform(0, 3000)
        failed = i % 500 == 7
        record = {"element": key, "attempt": attempt, "outcome": "error" if failed else "success", "host": "node-%d" % (i % 40),
                  "started": began, "finished": began + random.uniform(5, 60), "error_type": "ValueError" if failed else "",
                  "message": "bad" if failed else "", "traceback": ""}
        record["duration"] = record["finished"] - record["started"]
        path = os.path.join(root, "scale", naming.attempt_record_key(key, attempt))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            json.dump(record, f)
        if not failed:
            path = os.path.join(root, "scale", naming.result_key(key))
            os.makedirs(os.path.dirname(path), exist_ok=True)
            open(path, "wb").close()
    return job


def main():
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 50000
    with tempfile.TemporaryDirectory() as root:
        began = time.perf_counter()
        job = build(root, count)
        print("built a job of %d elements in %.1fs" % (count, time.perf_counter() - began))
        state = JobState(job, max_reads=2000)
        for round_ in range(4):
            began = time.perf_counter()
            state.refresh()
            refreshed = time.perf_counter() - began
            began = time.perf_counter()
            page = render(state)
            print("refresh %d: %.2fs (%d records cached, %d unread); render %.2fs, page %d KB"
                  % (round_ + 1, refreshed, len(state.records), state.unread, time.perf_counter() - began, len(page) >> 10))


if __name__ == "__main__":
    main()
