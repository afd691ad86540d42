"""Executors run shard jobs: inline, on a local process pool, or on a Ray cluster.

All take the same picklable task (a module-level function plus its arguments) and report each result as soon as
it arrives, so the caller can record a finished shard in the manifest before the next one ends. A local pool of
``workers`` is this process plus ``workers - 1`` spawned ones, each handed the next task the moment it is free.

Progress inside a task: a task calls :func:`report_progress` (or wraps its loop in :func:`progress_iter`) as it
makes each sample; wherever it runs — this process, a pool worker, a Ray worker — the counts reach the
``on_progress(job, n)`` callback of :func:`run_tasks` in the calling process (batched to a few messages a
second), so a progress bar moves per sample, not per shard.
"""

from __future__ import annotations

import collections
import multiprocessing as mp
import os
import queue as queue_mod
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

from vidalign.errors import VidalignError, missing_extra

T = TypeVar("T")
ProgressFn = Callable[[str, int], None]

FLUSH_SECONDS = 0.2  # a worker sends its counts at most this often (and when a job ends)
_sink: Callable[[str, int], None] | None = None  # where report_progress sends counts in this process
_pending: dict[str, int] = {}
_last_flush = 0.0


def report_progress(job: str, n: int = 1, flush: bool = False) -> None:
    """Count ``n`` more samples done in ``job`` (a no-op when nobody listens)."""
    global _last_flush
    if _sink is None:
        return
    _pending[job] = _pending.get(job, 0) + n
    now = time.monotonic()
    if flush or now - _last_flush >= FLUSH_SECONDS:
        _last_flush = now
        for key, count in list(_pending.items()):
            if count:
                _sink(key, count)
        _pending.clear()


def progress_iter(items: Iterable[T], job: str) -> Iterator[T]:
    """``items``, reporting one sample of ``job`` done after each (and flushing when the loop ends)."""
    try:
        for item in items:
            yield item
            report_progress(job, 1)
    finally:
        report_progress(job, 0, flush=True)


def _set_sink(sink) -> None:
    global _sink, _last_flush
    _sink, _last_flush = sink, 0.0
    _pending.clear()


PARENT_POLL_SECONDS = 0.5


def _watch_parent(parent: int) -> None:
    """End this worker as soon as the process that started it is gone (SIGKILLed by the OOM killer, say): the
    worker is re-parented, so ``getppid()`` changes. Without this, pool workers would finish their shard and then
    wait on their task queue forever."""
    while True:
        time.sleep(PARENT_POLL_SECONDS)
        if os.getppid() != parent:
            os._exit(70)


def _init_pool_worker(queue, parent: int) -> None:  # runs once in every pool process
    threading.Thread(target=_watch_parent, args=(parent,), name="vidalign-parent-watch", daemon=True).start()
    if queue is not None:
        _set_sink(lambda job, n: queue.put((job, n)))


def ship_by_value(obj) -> None:
    """Make Ray send ``obj``'s module by value (its code travels with the task): a builder defined in a script,
    a notebook or a module the Ray workers cannot import still runs there."""
    module = sys.modules.get(getattr(obj, "__module__", ""))
    if module is None or module.__name__ == "__main__":
        return  # cloudpickle sends __main__ objects by value already
    try:
        from ray import cloudpickle
    except ImportError:
        return
    try:
        cloudpickle.register_pickle_by_value(module)
    except (ValueError, TypeError):  # a package (not a plain module), or registered already
        pass


def run_tasks(fn: Callable[..., Any], tasks: Iterable[tuple], on_result: Callable[[Any], None], *,
              executor: str = "local", workers: int = 1, ray_address: str | None = None,
              on_progress: ProgressFn | None = None, on_idle: Callable[[], None] | None = None,
              cpus_per_task: float = 1.0, gpus_per_task: float = 0.0, retries: int = 3) -> None:
    """Call ``fn(*task)`` for every task; ``on_result`` receives each result in completion order, and
    ``on_progress(job, n)`` the progress the tasks report (see the module docstring). ``on_idle`` runs once
    in this process when a local pool has handed out every task and waits for the last ones: a caller can
    prepare what comes next (imports, say) in time that would otherwise be lost. On Ray, each task reserves
    ``cpus_per_task``/``gpus_per_task`` and is rerun up to ``retries`` times when its worker dies or it raises an
    ``OSError`` (tasks must be idempotent: a shard task publishes the same path each time)."""
    tasks = list(tasks)
    if not tasks:
        return
    if executor == "ray":
        _run_ray(fn, tasks, on_result, ray_address, workers, on_progress, cpus_per_task, gpus_per_task, retries)
    elif workers <= 1 or len(tasks) == 1:
        previous = _sink
        _set_sink(on_progress)
        try:
            for t in tasks:
                on_result(fn(*t))
        finally:
            _set_sink(previous)
    else:
        _run_pool(fn, tasks, on_result, workers, on_progress, on_idle)


class _Feeder:
    """Hands tasks out one at a time, to pool processes (from the pool's result callbacks, so a worker gets its
    next task the moment it finishes one) and to this process (between recording results)."""

    def __init__(self, tasks: list[tuple]):
        self._todo = collections.deque(tasks)
        self._lock = threading.Lock()
        self.stopped = False
        self.results: queue_mod.Queue = queue_mod.Queue()  # finished pool futures, recorded by the main thread

    def take(self) -> tuple | None:
        with self._lock:
            return self._todo.popleft() if self._todo and not self.stopped else None

    def feed(self, pool, fn) -> bool:
        task = self.take()
        if task is None:
            return False
        try:
            fut = pool.submit(fn, *task)
        except RuntimeError:  # the pool is shutting down after an error
            return False
        fut.add_done_callback(lambda f: self._finished(f, pool, fn))
        return True

    def _finished(self, fut, pool, fn) -> None:
        self.results.put(fut)
        if not fut.cancelled() and fut.exception() is None:
            self.feed(pool, fn)


def _run_pool(fn, tasks, on_result, workers: int, on_progress: ProgressFn | None, on_idle=None) -> None:
    """``workers`` processes: this one (it has the imports already, and would only wait) and ``workers - 1``
    spawned ones (spawn: they never inherit torch/OpenMP/pybullet state, which fork after those deadlocks)."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue() if on_progress is not None else None
    drain = None
    if queue is not None:
        def pump():
            while (msg := queue.get()) is not None:
                on_progress(*msg)
        drain = threading.Thread(target=pump, name="vidalign-progress", daemon=True)
        drain.start()
    init = (_init_pool_worker, (queue, os.getpid()))
    feeder = _Feeder(tasks)
    recorded, previous, spawned = 0, _sink, min(workers - 1, len(tasks) - 1)
    _set_sink(on_progress)
    try:
        with ProcessPoolExecutor(max_workers=spawned, mp_context=ctx, initializer=init[0],
                                 initargs=init[1]) as pool:
            try:
                for _ in range(spawned):
                    feeder.feed(pool, fn)
                while recorded < len(tasks):
                    while True:  # record what the pool finished
                        try:
                            fut = feeder.results.get_nowait()
                        except queue_mod.Empty:
                            break
                        on_result(fut.result())
                        recorded += 1
                    task = feeder.take()
                    if task is not None:  # then work here too
                        on_result(fn(*task))
                        recorded += 1
                    elif recorded < len(tasks):
                        if on_idle is not None:
                            on_idle()
                            on_idle = None
                        fut = feeder.results.get()
                        on_result(fut.result())
                        recorded += 1
            except BaseException:
                feeder.stopped = True
                pool.shutdown(wait=False, cancel_futures=True)
                raise
    finally:
        _set_sink(previous)
        if queue is not None:
            queue.put(None)
            drain.join(timeout=5)
            queue.close()


def _ray_task(queue, fn, *args):
    """Runs in a Ray worker: progress goes to a Ray queue the driver drains."""
    _set_sink(None if queue is None else (lambda job, n: queue.put((job, n))))
    try:
        return fn(*args)
    finally:
        _set_sink(None)


def _run_ray(fn, tasks, on_result, address: str | None, workers: int, on_progress: ProgressFn | None,
             cpus_per_task: float = 1.0, gpus_per_task: float = 0.0, retries: int = 3) -> None:
    try:
        import ray
    except ImportError as exc:
        raise missing_extra("ray", "ray") from exc
    if not ray.is_initialized():
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=max(1, workers, int(cpus_per_task + 0.999)), log_to_driver=False,
                     include_dashboard=False)
    queue = None
    if on_progress is not None:
        from ray.util.queue import Queue

        queue = Queue()

    def drain():
        if queue is not None:
            n = queue.qsize()
            for job, count in (queue.get_nowait_batch(n) if n else []):
                on_progress(job, count)

    remote = ray.remote(num_cpus=cpus_per_task, num_gpus=gpus_per_task, max_retries=retries,
                        retry_exceptions=[OSError] if retries else False)(_ray_task)
    pending = [remote.remote(queue, fn, *t) for t in tasks]
    try:
        while pending:
            done, pending = ray.wait(pending, num_returns=1, timeout=0.5)
            drain()
            for ref in done:
                try:
                    on_result(ray.get(ref))
                except ray.exceptions.RayTaskError as exc:
                    cause = exc.cause if isinstance(getattr(exc, "cause", None), Exception) else None
                    if isinstance(cause, VidalignError):
                        raise cause from None
                    raise
    finally:
        if queue is not None:
            queue.shutdown()
