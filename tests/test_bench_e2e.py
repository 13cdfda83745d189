"""bench.end_to_end itself, small: every path runs (host, service and stand-in
processes), the JSON has a row per path and batch size with CPU figures, the
board factors and the bytes a map. No figure is compared with a speed."""
import json

from bench import end_to_end as E


def test_end_to_end_bench_small(tmp_path, capsys):
    assert E.main(["--out", str(tmp_path), "--sizes", "1,4", "--maps", "8", "--repeats", "2",
                   "--no-csim"]) == 0
    out = capsys.readouterr().out
    assert "service alone" in out and "tcp+chardev/reference" in out and "x goal" in out
    data = json.loads((tmp_path / "end_to_end.json").read_text())
    rows = {(r["path"], r["batch"]): r for r in data["rows"]}
    paths = ("service alone", "tcp+chardev/cached", "tcp+chardev/reference")
    assert set(rows) == {(p, b) for p in paths for b in (1, 4)}
    for (path, b), r in rows.items():
        assert r["maps"] == 8 and r["repeats"] == 2 and r["timed_batches"] == 2 * 8 // b
        lo, hi = r["service_us_spread"]
        assert 0 < lo <= r["service_us_per_map"] <= hi
        assert (r["host_us_per_map"] is None) == (path == "service alone")
        assert r["goal_ratio"] == round(r["total_us_per_map"] / E.GOAL_US, 2)
    goal = data["goal"]
    assert goal["path"] == "tcp+chardev/cached" and goal["batch"] == 4
    assert goal["measured_median"] == rows["tcp+chardev/cached", 4]["total_us_per_map"]
    assert goal["met"] == (goal["measured_median"] <= E.GOAL_US) and "getrusage" in data["counted"]
    tcp = rows["tcp+chardev/reference", 4]
    assert tcp["host_engine_us_per_map"] > 0 and "board_us_per_map" in tcp
    assert set(data["board_factors"]) == {"zybo_a9_667", "stm32mp1_a7_650"}
    assert all(f["factor"] > 1 for f in data["board_factors"].values()) and data["factor_sources"]
    # a 42x42 map: 444 DMA bytes as die states, 1,764 as bytes, plus the batch's share of framing
    per = data["bytes_per_map"]["4"]
    assert 444 < per["dma_request_die2"] < 444 + 20 / 4 + 1
    assert 1764 < per["dma_request_u8"] < 1764 + 20 / 4 + 1
    assert per["gbe_request_die2"] < per["gbe_request_u8"] / 3
