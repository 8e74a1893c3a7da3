"""Text from the unsigned bucket (labels, error messages, tracebacks, logs), made harmless for a terminal.

Anyone who may write the bucket may forge an attempt record whose message carries escape sequences
(OSC 52 writes the clipboard, OSC 0 the window title) or bidirectional overrides. The `kubeface`
command and the master (ElementFailedError, the engine's failures, which Luigi prints) drop them.
"""

import re

# C0 and C1 controls but tab and newline, DEL, and bidirectional overrides: what can drive a terminal.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def strip_controls(text):
    """text without the characters that can drive a terminal (an escape sequence's printable rest stays, inert)."""
    return _CONTROL.sub("", text) if isinstance(text, str) else text
