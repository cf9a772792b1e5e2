"""Kernel-speed history across commits: a SQLite store, per-series change points, the CI check.

* :mod:`.store` — the database (``mbs history add``);
* :mod:`.series` — the history as one value per commit per (GPU, dtype, point, backend, metric);
* :mod:`.detect` — E-divisive change points (Apache Otava);
* :mod:`.check` — regressions with their first bad commit (``mbs history check``).
"""
