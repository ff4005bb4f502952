"""The ownership probe (benchmarks/ownership_probe.py) runs and measures what it names: a tiny run
of three ways with the profile on, a publisher process and a listener process over ipc."""

import pytest

from benchmarks.ownership_probe import probe

pytestmark = pytest.mark.timeout(120)


def test_the_probe_measures_every_way_and_times_the_parts_of_our_send():
    result = probe(listeners=1, size=64 * 1024, carrier="ipc", ways=["tracked", "copied", "pyzmq"], blocks=2,
                   messages=5, profile=True)
    assert set(result) == {"tracked", "copied", "pyzmq"}
    for way, row in result.items():
        assert row["msgs_per_s"] > 0 and len(row["blocks"]) == 2, way
    assert "tracker wait" in result["tracked"]["profile_us"]
    assert "tracker wait" not in result["copied"]["profile_us"]  # the copy returns without a wait
    assert result["pyzmq"]["profile_us"] == {}
