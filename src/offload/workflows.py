"""Workflows over plain ``django.tasks`` tasks: chains, groups, chords and any DAG
(docs/workflows.md). Every step is an ordinary task row with an ordinary TaskResult;
the task functions know nothing of the workflow. Example::

    from offload.workflows import chain, chord, group, step

    chain(step(fetch, url), step(parse), step(store)).enqueue()   # parse(fetch's value)
    chord([step(score, i) for i in ids], step(report)).enqueue()  # report([scores])

    flow = Workflow("application 42")                              # a diamond
    a = flow.add(step(analyse, 42))
    b, c = flow.add(step(credit, 42), after=[a]), flow.add(step(statement, 42), after=[a])
    flow.add(step(decide, 42), after=[b, c])                        # decide([b's, c's], 42)
    result = flow.enqueue()                                        # a WorkflowResult

**Results.** A step placed after a single step receives that step's return value as
its first positional argument; after a group (or several dependencies), the list of
their values, in order. ``step(...).without_results()`` receives nothing.

**Failure.** A step that fails after its retries fails every step downstream of it
with ``offload.exceptions.DependencyFailed`` naming it; other branches run on. The
bookkeeping is written in the transaction that records the step's outcome, so a
chord's callback is released exactly once however its members finish.
"""

from dataclasses import dataclass, field

from django.tasks import DEFAULT_TASK_BACKEND_ALIAS, Task, task_backends

from offload.exceptions import InvalidWorkflow
from offload.results import BLOCKED

__all__ = ["Workflow", "WorkflowResult", "chain", "chord", "get_workflow", "group", "step"]


class Step:
    """One task with its arguments, to run as a step of a workflow."""

    __slots__ = ("args", "kwargs", "receives", "task")

    def __init__(self, task, args=(), kwargs=None, *, receives=True):
        if not isinstance(task, Task):
            raise InvalidWorkflow(f"{task!r} is not a task: a step is step(task, *args, **kwargs) "
                                  "of a function decorated with @task.")
        self.task, self.args, self.kwargs, self.receives = task, tuple(args), dict(kwargs or {}), receives

    def without_results(self):
        """This step, receiving no result from the steps it follows (Celery's ``si``)."""
        return Step(self.task, self.args, self.kwargs, receives=False)

    def __repr__(self):
        return f"step({self.task.module_path}, ...)"


def step(task, /, *args, **kwargs):
    """A step: ``task`` called with ``args`` and ``kwargs`` (after any results it receives)."""
    return Step(task, args, kwargs)


class Chain:
    """Elements run one after the other, each receiving the previous one's result."""

    def __init__(self, elements):
        if not elements:
            raise InvalidWorkflow("chain() needs at least one step.")
        self.elements = [_node(e) for e in elements]

    def enqueue(self, name=""):
        return _enqueue(self, name)


class Group:
    """Members run in parallel; what follows receives the list of their results."""

    def __init__(self, members):
        if not members:
            raise InvalidWorkflow("group() needs at least one member.")
        self.members = [_node(m) for m in members]

    def enqueue(self, name=""):
        return _enqueue(self, name)


def chain(*elements):
    """``chain(a, b, c)``: b starts once a succeeded, receiving its value; then c."""
    return Chain(elements)


def group(*members):
    """``group(a, b, c)``: a, b and c run in parallel."""
    return Group(members)


def chord(members, callback):
    """``chord([a, b, c], d)``: d starts once a, b and c all succeeded, receiving the
    list of their values (``chain(group(a, b, c), d)``)."""
    return Chain([Group(list(members)), callback])


def _node(value):
    if isinstance(value, Step | Chain | Group):
        return value
    if isinstance(value, Task):
        return Step(value)
    if isinstance(value, list | tuple):
        return Group(value)
    raise InvalidWorkflow(f"{value!r} cannot be part of a workflow: use step(task, ...), "
                          "chain(...), group(...) or a task.")


@dataclass(frozen=True)
class Placed:
    """Where a node went in a Workflow (``Workflow.add``): its last steps, whose results
    what comes after it receives, and whether that is one value (a single step) or a
    list."""

    tails: tuple
    single: bool
    workflow: object = field(default=None, compare=False, repr=False)


class Workflow:
    """A workflow being built: ``add`` nodes (steps, chains, groups) after others, then
    ``enqueue``. chain(), group() and chord() build one for you."""

    def __init__(self, name=""):
        self.name = name
        self._steps = []  # (Step, dependencies (indexes), receives)

    def add(self, node, *, after=()):
        """Place ``node`` so that it starts once everything in ``after`` (what earlier
        ``add`` calls returned) succeeded; returns where it went."""
        for placed in after:
            if not isinstance(placed, Placed) or placed.workflow is not self:
                raise InvalidWorkflow(f"after={after!r}: give what add() of this workflow returned.")
        deps = None
        if after:
            deps = Placed(tuple(t for p in after for t in p.tails),
                          len(after) == 1 and after[0].single)
        placed = self._place(_node(node), deps)
        return Placed(placed.tails, placed.single, self)

    def _place(self, node, deps):
        if isinstance(node, Step):
            receives = None
            if deps and node.receives:
                receives = "one" if deps.single else "all"
            self._steps.append((node, deps.tails if deps else (), receives))
            return Placed((len(self._steps) - 1,), True)
        if isinstance(node, Chain):
            for element in node.elements:
                deps = self._place(element, deps)
            return deps
        placed = [self._place(member, deps) for member in node.members]
        return Placed(tuple(t for p in placed for t in p.tails), False)

    def enqueue(self):
        """Store every step, in the caller's transaction if there is one (a rolled-back
        request enqueues nothing); returns the WorkflowResult."""
        if not self._steps:
            raise InvalidWorkflow("this workflow has no steps: add() some first.")
        aliases = {s.task.backend for s, _, _ in self._steps}
        if len(aliases) > 1:
            raise InvalidWorkflow(f"a workflow's steps must share one backend; these use "
                                  f"{', '.join(sorted(aliases))}.")
        backend = task_backends[aliases.pop()]
        if not hasattr(backend, "enqueue_workflow"):
            raise InvalidWorkflow(f"workflows need an Offload backend; {backend.alias!r} is a "
                                  f"{type(backend).__name__}.")
        workflow_id, results = backend.enqueue_workflow(
            self.name, [(s.task, list(s.args), s.kwargs, receives, deps)
                        for s, deps, receives in self._steps])
        steps = [StepState(str(r.id), r.task.module_path, BLOCKED if deps else "READY",
                           tuple(str(results[d].id) for d in deps))
                 for r, (_, deps, _) in zip(results, self._steps, strict=True)]
        return WorkflowResult(str(workflow_id), self.name, backend.alias, steps)


def status_of(statuses):
    """A workflow's status from the set of its steps' statuses: RUNNING while a step
    has not finished (READY if none has started), else FAILED if a step failed, else
    SUCCESSFUL."""
    if set(statuses) <= {"SUCCESSFUL", "FAILED"}:
        return "FAILED" if "FAILED" in statuses else "SUCCESSFUL"
    return "READY" if set(statuses) <= {"READY", BLOCKED} else "RUNNING"


def _enqueue(node, name):
    flow = Workflow(name)
    flow.add(node)
    return flow.enqueue()


@dataclass(frozen=True)
class StepState:
    """A step of a workflow: its TaskResult's id, its task, its status (a
    TaskResultStatus value, or BLOCKED while it waits for ``depends_on``)."""

    id: str
    task_path: str
    status: str
    depends_on: tuple = ()


@dataclass(frozen=True)
class WorkflowResult:
    """A workflow's state, as read (``get_workflow``, or ``enqueue``): ``steps`` in the
    order they were added. ``refresh()`` reads it again."""

    id: str
    name: str
    backend: str
    steps: list = field(default_factory=list)

    @property
    def status(self):
        """See ``status_of``."""
        return status_of({s.status for s in self.steps})

    @property
    def is_finished(self):
        return self.status in ("SUCCESSFUL", "FAILED")

    def refresh(self):
        return get_workflow(self.id, backend=self.backend)

    def get_result(self, step_id):
        """The TaskResult of one step."""
        return task_backends[self.backend].get_result(step_id)

    @property
    def return_value(self):
        """The value of its last step (the one nothing depends on); the list of their
        values if several. Only once SUCCESSFUL."""
        if self.status != "SUCCESSFUL":
            raise ValueError(f"workflow {self.id} is {self.status}: it has no return value yet.")
        needed = {d for s in self.steps for d in s.depends_on}
        values = [self.get_result(s.id).return_value for s in self.steps if s.id not in needed]
        return values[0] if len(values) == 1 else values

    def cancel(self, *, reason=None, by=None):
        """Cancel what has not finished (docs/workflows.md); returns the fresh state."""
        from offload.cancellation import cancel_steps

        cancel_steps(self, reason=reason, by=by)
        return self.refresh()


def get_workflow(workflow_id, *, backend=DEFAULT_TASK_BACKEND_ALIAS):
    """The state of workflow ``workflow_id`` of ``backend``, from any process; raises
    ``LookupError`` for an unknown id."""
    from offload.models import Edge, TaskRow
    from offload.models import Workflow as WorkflowRow

    tasks = task_backends[backend]
    db = tasks.store.db_alias
    try:
        row = WorkflowRow.objects.using(db).get(pk=int(workflow_id), backend=backend)
    except (TypeError, ValueError, WorkflowRow.DoesNotExist):
        raise LookupError(f"no workflow {workflow_id!r} in backend {backend!r}") from None
    steps = list(TaskRow.objects.using(db).filter(workflow_id=row.pk).order_by("id")
                 .values_list("id", "task_path", "status"))
    deps = {}
    for parent, child in (Edge.objects.using(db).filter(
            child_id__in=TaskRow.objects.using(db).filter(workflow_id=row.pk).values("id"))
            .order_by("child_id", "position").values_list("parent_id", "child_id")):
        deps.setdefault(child, []).append(str(parent))
    return WorkflowResult(str(row.pk), row.name, backend,
                          [StepState(str(id_), path, status, tuple(deps.get(id_, ())))
                           for id_, path, status in steps])
