"""An element that ran out of memory runs again with more ([kubeface] oom_memory_factor, max_memory_limit).

Model training often needs more memory for some grid points than for others: only the element that was
OOMKilled grows, each OOM multiplying its pod's memory request and limit by oom_memory_factor, up to
max_memory_limit. An OOM at the ceiling fails the element, as every OOM does without the factor.
"""

from .api_errors import _quantity


def memory_of(settings, out_of_memory):
    """(request, limit) for an element's next pod after out_of_memory OOMs, as Kubernetes quantities."""
    request, limit = settings.memory_request, settings.memory_limit or settings.memory_request
    if not (out_of_memory and settings.oom_memory_factor > 1):
        return request, limit
    scale = settings.oom_memory_factor**out_of_memory
    ceiling = _bytes(settings.max_memory_limit)
    grown_limit = min(_bytes(limit) * scale, ceiling)
    grown_request = min(_bytes(request) * scale, grown_limit) if request else ""
    return (_quantity_text(grown_request) if request else ""), _quantity_text(grown_limit)


def can_grow(settings, limit):
    """Whether a pod OOMKilled at limit (its quantity) gets more memory next time."""
    return (
        settings.oom_memory_factor > 1
        and bool(settings.max_memory_limit)
        and _bytes(limit) < _bytes(settings.max_memory_limit)
    )


def next_limit(settings, limit):
    return _quantity_text(min(_bytes(limit) * settings.oom_memory_factor, _bytes(settings.max_memory_limit)))


def _bytes(text):
    value = _quantity(str(text)) if text else None
    if value is None:
        raise ValueError("not a memory quantity: %r" % (text,))
    return value


def _quantity_text(value):
    """Bytes as the largest binary unit that holds them whole (what kubectl shows), else plain bytes."""
    value = int(value)
    for unit, size in (("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10)):
        if value % size == 0:
            return "%d%s" % (value // size, unit)
    return str(value)
