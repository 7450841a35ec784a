"""The sweep cache under concurrent writers: two processes saving overlapping rows into one file, many times."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from core.sweep import SweepCache, read_table
from core.sweep.cache import merged
from core.sweep.table import COLUMNS

SAVES = 40
WEIGHTS = "w" * 12

# One writer: waits for the go file, then saves SAVES tables, the i-th with rank "W-i" of its own (a row only this save
# writes: lost for good if another save overwrote the file without it) and the ranks "s0".."s19" both writers write.
WRITER = """
import sys, time
from pathlib import Path
import pandas as pd
from core.sweep import SweepCache
from core.sweep.table import COLUMNS
folder, who, saves = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
cache = SweepCache("data:64:0", folder)
(folder / f"ready{who}").touch()
while not (folder / "go").exists():
    time.sleep(0.01)
for i in range(saves):
    ranks = [f"{who}-{i}"] + [f"s{r}" for r in range(20)]
    rows = [dict.fromkeys(COLUMNS, 0) | {"layer": "fc", "method": "svd", "rank": r, "task": "classification",
            "top1": who + i / 1000, "latency_ms": float("nan"), "top5": float("nan")} for r in ranks]
    cache.save("%s", pd.DataFrame(rows, columns=COLUMNS))
""" % WEIGHTS


@pytest.mark.slow  # two fresh interpreters import core.sweep (torch): ~20 s on the 2-core machine
def test_two_processes_saving_overlapping_rows_leave_each_key_once(tmp_path):
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), str(who), str(SAVES)]) for who in (1, 2)]
    deadline = time.monotonic() + 60
    while not all((tmp_path / f"ready{who}").exists() for who in (1, 2)) and time.monotonic() < deadline:
        time.sleep(0.05)
    (tmp_path / "go").touch()  # both have imported everything: their saves interleave
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    files = sorted(tmp_path.glob("*.csv"))
    assert [f.name for f in files] == [f"{WEIGHTS}_data-64-0_svd.csv"]
    table = read_table(files[0])
    # every rank either writer ever saved is there (no save lost another's rows), exactly once
    expected = [f"{who}-{i}" for who in (1, 2) for i in range(SAVES)] + [f"s{r}" for r in range(20)]
    assert sorted(table["rank"]) == sorted(expected)
    assert set(table["top1"].round().astype(int)) <= {1, 2} and table["top5"].isna().all()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # no temporary file left behind


def test_a_save_merges_by_key_and_the_new_rows_win(tmp_path):
    cache = SweepCache("data:64:0", tmp_path)

    def rows(ranks, top1):
        return pd.DataFrame([dict.fromkeys(COLUMNS, 0) | {"layer": "fc", "method": "svd", "rank": str(r),
                                                           "task": "classification", "top1": top1} for r in ranks],
                            columns=COLUMNS)

    cache.save(WEIGHTS, rows([1, 2, 3], 0.5))
    cache.save(WEIGHTS, rows([3, 4], 0.75))
    table = read_table(next(tmp_path.glob("*.csv")))
    assert list(table["rank"]) == ["1", "2", "3", "4"] and list(table["top1"]) == [0.5, 0.5, 0.75, 0.75]
    assert merged(table, rows([2, 2], 0.25))["rank"].tolist() == ["1", "3", "4", "2"]
