"""The records a job keeps in its bucket prefix, defined once: what each outcome means, and the
master's own attempt records (the runner writes the rest).

The JSON layout is the bucket's: jobs written by earlier versions read unchanged.
"""

import enum


class Outcome(str, enum.Enum):
    """How an attempt ended, as its record in attempts/<element>/<attempt>.json says."""

    SUCCESS = "success"
    ERROR = "error"  # the element raised
    UNUSABLE_INPUT = "unusable_input"  # its function, code or input could not be loaded
    LOST = "lost"  # ended without reporting (the master's account)
    TIMEOUT = "timeout"  # ran over element_timeout (the master's account)
    INTERRUPTED = "interrupted"  # stopped by the infrastructure; run again, not counted as a retry
    CANCELLED = "cancelled"  # stopped by a master: a sibling won, or the master stopped
    RESULT_REFUSED = "result_refused"  # the runner said success; its result failed the master's check

    @property
    def failed(self):
        """The element's own failure (what status pages count as failed)."""
        return self in FAILED


FAILED = frozenset({Outcome.ERROR, Outcome.UNUSABLE_INPUT, Outcome.LOST, Outcome.TIMEOUT})


def outcome_of(record):
    """The record's Outcome, or None when it has none or one this version does not know."""
    try:
        return Outcome(record.get("outcome")) if record else None
    except ValueError:
        return None


def master_record(element, attempt, outcome, error_type, message, **extra):
    """An attempt record written by the master, for an attempt whose runner could not tell its end."""
    return {"element": element, "attempt": attempt, "outcome": Outcome(outcome).value, "error_type": error_type,
            "message": message, "traceback": "", **extra, "recorded_by": "master"}
