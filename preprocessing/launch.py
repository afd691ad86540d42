"""Running a GPU builder (``latents``, ``candidates``) on one process or on N under torchrun / accelerate.

Why slices: every rank runs the same build as slice ``RANK`` of ``WORLD_SIZE`` (``--shard-index`` /
``--num-shards`` of the builder runner), so it takes whole shards, writes its own manifest part and resumes on
its own; rank 0 merges the parts once every rank has passed a barrier. Without ``torchrun`` (one process), it is
a plain resumable build. ``torchrun`` and ``accelerate launch`` both set ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import shutil
from typing import Any

from vidalign.builder import BuildOptions, make_builder
from vidalign.errors import ConfigError, VidalignError

BARRIER_HOURS = 48  # a rank that finishes early waits at the barrier for the slowest one


def dist_env() -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` from the launcher's environment (``(0, 1, 0)`` when not launched)."""
    try:
        rank = int(os.environ.get("RANK", 0))
        world = int(os.environ.get("WORLD_SIZE", 1))
        local = int(os.environ.get("LOCAL_RANK", rank))
    except ValueError as exc:
        raise ConfigError(f"RANK/WORLD_SIZE/LOCAL_RANK must be integers ({exc}); launch with torchrun") from exc
    if world < 1 or not 0 <= rank < world:
        raise ConfigError(f"RANK={rank} WORLD_SIZE={world} is invalid; launch with torchrun or accelerate launch")
    return rank, world, local


def default_device(local_rank: int | None = None) -> str:
    """``cuda:<LOCAL_RANK>`` when CUDA is available, else ``cpu``."""
    import torch

    if torch.cuda.is_available():
        local = dist_env()[2] if local_rank is None else local_rank
        return f"cuda:{local % torch.cuda.device_count()}"
    return "cpu"


def _plan_configs(name: str, args: dict, opts: BuildOptions) -> tuple[Any, set[str]]:
    builder = make_builder(name, args, seed=opts.seed, on_error=opts.on_error,
                           samples_per_shard=opts.samples_per_shard, shard_size=opts.shard_size)
    return builder, {job.config for job in builder.plan()}


def is_complete(name: str, args: dict, opts: BuildOptions) -> bool:
    """Every config this build plans is already complete in the output's manifest, with the same arguments."""
    from vidalign import manifest as mf

    if not (opts.out / mf.MANIFEST_NAME).is_file():
        return False
    manifest = mf.load(opts.out)
    builder, configs = _plan_configs(name, args, opts)
    entries = [manifest["configs"].get(c) for c in configs]
    return all(e is not None and e["complete"] and e["builder"] == name and e["args"] == builder.args_dict()
               and e.get("seed") == opts.seed for e in entries)


def _init_group() -> Any:
    import torch.distributed as dist

    if not dist.is_initialized():
        if "MASTER_ADDR" not in os.environ or "MASTER_PORT" not in os.environ:
            raise ConfigError("WORLD_SIZE > 1 but MASTER_ADDR/MASTER_PORT are not set; launch with torchrun or "
                              "accelerate launch, or run slices with --shard-index/--num-shards and then "
                              "vidalign merge-manifests")
        dist.init_process_group("gloo", timeout=datetime.timedelta(hours=BARRIER_HOURS))
    return dist


def _clear(name: str, args: dict, opts: BuildOptions) -> None:
    """``--overwrite`` on N ranks: rank 0 removes the old manifest, parts and the planned configs' shards."""
    from vidalign import manifest as mf
    from vidalign.format import DATA_DIR

    _, configs = _plan_configs(name, args, opts)
    (opts.out / mf.MANIFEST_NAME).unlink(missing_ok=True)
    shutil.rmtree(opts.out / mf.MANIFEST_PARTS_DIR, ignore_errors=True)
    shutil.rmtree(opts.out / mf.JOURNAL_DIR, ignore_errors=True)
    for config in configs:
        shutil.rmtree(opts.out / DATA_DIR / config, ignore_errors=True)


def _seed_part(opts: BuildOptions, rank: int, world: int) -> None:
    """Start this rank's manifest part from a merged manifest, so a resumed run skips the shards it lists."""
    from vidalign import manifest as mf

    part = opts.out / mf.part_name(rank, world)
    merged = opts.out / mf.MANIFEST_NAME
    if merged.is_file() and not part.exists():
        mf.save(opts.out, mf.load(opts.out), mf.part_name(rank, world))


def run_ranked(name: str, args: dict, opts: BuildOptions, command: str) -> dict:
    """Build ``name`` on this rank's slice; rank 0 returns the merged manifest (``_summary`` is its own slice's)."""
    from vidalign.runner import merge_manifests, run_build

    rank, world, _ = dist_env()
    if world == 1:
        return run_build(name, args, opts, command=command)
    if opts.num_shards is not None:
        raise ConfigError("--shard-index/--num-shards and a torchrun launch both split the work; use one of them")
    dist = _init_group()
    try:
        if opts.overwrite and rank == 0:
            _clear(name, args, opts)
        dist.barrier()
        if not opts.overwrite and not opts.resume and is_complete(name, args, opts):
            raise VidalignError(f"{opts.out}: already built; pass --resume to check it, or --overwrite to rebuild")
        if not opts.overwrite:
            _seed_part(opts, rank, world)
        sliced = dataclasses.replace(opts, shard_index=rank, num_shards=world)
        mine = run_build(name, args, sliced, command=command)
        dist.barrier()
        if rank == 0:
            merged = merge_manifests(opts.out)
            merged["_summary"] = mine["_summary"]
            mine = merged
        dist.barrier()
    finally:
        dist.destroy_process_group()
    return mine
