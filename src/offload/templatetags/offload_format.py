"""Template filters for showing Offload's numbers to people. Load them in a template::

    {% load offload_format %}
    {{ row.oldest_wait_s|duration }}       {# 168.0 → "2 min 48 s" #}
    {{ wait.p95_ms|duration:"ms" }}        {# 850.2 → "850 ms", 4200 → "4.2 s" #}
"""

from django import template

register = template.Library()


def _trim(number):
    """One decimal, without a trailing ".0": 4.2 → "4.2", 4.0 → "4"."""
    return f"{number:.1f}".removesuffix(".0")


def format_duration(seconds):
    """A duration in the largest unit that keeps it short: "3.9 ms", "850 ms", "4.2 s",
    "2 min 48 s", "1 h 3 min", "2 d 5 h". Negative durations (clock skew) show as 0."""
    seconds = max(float(seconds), 0.0)
    ms = seconds * 1000
    if round(ms, 1) < 10:
        return f"{_trim(ms)} ms"
    if round(ms) < 1000:
        return f"{round(ms)} ms"
    if round(seconds, 1) < 60:
        return f"{_trim(seconds)} s"
    if round(seconds) < 3600:
        minutes, rest = divmod(round(seconds), 60)
        return f"{minutes} min {rest} s" if rest else f"{minutes} min"
    if round(seconds / 60) < 24 * 60:
        hours, minutes = divmod(round(seconds / 60), 60)
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(round(seconds / 3600), 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


@register.filter
def duration(value, unit="s"):
    """``format_duration`` of ``value`` in seconds, or in milliseconds with ``"ms"``;
    "–" for None or an empty value."""
    if value is None or value == "":
        return "–"
    if unit not in ("s", "ms"):
        raise template.TemplateSyntaxError(f'duration:{unit!r}: use duration:"s" (the default) or duration:"ms"')
    return format_duration(float(value) / 1000 if unit == "ms" else value)


def format_percent(fraction):
    """A fraction as a percentage with up to three significant digits: 0.0312 → "3.12 %",
    1 → "100 %", 0 → "0 %"."""
    return f"{float(fraction) * 100:.3g} %"


@register.filter
def percent(value):
    """``format_percent`` of ``value``; "–" for None or an empty value."""
    if value is None or value == "":
        return "–"
    return format_percent(value)
