"""How the dashboard shows numbers: durations in a unit that fits ("2 min 48 s", not
"168000.0 ms") and a throughput chart with a time axis and a labelled count axis."""

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.template import Context, Template, TemplateSyntaxError
from django.utils import timezone

from offload.dashboard import queries
from offload.dashboard.views import throughput_chart
from offload.models import TaskRow
from offload.templatetags.offload_format import format_duration
from offload.testing import run_until_empty
from tests.testapp import tasks


@pytest.mark.parametrize("seconds, shown", [
    (0, "0 ms"), (0.0039, "3.9 ms"), (0.004, "4 ms"), (0.0123, "12 ms"), (0.8502, "850 ms"),
    (0.9994, "999 ms"), (0.9996, "1 s"), (4.2, "4.2 s"), (59.94, "59.9 s"), (59.96, "1 min"),
    (168, "2 min 48 s"), (3599.4, "59 min 59 s"), (3599.6, "1 h"), (3780, "1 h 3 min"),
    (90000, "1 d 1 h"), (-0.5, "0 ms"),
])
def test_durations_use_the_unit_that_fits(seconds, shown):
    assert format_duration(seconds) == shown


def test_the_duration_filter_takes_seconds_or_milliseconds():
    template = Template('{% load offload_format %}{{ s|duration }} · {{ ms|duration:"ms" }} · {{ none|duration }}')
    assert template.render(Context({"s": 168.0, "ms": 168000.0, "none": None})) == "2 min 48 s · 2 min 48 s · –"
    with pytest.raises(TemplateSyntaxError, match=r"""duration:'h': use duration:"s" .* or duration:"ms\""""):
        Template('{% load offload_format %}{{ 1|duration:"h" }}').render(Context())


@pytest.fixture
def staff_client(client):
    client.force_login(User.objects.create_superuser("ops", "ops@example.com", "pw"))
    return client


@pytest.mark.django_db
def test_the_dashboard_shows_long_waits_in_minutes_and_hours(staff_client):
    ran = tasks.noop.enqueue()
    TaskRow.objects.filter(pk=ran.id).update(available_at=timezone.now() - timedelta(seconds=168))
    assert run_until_empty() == 1  # it waited 2 min 48 s before it started
    waiting = tasks.noop.using(priority=80).enqueue()
    TaskRow.objects.filter(pk=waiting.id).update(available_at=timezone.now() - timedelta(seconds=3780))
    page = staff_client.get("/offload/").content.decode()
    waits = page[page.index('id="waits"'):page.index('id="servers"')]
    assert '<td>normal</td><td class="num">1</td><td class="num">2 min 48 s</td>' in waits  # the mean
    queues = page[page.index('id="queues"'):page.index('id="throughput"')]
    assert '<td class="num">1 h 3 min</td>' in queues  # the urgent band's oldest wait
    assert not re.search(r"\d{4,}(\.\d)? ms", page)


def test_the_throughput_chart_scales_to_a_round_number():
    start = timezone.now().replace(second=0, microsecond=0) - timedelta(minutes=59)
    series = [(start + timedelta(minutes=i), 5 if i == 59 else 0, 2 if i == 59 else 0) for i in range(60)]
    chart = throughput_chart(series)
    assert chart["peak"] == 7 and [t["value"] for t in chart["y_ticks"]] == [0, 4, 8]
    assert [t["ago"] for t in chart["x_ticks"]] == [59, 49, 39, 29, 19, 9, 0]
    last = chart["bars"][-1]
    assert last["ok_h"] == pytest.approx(5 / 8 * 100) and last["failed_h"] == pytest.approx(2 / 8 * 100)
    assert last["failed_y"] == pytest.approx(chart["base"] - 7 / 8 * 100)
    assert [t["value"] for t in throughput_chart([(start, 0, 0)])["y_ticks"]] == [0, 1]


@pytest.mark.django_db
def test_the_throughput_chart_has_a_time_axis_and_a_count_axis(staff_client):
    for _ in range(3):
        tasks.noop.enqueue()
    tasks.boom.enqueue()
    run_until_empty()
    series = queries.throughput()
    page = staff_client.get("/offload/").content.decode()
    svg = page[page.index('<section id="throughput">'):page.index('<section id="waits">')]
    times = re.findall(r'class="tick x-tick"[^>]*><title>[^<]*</title>(\d\d:\d\d)</text>', svg)
    assert times == [series[i][0].strftime("%H:%M") for i in (0, 10, 20, 30, 40, 50, 59)]  # TIME_ZONE is UTC
    assert "this minute" in svg and "59 min ago" in svg
    assert re.findall(r'class="tick y-tick"[^>]*>(\d+)</text>', svg) == ["0", "2", "4"]  # 4 finished
    assert "tasks / min" in svg and "time (UTC), a bar per minute" in svg
