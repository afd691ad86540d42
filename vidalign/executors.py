"""Executors run shard jobs: inline, on a local process pool, or on a Ray cluster.

All take the same picklable task (a module-level function plus its arguments) and report each result as soon as
it arrives, so the caller can record a finished shard in the manifest before the next one ends.
"""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any

from vidalign.errors import VidalignError, missing_extra


def run_tasks(fn: Callable[..., Any], tasks: Iterable[tuple], on_result: Callable[[Any], None], *,
              executor: str = "local", workers: int = 1, ray_address: str | None = None) -> None:
    """Call ``fn(*task)`` for every task; ``on_result`` receives each result in completion order."""
    tasks = list(tasks)
    if not tasks:
        return
    if executor == "ray":
        _run_ray(fn, tasks, on_result, ray_address, workers)
    elif workers <= 1 or len(tasks) == 1:
        for t in tasks:
            on_result(fn(*t))
    else:
        _run_pool(fn, tasks, on_result, workers)


def _run_pool(fn, tasks, on_result, workers: int) -> None:
    # spawn: workers never inherit torch/OpenMP/pybullet state from the parent (fork after those deadlocks)
    ctx = mp.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(workers, len(tasks)), mp_context=ctx) as pool:
        pending = {pool.submit(fn, *t) for t in tasks}
        try:
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    on_result(fut.result())
        except BaseException:
            for fut in pending:
                fut.cancel()
            raise


def _run_ray(fn, tasks, on_result, address: str | None, workers: int) -> None:
    try:
        import ray
    except ImportError as exc:
        raise missing_extra("ray", "ray") from exc
    if not ray.is_initialized():
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=max(1, workers), log_to_driver=False, include_dashboard=False)
    remote = ray.remote(fn)
    pending = [remote.remote(*t) for t in tasks]
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        for ref in done:
            try:
                on_result(ray.get(ref))
            except ray.exceptions.RayTaskError as exc:
                cause = exc.cause if isinstance(getattr(exc, "cause", None), Exception) else None
                if isinstance(cause, VidalignError):
                    raise cause from None
                raise
