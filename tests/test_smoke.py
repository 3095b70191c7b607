import pytest
from django.tasks import TaskResultStatus

from offload.testing import run_until_empty
from tests.testapp.tasks import add


@pytest.mark.django_db
def test_inline_roundtrip():
    result = add.enqueue(2, 3)
    assert result.status == TaskResultStatus.READY
    assert run_until_empty() == 1
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == 5


@pytest.mark.django_db(transaction=True)
def test_burst_worker(burst):
    results = [add.enqueue(i, i) for i in range(20)]
    burst("--processes", "1", "--threads", "2")
    for i, r in enumerate(results):
        r.refresh()
        assert r.status == TaskResultStatus.SUCCESSFUL
        assert r.return_value == 2 * i
