"""``make bench``: the monthly pipeline against a plain DuckDB baseline (see bench/run.py)."""
