"""The store's contract: what the backend, the worker and the dashboard may ask of a
store (``Store``, a ``typing.Protocol``) and the rows it hands over (``Claimed``,
``Outcome``). Both engines implement it (``PostgresStore``, ``SqliteStore``, on the
shared ``offload.store.base.SqlStore``); tests/test_store_contract.py checks it on each.
Times are parameters (``now``), never read inside the store. Example::

    store: Store = get_store("default")
    [c] = store.claim(backend="default", queues=["emails"], limit=1, worker="w1", lease=30, now=now())
    store.complete([Outcome(c.id, c.token, "SUCCESSFUL", now(), return_value="null")])  # {c.id}

Engines add what only they have: SQLite ``prepare()`` and ``data_version()``,
PostgreSQL ``channel()``, ``listen_params()`` and ``end_sessions()`` doing real work;
each gives its wake-up source (``wakeups(backend, name, listen=...)``).
"""

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable


@dataclass(slots=True)
class Claimed:
    """A task row as the claim returned it, plus the claim's token and time (the
    attempt's ``last_attempted_at``)."""

    id: int
    task_path: str
    payload: str
    priority: int
    queue_name: str
    enqueued_at: datetime
    run_after: datetime | None
    started_at: datetime
    worker_ids: str
    errors: str
    token: int
    claimed_at: datetime
    available_at: datetime  # when it became runnable: the wait is claimed_at - available_at
    backend: str  # the backend it was claimed for
    concurrency_key: str | None = None  # flow control: the key it holds while it runs
    rate_key: str | None = None  # flow control: its rate limit's bucket
    workflow_id: int | None = None  # the workflow it is a step of (docs/workflows.md)


@dataclass(slots=True)
class Outcome:
    """What happened to a claimed task, ready to be written by ``complete``."""

    id: int
    token: int
    status: str  # SUCCESSFUL, FAILED, or READY (a retry)
    finished_at: datetime | None
    available_at: datetime | None = None  # retries only
    return_value: str | None = None  # JSON text, SUCCESSFUL only
    errors: str | None = None  # full JSON list when it changed
    age_key: float | None = None  # retries only, when ageing is on
    #: The failure (not stored): ``task_finished`` is sent while it is being handled.
    exception: BaseException | None = None
    #: The claim it answers (a worker's outcomes): the store times it in offload_series
    #: from what the claim returned (``offload.stats.observe``) instead of re-reading
    #: the row.
    claim: Claimed | None = None
    #: Already written, in the transaction of an ``atomic=True`` task (the runner):
    #: the loop counts it accepted and does not write it again.
    recorded: bool = False


#: An enqueue row: (queue, priority, task path, payload JSON, run_after, unique_key,
#: concurrency_key, concurrency_limit, rate_key, rate_interval, rate_burst, fair_key).
Row = tuple[str, int, str, str, datetime | None, str | None, str | None, int | None,
            str | None, float | None, int | None, str | None]


@runtime_checkable
class Store(Protocol):
    """Every statement Offload runs on its tables; one implementation per engine."""

    engine: str  #: "postgres" or "sqlite": which ``sql/<engine>/`` the queries come from
    db_alias: str  #: the Django database alias it runs on

    def enqueue(self, backend: str, rows: Sequence[Row], *, now: datetime,
                age_rate: float = 0.0) -> list[tuple[int, bool]]:
        """Insert rows; ``[(id, created)]`` in order (a held unique key: the holder, False)."""

    def pending(self, backend: str, keys: Iterable[str]) -> dict[str, int]:
        """``{unique_key: id}`` of the READY or RUNNING tasks holding these keys."""

    def claim(self, *, backend: str, queues: Sequence[str], limit: int, worker: str, lease: float,
              now: datetime, exclude: Sequence[str] = (), min_priority: int = -100,
              age_rate: float = 0.0, age_cap: int = 0, server: str = "") -> list[Claimed]:
        """Lease up to ``limit`` runnable tasks in effective-priority order, then by age."""

    def claim_limited(self, *, backend: str, queue: str, cluster_max: int, limit: int,
                      worker: str, lease: float, now: datetime, server: str = "") -> list[Claimed]:
        """Claim from one queue while at most ``cluster_max`` of its tasks run anywhere."""

    def complete(self, outcomes: Sequence[Outcome], *, worker: str = "") -> set[int]:
        """Write outcomes whose lease is still held, count them; the accepted ids."""

    def cycle(self, outcomes: Sequence[Outcome], claim: dict | None = None, *,
              worker: str = "") -> tuple[set[int], list[Claimed]]:
        """``complete`` then ``claim(**claim)``, in one statement or transaction where it can."""

    def heartbeat(self, *, worker: str, ids: Sequence[int], lease: float, now: datetime,
                  execute: Callable[[str, dict], int] | None = None) -> int:
        """Extend the leases ``worker`` holds on ``ids``; how many it still held."""

    def hand_back(self, *, worker: str) -> list[int]:
        """Return a stopping worker's RUNNING tasks to READY, keeping their place in line."""

    def end_sessions(self, worker: str) -> int:
        """End a dead worker's database sessions before its tasks are rescued; how many."""

    def rescue(self, *, backend: str, now: datetime, max_rescues: int,
               worker: str | None = None) -> list[tuple[int, str]]:
        """Take back a dead worker's tasks, or expired leases; ``[(id, new status)]``."""

    def runnable(self, *, backend: str, queues: Sequence[str], now: datetime) -> bool:
        """Whether a task of ``queues`` (empty: any) is runnable now, paused queues aside."""

    def stop(self, *, backend: str, ids: Sequence[int], reason: str) -> list[int]:
        """Ask the workers running these RUNNING tasks to stop them; the ids asked."""

    def stopping(self, *, worker: str, ids: Sequence[int]) -> list[tuple[int, dict]]:
        """``[(id, Cancelled error entry)]`` of ``worker``'s tasks among ``ids`` asked to stop."""

    def cancel_stopped(self, *, backend: str, now: datetime) -> list[int]:
        """Tasks asked to stop that are READY again become FAILED (Cancelled); the ids."""

    def pause(self, *, backend: str, queue: str, paused: bool, now: datetime) -> None:
        """Set a queue's paused flag; claims skip a paused queue's tasks."""

    def retry(self, *, backend: str, ids: Sequence[int], now: datetime,
              age_rate: float = 0.0) -> list[int]:
        """FAILED tasks back to READY now; the ids that changed."""

    def cancel(self, *, backend: str, ids: Sequence[int], now: datetime, reason: str) -> list[int]:
        """READY tasks to FAILED with a Cancelled error; the ids that changed."""

    def cap_aged(self, *, backend: str, now: datetime, age_rate: float, age_cap: int,
                 batch: int = 10000) -> int:
        """Stop ageing the tasks that reached the cap; how many."""

    def unpark(self, *, backend: str, keys: Iterable[str]) -> int:
        """Tasks set aside for keys ``keys`` go back, as many as each has room for; how many."""

    def waiting_keys(self, *, backend: str, batch: int = 1000) -> list[str]:
        """Keys with tasks set aside that have room now."""

    def unpark_waiting(self, *, backend: str) -> int:
        """``unpark`` the keys ``waiting_keys`` finds; how many tasks went back."""

    def forget_keys(self, *, backend: str, batch: int = 5000) -> int:
        """Delete the lock rows of concurrency keys that no task runs; how many."""

    def record_atomic(self, outcome: Outcome, *, worker: str = "") -> bool:
        """An atomic task's success, in its transaction, guarded; no sums (add_sums)."""

    def add_sums(self, outcomes: Sequence[Outcome], *, worker: str = "") -> None:
        """Add the sums of outcomes that atomic tasks recorded to offload_series."""

    def hold(self, claimed: Claimed) -> bool:
        """Start of an atomic task's transaction: whether its lease still holds."""

    def next_turn(self, *, backend: str, now: datetime) -> datetime | None:
        """The soonest turn after ``now`` given to a rate-limited task (the loop wakes)."""

    def forget_buckets(self, *, backend: str, now: datetime, batch: int = 5000) -> int:
        """Delete the rate limits' buckets that are full again; how many."""

    def link(self, *, workflow: int, steps: Sequence[tuple[int, int]],
             edges: Sequence[tuple[int, int, int]]) -> None:
        """Make tasks just enqueued the steps of a workflow: ``(id, dependencies)``,
        ``(parent, child, position)`` (docs/workflows.md)."""

    def settle(self, *, succeeded: Sequence[int] = (), failed: Sequence[int] = (),
               now: datetime) -> list[int]:
        """The workflow bookkeeping of finished steps, in the caller's transaction:
        release what waits for ``succeeded``, fail what is downstream of ``failed``;
        the ids of the steps it failed."""

    def settle_blocked(self, *, backend: str, now: datetime, older_than: float = 10.0,
                       batch: int = 1000) -> tuple[int, int]:
        """The net under ``settle`` (steps whose completion skipped the bookkeeping)."""

    def with_received(self, id_: int, receives: str, args: list) -> list:
        """A step's arguments after the results of the steps it depends on."""

    def prune(self, *, backend: str, before: datetime, batch: int = 5000) -> int:
        """Delete finished tasks that finished before ``before``, with their workflows'
        dependencies and the workflows left with no step; how many tasks."""

    def delete_finished(self, ids: Sequence[int]) -> int:
        """Delete the tasks ``ids`` that are finished, with their workflows'
        dependencies, as ``prune`` does; how many tasks."""

    def record_rows(self, ids: Sequence[int], *, worker: str = "", timed: bool) -> None:
        """Count outcomes just written to ``ids`` in offload_series (caller's transaction)."""

    def fold_stats(self, *, backend: str, before: datetime,
                   hours_before: datetime | None = None) -> None:
        """Fold offload_series minutes before ``before`` into rows per hour (worker
        ``offload.stats.HOURS_WORKER``), and hours before ``hours_before`` into the
        per-series totals rows; the sums over the table stay the same."""
