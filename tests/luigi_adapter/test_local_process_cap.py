"""One cap on element processes across the jobs of one `luigi` command (local_max_processes): two map
tasks in two forked Luigi workers, each allowed more attempts in flight than the cap, never run more
runner processes at once than it, sampled from /proc while they run."""

import glob
import os
import threading

from luigi_kubeface.backends.local_slots import Slots
from support import run_luigi, runners_of

TOY = ["--module", "pipelines.toy"]


def test_two_map_tasks_under_two_workers_never_run_more_element_processes_than_the_cap(tmp_path):
    root = str(tmp_path / "storage")
    samples, done = [], threading.Event()

    def sample():
        while not done.is_set():
            samples.append(len(runners_of(root)))
            done.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        result = run_luigi(
            TOY
            + [
                "TwoGrids",
                "--n",
                "4",
                "--seconds",
                "1.5",
                "--workers",
                "2",
                "--local-scheduler",
                "--kubeface-storage-root",
                root,
                "--kubeface-poll-interval",
                "0.1",
                "--kubeface-max-in-flight",
                "3",
                "--kubeface-local-max-processes",
                "2",
            ],
            cwd=tmp_path,
        )
    finally:
        done.set()
        sampler.join()
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert len(glob.glob(os.path.join(root, "*", "results", "*.pkl"))) == 4 + 5  # both jobs ran to the end
    assert max(samples) <= 2, "up to %d element processes ran at once, over local_max_processes = 2" % max(samples)
    assert max(samples) >= 1  # the sampler saw them run


def test_slots_are_shared_by_the_masters_of_one_command_and_freed_by_their_holder(tmp_path):
    first, second = Slots(2, pid=os.getpid(), parent=str(tmp_path)), Slots(2, pid=os.getpid(), parent=str(tmp_path))
    held = [first.take(), second.take()]
    assert None not in held and second.take() is None and first.take() is None  # two slots between them
    Slots.give_back(held.pop())
    assert first.take() is not None
    other = Slots(2, pid=os.getppid(), parent=str(tmp_path))  # another command: its own slots
    assert other.take() is not None and other.folder != first.folder
