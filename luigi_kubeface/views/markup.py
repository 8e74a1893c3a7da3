"""Text into the readers' HTML (the status page and its charts), escaped the one way both need: the bucket's
text (labels, errors, tracebacks) is unsigned, so every value goes into an element or attribute escaped."""

import html


def escape(value):
    """value as text safe inside an HTML element or a quoted attribute."""
    return html.escape(str(value), quote=True)
