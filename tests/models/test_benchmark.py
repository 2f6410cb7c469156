"""The benchmark helper runs a real forward+backward in a child process and reports figures."""
import pytest

from benchmarks.model_benchmark import compare_attention, format_rows

from model_helpers import tiny_cfg


@pytest.mark.slow
def test_compare_attention_on_a_tiny_model():
    rows = compare_attention(tiny_cfg(), repeats=1, batch=2, iters=1, warmup=1)
    assert [r["impl"] for r in rows] == ["sdpa", "reference"]
    for r in rows:
        assert r["sec_per_clip"] > 0 and r["cpu_sec_per_clip"] > 0 and r["peak_mem_gb"] >= 0
    table = format_rows(rows)
    assert table.count("\n") == 3 and "| sdpa | cpu | fp32 |" in table
