"""The benchmark harness runs and reports ratios (a tiny run; the numbers themselves are in results/bench.md)."""
from companion import bench


def test_median_time_counts_only_timed_calls():
    calls = []
    bench.median_time(lambda: calls.append(1), repeats=3, warmup=2)
    assert len(calls) == 5


def test_tiny_rows_and_markdown():
    rows = bench.rounding_rows([1000], repeats=1) + bench.concrete_rows(50, 4, repeats=1)
    assert {r["reference"] for r in rows} >= {"torch.fake_quantize_per_tensor_affine", "torch.nn.functional.gumbel_softmax"}
    for r in rows:
        assert r["ratio"] > 0 and r["ours_ms"] > 0 and r["reference_ms"] > 0
    meta = {"machine": {"platform": "test", "threads": 1}, "versions": {"torch": "x"}}
    table = bench.markdown(rows, meta)
    assert table.count("\n| rounding |") == 3 and "gumbel_softmax" in table
