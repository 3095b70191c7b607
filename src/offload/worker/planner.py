"""The claim planner: which claims one round of a worker's loop makes, from counts alone.

Pure — no database, clock or threads — so each rule is a unit test
(``tests/test_planner.py``); the loop executes the plan in order. Today's rules:
queues with a limit (on this server, across the cluster) are claimed first, up to their
room, so a backlog elsewhere cannot starve them; then every other queue in priority
order, riding in the same statement as the outcomes being recorded; then reserved slots
with tasks at or above their priority. Concurrency keys, rate limits and fair sharing
will be rules here. Example::

    rules = Rules(queues=("crm", "default"), limited={"crm": (2, None)}, reserve=(1, 50))
    plan(rules, general=3, reserved=1, running={"crm": 1})
    # [ClaimRequest("claim", "general", 1, queues=("crm",)),
    #  ClaimRequest("cycle", "general", 3, queues=("crm", "default"), exclude=("crm",)),
    #  ClaimRequest("claim", "reserved", 1, queues=(...), exclude=("crm",), min_priority=50)]

A request's ``limit`` is its own ceiling; requests of one ``pool`` share that pool's
free slots, so the loop claims ``min(limit, what the pool has left)`` for each in turn.
"""

from dataclasses import dataclass, field

GENERAL, RESERVED, ASYNC = "general", "reserved", "async"
#: How long, on average, a task claimed ahead of a free thread may wait for one: the
#: claim window holds about this much work per process (see ``window``).
WINDOW_SECONDS = 0.002
#: The most tasks a process claims ahead of its threads.
MAX_WINDOW = 64
#: The most tasks one claim takes.
MAX_CLAIM = 500


@dataclass(frozen=True)
class Rules:
    """What a worker process may claim, fixed for its life."""

    #: The queues it takes (empty: every queue).
    queues: tuple = ()
    #: ``{queue: (limit on this server or None, limit across the cluster or None)}``.
    limited: dict = field(default_factory=dict)
    #: ``(slots, min_priority)``: slots only tasks of at least that priority may use.
    reserve: tuple = (0, 100)


@dataclass(frozen=True)
class ClaimRequest:
    """One claim: ``kind`` is the store query — ``claim``, ``claim_limited`` (a queue
    with a cluster-wide limit), or ``cycle`` (the claim that rides with the outcomes and
    is made even with nothing to claim, to record them)."""

    kind: str
    pool: str
    limit: int
    queues: tuple = ()
    exclude: tuple = ()
    min_priority: int | None = None
    #: ``claim_limited`` only: the queue's limit across the cluster.
    cluster_max: int | None = None

    def store_args(self, limit):
        """This request's arguments of its store query, claiming ``limit`` tasks."""
        if self.kind == "claim_limited":
            [queue] = self.queues
            return {"queue": queue, "cluster_max": self.cluster_max, "limit": limit}
        args = {"queues": list(self.queues), "exclude": list(self.exclude), "limit": limit}
        if self.min_priority is not None:
            args["min_priority"] = self.min_priority
        return args


def limits_for(queues, local, cluster):
    """``{queue: (local_max, cluster_max)}`` for the limited queues among ``queues``
    (every limited queue when ``queues`` is empty)."""
    names = (set(local) | set(cluster)) & set(queues) if queues else set(local) | set(cluster)
    return {q: (local.get(q), cluster.get(q)) for q in sorted(names)}


def free_slots(threads, reserve, *, busy_general, busy_reserved, window=0):
    """``(general, reserved)`` free slots of a process with ``threads`` slots of which
    ``reserve[0]`` are reserved, and ``window`` general slots more for tasks that wait
    for a thread (``busy_general`` counts those too)."""
    slots = reserve[0]
    return max(0, threads - slots + window - busy_general), max(0, slots - busy_reserved)


def window(threads, mean_seconds):
    """How many tasks to claim ahead of ``threads`` busy threads, whose tasks take
    ``mean_seconds`` on average (None: not known yet, claim none ahead): about
    ``WINDOW_SECONDS`` of their work, at most ``MAX_WINDOW``. Short tasks then travel
    in batches (one round trip records and claims many), while a task claimed ahead of
    slow ones never waits long, nor holds work another server could run. The waiting
    tasks start highest priority first, so a later urgent task passes them."""
    if not mean_seconds or threads <= 0:
        return 0
    return min(MAX_WINDOW, int(threads * WINDOW_SECONDS / mean_seconds))


def with_coroutines(room, *, free_async, async_share):
    """The general claim's size when the process also runs coroutine tasks: ``room``
    for thread tasks and, in proportion to ``async_share`` (the share of coroutine
    tasks among those lately claimed, 0..1), some of its ``free_async`` coroutine slots.
    Which kind a task is shows only once it is claimed, so the claim is sized for the
    mix it is likely to get: (nearly) all coroutines (a share of 0.95 or more), every
    free coroutine slot; none, only the threads' room."""
    if free_async <= 0 or async_share <= 0:
        return min(room, MAX_CLAIM)
    if async_share >= 0.95:
        return min(room + free_async, MAX_CLAIM)
    return min(room + min(free_async, round(room * async_share / (1 - async_share))), MAX_CLAIM)


def plan(rules, *, general, reserved, running=None):
    """The claims of one round with ``general`` and ``reserved`` free slots, ``running``
    counting this process's unfinished tasks per queue. The ``cycle`` request is always
    there (it records the outcomes); the others only when they may claim something."""
    running = running or {}
    requests = []
    if general:
        for name, (local, cluster) in rules.limited.items():
            room = general if local is None else local - running.get(name, 0)
            if room <= 0:
                continue
            if cluster is None:
                requests.append(ClaimRequest("claim", GENERAL, room, queues=(name,)))
            else:
                requests.append(ClaimRequest("claim_limited", GENERAL, room, queues=(name,),
                                             cluster_max=cluster))
    others = tuple(rules.limited)
    requests.append(ClaimRequest("cycle", GENERAL, general, queues=tuple(rules.queues), exclude=others))
    if reserved:
        requests.append(ClaimRequest("claim", RESERVED, reserved, queues=tuple(rules.queues),
                                     exclude=others, min_priority=rules.reserve[1]))
    return requests
