"""A duration as people read it (9.5s, 3m04s, 2h05m): the status page, its charts and the cli print the same text."""


def format_duration(seconds):
    if seconds is None:
        return ""
    if seconds < 60:
        return (
            ("%.1fs" % seconds).replace(".0s", "s") if seconds >= 10 or seconds == int(seconds) else "%.1fs" % seconds
        )
    if seconds < 3600:
        return "%dm%02ds" % divmod(int(seconds), 60)
    hours, rest = divmod(int(seconds), 3600)
    return "%dh%02dm" % (hours, rest // 60)
