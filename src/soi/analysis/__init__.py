"""What a streaming model costs and how fast it runs: the analytic cost model, a run-time MAC
counter, the equality check and the benchmark harness."""
