"""Tasks used by the test suite."""

import asyncio
import os
import time
from decimal import Decimal

from django.tasks import task

from tests.testapp.models import Run


@task
def noop():
    return None


@task(priority=10, queue_name="emails")
def add(a, b):
    return a + b


@task
def echo(*args, **kwargs):
    return {"args": list(args), "kwargs": kwargs}


@task(takes_context=True)
def logged(context, key, sleep=0.0):
    Run.objects.create(key=key, task_id=context.task_result.id,
                       attempt=context.attempt, pid=os.getpid())
    if sleep:
        time.sleep(sleep)
    return key


@task
def boom(message="boom"):
    raise ValueError(message)


@task(takes_context=True, max_attempts=3)
def flaky(context, succeed_on=3):
    if context.attempt < succeed_on:
        raise RuntimeError(f"attempt {context.attempt} fails")
    return context.attempt


@task
def returns_decimal():
    return Decimal("1.5")


@task
def returns_tuple():
    return (1, 2)


@task
async def coro(x):
    await asyncio.sleep(0.001)
    return x * 2


@task(takes_context=True)
def context_info(context):
    r = context.task_result
    return {"id": r.id, "attempt": context.attempt, "status": r.status,
            "worker_ids": r.worker_ids, "priority": r.task.priority}


@task(timeout=1)
def sleeps(seconds):
    time.sleep(seconds)
    return seconds


@task(backend="other")
def other_noop():
    return "other"


@task(backend="elsewhere")
def elsewhere_add(a, b):
    return a + b


@task
def exits():
    raise SystemExit(3)


@task(max_attempts=5, timeout="30s", retry_backoff="2s")
def with_options():
    pass


@task(backend="anyqueue", queue_name="whatever")
def anyqueue_noop():
    return "any"


@task
def pid():
    time.sleep(float(os.environ.get("OFFLOAD_TEST_TASK_SLEEP", "0")))
    return os.getpid()


@task(takes_context=True)
def span(context, key, sleep=0.0):
    """Records when it ran, so tests can measure how many ran at once."""
    from django.utils import timezone

    run = Run.objects.create(key=key, task_id=context.task_result.id, pid=os.getpid())
    time.sleep(sleep)
    Run.objects.filter(pk=run.pk).update(ended=timezone.now())
    return key


@task(backend="limited", queue_name="crm", takes_context=True)
def crm_sync(context, key, sleep=0.0):
    return span.func(context, key, sleep)


@task(backend="aged", takes_context=True)
def aged_logged(context, key):
    return logged.func(context, key)


@task(backend="periodic")
def periodic_tick():
    return time.time()


@task(backend="slowpoll")
def slowpoll_nap():
    time.sleep(0.01)


@task
def fails_until_fixed(flag_path):
    """Fails until the file ``flag_path`` exists: an operator "fixes" it, then retries."""
    if not os.path.exists(flag_path):
        raise RuntimeError(f"upstream unavailable ({flag_path} missing)")
    return "fixed"


@task
def waits_for(path, timeout=60.0):
    """Runs until the file ``path`` exists (the test creates it), at most ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear within {timeout}s")
        time.sleep(0.01)
    return "released"


def plain_function():
    return 1


@task
def interrupts():
    """Raises what the runner lets through (in the main thread it must stop run_inline)."""
    raise KeyboardInterrupt


@task(takes_context=True)
async def alogged(context, key, sleep=0.0):
    """``logged`` as a coroutine: its Run row through Django's async ORM."""
    await Run.objects.acreate(key=key, task_id=context.task_result.id,
                              attempt=context.attempt, pid=os.getpid())
    if sleep:
        await asyncio.sleep(sleep)
    return key


@task
async def gathers(folder, count, timeout=30.0):
    """Marks its arrival in ``folder``, then waits until ``count`` tasks have arrived: it
    finishes only if that many run at the same time."""
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, f"{os.getpid()}-{time.monotonic_ns()}"), "w"):
        pass
    deadline = time.monotonic() + timeout
    while len(os.listdir(folder)) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {len(os.listdir(folder))} of {count} ran at once")
        await asyncio.sleep(0.01)
    return os.getpid()


@task(timeout=1)
async def anaps(seconds, marker=None):
    """Awaits ``seconds`` (its timeout is 1 s); writes ``marker`` if it was cancelled."""
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        if marker:
            open(marker, "w").close()
        raise
    return seconds


@task(timeout=1)
async def stubborn(seconds):
    """Ignores its cancellation and keeps running: only replacing its process stops it."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            await asyncio.sleep(0.05)
        except asyncio.CancelledError:
            pass
    return "ignored"


@task
async def awaits_for(path, timeout=60.0):
    """``waits_for`` as a coroutine."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear within {timeout}s")
        await asyncio.sleep(0.01)
    return "released"


@task(takes_context=True)
def stoppable(context, key, seconds=30.0):
    """Works in small steps for ``seconds``, looking between steps whether it was asked
    to stop (``offload.cancellation``)."""
    from offload import cancellation

    Run.objects.create(key=key, task_id=context.task_result.id, pid=os.getpid())
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        cancellation.raise_if_requested()
        time.sleep(0.01)
    return "finished"


@task(takes_context=True, atomic=True)
def add_one(context, name="c", sleep=0.0, fail_first=False, hold=None, mark=None, elsewhere=False):
    """Adds 1 to counter ``name``: exactly once with atomic=True (its effects, whatever
    its runs). ``mark``: a directory where each run leaves a file ``<id>-<attempt>-<pid>``
    when it starts (a ledger outside the database); ``sleep`` widens the window after
    the write; ``hold``: waits after writing until that file exists; ``fail_first``
    raises after writing on the first attempt; ``elsewhere``: also writes through the
    other database alias, which an atomic task may not."""
    from django.db.models import F

    from tests.testapp.models import Counter, Note

    if mark:
        open(os.path.join(mark, f"{context.task_result.id}-{context.attempt}-{os.getpid()}"), "w").close()
    Counter.objects.get_or_create(name=name)
    Counter.objects.filter(name=name).update(value=F("value") + 1)
    if elsewhere:
        Note.objects.using("tasks").create(text="outside the transaction")
    if sleep:
        time.sleep(sleep)
    if hold:
        deadline = time.monotonic() + 60
        while not os.path.exists(hold) and time.monotonic() < deadline:
            time.sleep(0.01)
    if fail_first and context.attempt == 1:
        raise RuntimeError("failed after writing")
    return name


# -- workflows (tests/test_workflows.py) --------------------------------------------

@task
def plus(value, n=1):
    return value + n


@task
def total(values, *extra):
    return sum(values) + sum(extra)


@task(takes_context=True)
def member(context, i, mark=None, sleep=0.0):
    """A group member: leaves ``<id>-<attempt>-<pid>`` in ``mark`` when it starts."""
    if mark:
        open(os.path.join(mark, f"{context.task_result.id}-{context.attempt}-{os.getpid()}"), "w").close()
    if sleep:
        time.sleep(sleep)
    return i


@task(takes_context=True)
def fan_in(context, values, mark):
    """A chord's callback: leaves ``<id>-<attempt>-<pid>`` in ``mark`` (the ledger of
    its runs, outside the database) and returns how many values and their sum."""
    open(os.path.join(mark, f"{context.task_result.id}-{context.attempt}-{os.getpid()}"), "w").close()
    return [len(values), sum(values)]
