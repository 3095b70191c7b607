"""Workflows (docs/workflows.md) with real worker processes: chains, groups, chords and
a DAG run with results passed along; a failed step stops what depends on it; the
bookkeeping commits with the completion that satisfies it."""

import os
import re

import pytest
from django.db import transaction
from django.tasks import TaskResultStatus

from offload import Workflow, chain, chord, get_workflow, group, step
from offload.exceptions import InvalidWorkflow
from offload.models import Edge, TaskRow
from offload.models import Workflow as WorkflowRow
from tests.conftest import wait_until
from tests.testapp import tasks
from tests.testapp.models import Run

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.process]


def finished(flow, timeout=60):
    wait_until(lambda: flow.refresh().is_finished, timeout=timeout,
               message=f"workflow {flow.id} finished")
    return flow.refresh()


def ledger(folder):
    """The runs a task left in ``folder`` (``<id>-<attempt>-<pid>`` files), by id."""
    runs = {}
    for name in os.listdir(folder):
        runs.setdefault(name.split("-")[0], []).append(name)
    return runs


def test_a_chain_a_chord_and_a_diamond_pass_their_results_along(burst, tmp_path):
    """A chain of 3 (each step gets the previous value), a group of 1,000 with a
    chord callback (gets the list, runs once), and a diamond DAG, in one drain."""
    line = chain(step(tasks.plus, 1), step(tasks.plus, n=10), step(tasks.plus, n=100)).enqueue()
    mark = tmp_path / "ledger"
    mark.mkdir()
    fan = chord([step(tasks.member, i) for i in range(1000)],
                step(tasks.fan_in, mark=str(mark))).enqueue("thousand")
    flow = Workflow("diamond")
    a = flow.add(step(tasks.plus, 1))
    b, c = flow.add(step(tasks.plus, n=10), after=[a]), flow.add(step(tasks.plus, n=100), after=[a])
    flow.add(step(tasks.total, 1000), after=[b, c])
    diamond = flow.enqueue()
    assert [s.status for s in line.steps] == ["READY", "BLOCKED", "BLOCKED"]
    burst()
    line, fan, diamond = line.refresh(), fan.refresh(), diamond.refresh()
    assert (line.status, line.return_value) == ("SUCCESSFUL", 112)
    assert (fan.status, fan.return_value, fan.name) == ("SUCCESSFUL", [1000, 499500], "thousand")
    assert (diamond.status, diamond.return_value) == ("SUCCESSFUL", 12 + 102 + 1000)
    [callback] = ledger(mark).values()
    assert len(callback) == 1
    # Every step is an ordinary task with an ordinary TaskResult; a step's args show
    # what it received.
    last = tasks.plus.get_result(line.steps[-1].id)
    assert (last.status, last.args, last.kwargs) == (TaskResultStatus.SUCCESSFUL, [12], {"n": 100})
    assert get_workflow(diamond.id).steps[-1].depends_on == (diamond.steps[1].id, diamond.steps[2].id)


def test_a_failed_middle_step_fails_what_depends_on_it_and_others_run_on(burst):
    flow = Workflow()
    first = flow.add(step(tasks.plus, 1))
    broken = flow.add(step(tasks.boom), after=[first])  # boom(2): raises ValueError("2")
    flow.add(chain(step(tasks.plus), step(tasks.plus)), after=[broken])
    flow.add(step(tasks.plus, n=5), after=[first])  # another branch
    result = flow.enqueue()
    burst()
    result = result.refresh()
    assert [s.status for s in result.steps] == ["SUCCESSFUL", "FAILED", "FAILED", "FAILED",
                                                "SUCCESSFUL"]
    assert result.status == "FAILED"
    for dependent in result.steps[2:4]:
        [error] = tasks.plus.get_result(dependent.id).errors
        assert error.exception_class_path == "offload.exceptions.DependencyFailed"
        assert f"step {result.steps[1].id} (tests.testapp.tasks.boom) failed" in error.traceback
    assert tasks.plus.get_result(result.steps[4].id).return_value == 7


def test_retries_of_a_step_do_not_run_finished_steps_again(burst):
    """flaky fails twice and succeeds on its third attempt: the step before it ran
    once, the one after it once."""
    result = chain(step(tasks.logged, "before"), step(tasks.flaky).without_results(),
                   step(tasks.logged, "after").without_results()).enqueue()
    burst()
    assert result.refresh().status == "SUCCESSFUL"
    assert sorted(Run.objects.values_list("key", flat=True)) == ["after", "before"]
    assert tasks.flaky.get_result(result.steps[1].id).return_value == 3


def test_a_workflow_is_enqueued_in_the_callers_transaction():
    with pytest.raises(RuntimeError), transaction.atomic():
        chord([step(tasks.plus, i) for i in range(10)], step(tasks.total)).enqueue()
        assert TaskRow.objects.count() == 11
        raise RuntimeError("the request failed")
    assert (TaskRow.objects.count(), Edge.objects.count(), WorkflowRow.objects.count()) == (0, 0, 0)


def test_cancelling_a_workflow_cancels_what_has_not_finished(start_worker):
    result = chain(step(tasks.stoppable, "k", 30.0), step(tasks.plus, 1),
                   group(step(tasks.plus, 2), step(tasks.plus, 3))).enqueue()
    worker = start_worker()
    wait_until(lambda: result.refresh().steps[0].status == "RUNNING", message="the first step runs")
    result = result.cancel(by="the test")
    result = finished(result, timeout=30)
    assert {s.status for s in result.steps} == {"FAILED"}
    for s in result.steps:
        [error] = result.get_result(s.id).errors
        assert error.exception_class_path == "offload.exceptions.Cancelled"
        assert "cancelled with its workflow by the test" in error.traceback
    worker.stop()


@pytest.mark.parametrize("build, message", [
    (lambda: chain(), "chain() needs at least one step"),
    (lambda: group(), "group() needs at least one member"),
    (lambda: chain(step(tasks.plus, 1), step(tasks.other_noop)).enqueue(),
     "a workflow's steps must share one backend; these use default, other"),
    (lambda: chain(step(tasks.plus.using(unique_key="x"), 1)).enqueue(),
     "a workflow step cannot have a unique_key"),
    (lambda: step(tasks.plain_function), "is not a task"),
    (lambda: Workflow().add(step(tasks.plus, 1), after=[Workflow().add(step(tasks.plus, 2))]),
     "give what add() of this workflow returned"),
])
def test_bad_workflows_are_refused_before_anything_is_stored(build, message):
    with pytest.raises(InvalidWorkflow, match=re.escape(message)):
        build()
    assert TaskRow.objects.count() == 0


def test_prune_removes_finished_workflows_with_their_steps_and_edges(burst):
    from datetime import timedelta

    from django.tasks import task_backends

    from offload.clock import now

    done = chord([step(tasks.plus, i) for i in range(3)], step(tasks.total)).enqueue()
    burst()
    waiting = chain(step(tasks.plus, 1), step(tasks.plus)).enqueue()  # not run: stays
    store = task_backends["default"].store
    assert store.prune(backend="default", before=now() + timedelta(days=1)) == 4
    assert WorkflowRow.objects.filter(pk=done.id).count() == 0
    assert [s.status for s in get_workflow(waiting.id).steps] == ["READY", "BLOCKED"]
    assert list(Edge.objects.values_list("child_id", flat=True)) == [int(waiting.steps[1].id)]


@pytest.mark.django_db(transaction=True, databases="__all__")  # status reads every registry
def test_the_dashboard_and_status_show_a_workflow_and_its_graph(burst, client):
    from django.contrib.auth.models import User
    from rich.console import Console

    from offload.commands.status import view

    flow = Workflow("diamond")
    a = flow.add(step(tasks.plus, 1))
    b = flow.add(group(*[step(tasks.plus, n=i) for i in range(20)]), after=[a])  # 20: one box
    flow.add(step(tasks.total), after=[b])
    result = flow.enqueue()
    broken = chain(step(tasks.boom), step(tasks.plus)).enqueue("broken")
    burst()
    client.force_login(User.objects.create_superuser("ops", "ops@example.com", "pw"))
    page = client.get("/offload/").content.decode()
    assert f'data-workflow="{result.id}"' in page and "22/22" in page and "0/2" in page
    graph = client.get(f"/offload/workflow/{result.id}/").content.decode()
    assert graph.count('<g class="node SUCCESSFUL"') == 3  # a, the group of 20 as one box, total
    assert 'data-steps="20"' in graph and "20 steps: 20 successful" in graph
    assert graph.count('<line class="edge"') == 2
    failed = client.get(f"/offload/workflow/{broken.id}/").content.decode()
    assert '<g class="node FAILED"' in failed and 'id="workflow-status">FAILED' in failed
    assert client.get("/offload/workflow/999999/").status_code == 404
    console = Console(width=200, record=True)
    console.print(view("default"))
    text = console.export_text()
    assert "Latest workflows" in text and "broken" in text and "22/22" in text


def test_an_atomic_step_releases_the_next_in_its_own_transaction(burst):
    """An atomic=True step records its success in the task's own transaction; the step
    after it is released there too (a step after an atomic one once stayed BLOCKED on
    PostgreSQL, whose store recorded the success without the bookkeeping)."""
    from tests.testapp.models import Counter

    result = chain(step(tasks.add_one, "wf"), step(tasks.echo, "after")).enqueue()
    burst()
    result = result.refresh()
    assert [s.status for s in result.steps] == ["SUCCESSFUL", "SUCCESSFUL"]
    assert Counter.objects.get(name="wf").value == 1
    assert tasks.echo.get_result(result.steps[1].id).args == ["wf", "after"]


def test_a_dependent_step_is_retried_once_what_it_depends_on_succeeded(burst, tmp_path):
    """A failed step and the step that failed with it (DependencyFailed): retrying both
    runs the first only, the second stays FAILED (it would run without the result); once
    the first succeeded, retrying the second runs it with that result."""
    from django.contrib.auth.models import User

    from offload.dashboard import actions

    flag = tmp_path / "fixed"
    result = chain(step(tasks.fails_until_fixed, str(flag)), step(tasks.echo)).enqueue()
    burst()
    assert [s.status for s in result.refresh().steps] == ["FAILED", "FAILED"]
    user = User.objects.create_superuser("ops", "ops@example.com", "pw")
    flag.write_text("ok")
    assert actions.retry(user, TaskRow.objects.filter(workflow_id=int(result.id))) == 1
    burst()
    assert [s.status for s in result.refresh().steps] == ["SUCCESSFUL", "FAILED"]
    assert actions.retry(user, TaskRow.objects.filter(pk=int(result.steps[1].id))) == 1
    burst()
    result = result.refresh()
    assert (result.status, result.return_value) == ("SUCCESSFUL", {"args": ["fixed"], "kwargs": {}})


def test_a_released_step_ages_from_its_release():
    """With ageing on, a step released later gets the ageing key of that time (priority
    - AGE_RATE x epoch(available_at)), not of its enqueue: it does not jump ahead."""
    from datetime import timedelta

    from django.tasks import task_backends
    from django.utils import timezone

    from offload.testing import run_until_empty

    result = chain(step(tasks.aged_logged, "a"),
                   step(tasks.aged_logged, "b").without_results()).enqueue()
    rate = task_backends["aged"].opts.AGE_RATE
    then = timezone.now() - timedelta(seconds=10)  # as if enqueued 10 s ago
    TaskRow.objects.filter(pk=result.steps[1].id).update(
        available_at=then, age_key=-rate * then.timestamp())  # priority 0
    assert run_until_empty("aged", max_tasks=1) == 1  # the first step: the second is released
    row = TaskRow.objects.get(pk=result.steps[1].id)
    assert row.status == "READY" and row.age_key is not None
    # SQLite's date functions keep milliseconds: the key is exact to rate x 1 ms.
    assert row.age_key == pytest.approx(-rate * row.available_at.timestamp(), abs=rate * 0.002)
    assert row.available_at >= TaskRow.objects.get(pk=result.steps[0].id).finished_at


def test_maintenance_settles_steps_whose_completion_skipped_the_bookkeeping():
    """A worker of a release from before workflows records a step's outcome without the
    bookkeeping (played here by writing the rows as it would): maintenance's net
    releases the step after a success and fails what follows a failure, once."""
    from datetime import timedelta

    from django.tasks import task_backends
    from django.utils import timezone

    ok = chain(step(tasks.plus, 1), step(tasks.plus)).enqueue()
    bad = chain(step(tasks.plus, 1), step(tasks.plus), step(tasks.plus)).enqueue()
    at = timezone.now()
    TaskRow.objects.filter(pk=ok.steps[0].id).update(status="SUCCESSFUL", finished_at=at, return_value="2")
    TaskRow.objects.filter(pk=bad.steps[0].id).update(status="FAILED", finished_at=at)
    store = task_backends["default"].store
    assert store.settle_blocked(backend="default", now=at) == (0, 0)  # too young to look at
    later = at + timedelta(minutes=1)
    assert store.settle_blocked(backend="default", now=later) == (1, 2)
    assert [s.status for s in ok.refresh().steps] == ["SUCCESSFUL", "READY"]
    assert [s.status for s in bad.refresh().steps] == ["FAILED", "FAILED", "FAILED"]
    assert store.settle_blocked(backend="default", now=later) == (0, 0)  # once
