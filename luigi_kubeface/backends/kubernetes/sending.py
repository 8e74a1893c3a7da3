"""Requests sent side by side: a round's pod creates (or deletes) go out together, so the engine waits one
round trip per round, not one per pod (one at a time, a master could not keep 200 pods of a few seconds busy)."""

from concurrent.futures import ThreadPoolExecutor

SIDE_BY_SIDE = 8  # requests at once; the API client's connection pool holds 5 per core (10 on 2 cores)
ROUND = 50  # requests per round at most: a round's answers are read before the next round's are sent


class Sender:
    """Runs calls side by side and hands back each one's error in order; counts its rounds and requests."""

    def __init__(self, workers=SIDE_BY_SIDE):
        self.workers = workers
        self.rounds = 0
        self.requests = 0
        self._pool = None

    def send(self, calls):
        """Each call's error (None when it succeeded), in the calls' order."""
        calls = list(calls)
        if not calls:
            return []
        self.rounds += 1
        self.requests += len(calls)
        if len(calls) == 1:
            return [_error_of(calls[0])]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="kubeface-send")
        return list(self._pool.map(_error_of, calls))

    def close(self):
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


def _error_of(call):
    try:
        call()
    except Exception as error:  # noqa: BLE001 - the caller sorts each error as it did one request at a time
        return error
    return None
