"""benchmarks/push_throughput.py says, per platform and number of connections, whether each goal of
issue 21 is met (the benchmark itself runs only by hand or in `miaoxiang bench`)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import push_throughput


def row(naive: float, bare: float, p99: float, committed: list[list[int]]) -> dict[str, object]:
    return {"service_vs_naive": naive, "service_vs_bare": bare,
            "service": {"latency_p99_ms": p99, "ok_vs_committed": committed}}


def test_each_goal_is_judged_on_its_own_figure() -> None:
    results = {"ctwing": {"32": row(2.1, 0.61, 49.0, [[10, 10]]), "128": row(1.9, 0.7, 400.0, [[10, 11]])},
               "onenet": {"32": row(3.0, 0.5, 51.0, [[10, 9]])}}
    met = push_throughput.goals(results)["goals_met"]
    assert met["ctwing/32"] == {"service_vs_naive": True, "service_vs_bare": True, "p99_ms_at_32": True,
                                "every_200_committed": True}
    assert met["ctwing/128"] == {"service_vs_naive": False, "service_vs_bare": True, "every_200_committed": True}
    assert met["onenet/32"] == {"service_vs_naive": True, "service_vs_bare": False, "p99_ms_at_32": False,
                                "every_200_committed": False}
