"""One benchmark per sweep point of the selected preset (``--preset``, default smoke)."""

import pytest

from mbs_layers.sweep.pytest_support import REPLAY_CLOCK, replay


@pytest.mark.benchmark(timer=REPLAY_CLOCK, group="sweep")
def test_point(point, sweep, benchmark, request):
    record = sweep.get_session().measure(sweep.points[point])
    sweep.keep(request.node.nodeid, request.node.name, record)
    status = record["status"]
    if status == "ok":
        replay(benchmark, record["samples_s"], record)
        return
    benchmark.skipped = True  # no stats: the record goes to the JSON's untimed list (see conftest)
    if status.startswith("skipped: "):
        pytest.skip(status)
    if status == "failed: out of memory":
        pytest.xfail(status)
    pytest.fail(status, pytrace=False)
