"""One CPU thread budget for the compiled kernels (numba) and torch, chosen together.

A Bayesian fit (MAP or SVI) alternates small torch operations (the emission
densities of ``n`` checkpoints, the guide, the optimiser) with numba's parallel
forward-backward over runs. With both libraries left at their defaults, each
keeps one OpenMP thread per core, and torch's threads spin-wait after every
operation while numba's run: on a machine with other work the SVI step was 5-10
times slower than with one thread of each (issue 12; ``benchmarks/bench_svi.py``).

:func:`thread_budget` sets, for the duration of a fit, torch's intra-op threads to 1
(its operations here are a few dense products of ``(n, d^2)`` by ``(d^2, K)``, too
small to gain from threads) and numba's threads to the budget, and restores both
afterwards. The default budget is numba's configured thread count
(``NUMBA_NUM_THREADS``, one per core unless set) capped by the cores the load
average leaves free, so a loaded machine gets fewer threads instead of
oversubscribed ones. Results do not depend on the budget: numba's kernels add
their per-run parts in a fixed order (:mod:`inference._numba_kernels`) and torch
always runs single-threaded inside the budget.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

__all__ = ["default_budget", "thread_budget"]


def default_budget() -> int:
    """Numba's configured thread count, capped by the cores the 1-minute load average leaves free.

    The load average counts this process too, so ``free = cores - load + 1``.
    """
    import numba

    configured = int(numba.config.NUMBA_NUM_THREADS)
    cores = os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # not available on every platform
        load = 0.0
    free = int(cores - load + 1.0)
    return max(1, min(configured, cores, free))


@contextlib.contextmanager
def thread_budget(threads: int | None = None) -> Iterator[int]:
    """Run the block with torch on 1 intra-op thread and numba on ``threads``; restore both.

    Parameters
    ----------
    threads : int, optional
        Numba threads (default :func:`default_budget`); capped at numba's configured
        maximum (``NUMBA_NUM_THREADS``), at least 1.

    Yields
    ------
    int
        The numba thread count in effect.
    """
    import numba
    import torch

    n = default_budget() if threads is None else int(threads)
    n = max(1, min(n, int(numba.config.NUMBA_NUM_THREADS)))
    old_torch, old_numba = torch.get_num_threads(), numba.get_num_threads()
    torch.set_num_threads(1)
    numba.set_num_threads(n)
    try:
        yield n
    finally:
        torch.set_num_threads(old_torch)
        numba.set_num_threads(old_numba)
