"""`rmpe-bench nms`: per-image timing of ours vs the reference loop, fastest of the repeats."""

from __future__ import annotations

import time

import numpy as np

from rmpe.benchmarks.cli import main as bench_main
from rmpe.benchmarks.nms_bench import per_image_ms


def test_per_image_ms_keeps_each_scenes_fastest_round() -> None:
    calls: list[int] = []
    slow_first = iter([0.02, 0.0, 0.0, 0.0, 0.0])  # warm-up, then round 1 scene 0 is slow

    def fake(x: int) -> None:
        calls.append(x)
        end = time.perf_counter() + next(slow_first)
        while time.perf_counter() < end:
            pass

    times = per_image_ms(fake, [(0,), (1,)], repeat=2)
    assert calls == [0, 0, 1, 0, 1] and times.shape == (2,)
    assert np.all(times < 10)  # the 20 ms round of scene 0 is not the one kept


def test_nms_command_prints_a_row_per_size(capsys) -> None:
    assert bench_main(["nms", "--images", "1", "--repeat", "1"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| 1")]
    assert [r.split("|")[1].strip() for r in rows] == ["10", "100", "1000"]
    assert all(r.split("|")[5].strip().endswith("×") for r in rows)
