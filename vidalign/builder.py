"""Builders: how every vidalign dataset is made, resumably and in parallel.

A builder is a class with an ``Args`` dataclass (its options, declared once: the CLI flags come from the fields'
types, defaults and ``metadata={"help": ...}``), a :meth:`Builder.plan` that lists :class:`ShardJob` s — pure
descriptions (config, split, shard index, sample index range, seed) that depend only on the arguments — and a
:meth:`Builder.build_shard` that yields the job's :class:`Sample` s (or :class:`Rejected` inputs).
:func:`run_build` writes each job to ``data/<config>/<split>-<i>-of-<n>.tar`` (or ``.parquet``) with the
writer of :func:`vidalign.shards.open_writer`, records it in ``manifest.json`` as soon as it is done, skips shards
already recorded (``--resume``), and writes the dataset card when every planned shard exists::

    @register_builder
    class MyBuilder(Builder):
        name = "my-data"

        @dataclass
        class Args:
            num_samples: int = field(default=100, metadata={"help": "clips to make"})

        def plan(self):
            return self.split_range("default", "train", self.args.num_samples)

        def build_shard(self, job):
            for i in job.indices():
                yield Sample(self.key(i), {"json": {"i": i}, "x.npy": np.full(3, i)})

How samples are stored is declared, not coded (:meth:`Builder.layout`): ``tabular = True`` writes Parquet
(prompts, TRL rows: every json field a column); otherwise tar shards, with ``columns`` (json fields also stored as
top-level columns: ``("prompt.txt", "seed.json")``) and ``gzip_members`` (``("depth.npy",)``).

Inputs are declared so that a resumed build can tell when one changed: ``input_args`` names the ``Args`` fields
that are input files or folders (each fingerprinted by content in the manifest), :meth:`Builder.inputs` may add
files they reference or a resolved configuration; an ``Args`` field with ``metadata={"output": False}`` (a rate
limit, a thread count) does not change the data, so a rerun may change it without ``--overwrite``.

Sample keys come from :meth:`Builder.key` (seed + index). Inputs that fail raise
:class:`~vidalign.errors.InputError`; inside ``build_shard`` pass them to :meth:`Builder.reject`, which re-raises
under ``--on-error raise`` and returns a :class:`Rejected` (yield it) under ``--on-error skip``.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import shlex
import sys
import typing
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from vidalign.errors import ConfigError, InputError, VidalignError, require
from vidalign.format import (
    DEFAULT_SHARD_MB,
    PARQUET,
    WEBDATASET,
    Layout,
    check_name,
    sample_key,
    shard_relpath,
)
from vidalign.storage import is_remote

# Builders shipped with vidalign: name -> module that registers it (imported on first use, so that
# `vidalign build kubric-drop` never imports torch-heavy modules of other builders).
KNOWN_BUILDERS = {
    "synthetic": "vidalign.synthetic",
    "synthetic-latents": "vidalign.synthetic",
    "kubric-drop": "vidalign.datasets_builders.kubric_drop",
    "dsr-prompts": "vidalign.datasets_builders.dsr",
    "dsr-pairs": "vidalign.datasets_builders.dsr",
    "vidprom-prompts": "vidalign.datasets_builders.vidprom",
    "vidprom-pairs": "vidalign.datasets_builders.vidprom",
    "motionprefer": "vidalign.datasets_builders.motionprefer",
    "motionprefer-atom": "vidalign.datasets_builders.motionprefer",
    "videodpo-import": "vidalign.datasets_builders.videodpo",
    "latents": "vidalign.preprocessing.encode",
    "candidates": "vidalign.preprocessing.generate",
}
_REGISTRY: dict[str, type[Builder]] = {}


@dataclass(frozen=True)
class ShardJob:
    """One shard to write: a pure, picklable description (the same arguments always give the same jobs)."""

    config: str
    split: str
    index: int
    total: int
    start: int
    stop: int
    seed: int
    params: dict = field(default_factory=dict)
    ext: str = "tar"  # set by the runner from the builder's layout (tar or parquet)

    @property
    def relpath(self) -> str:
        return shard_relpath(self.config, self.split, self.index, self.total, self.ext)

    def indices(self) -> range:
        return range(self.start, self.stop)


@dataclass
class Sample:
    key: str
    members: dict[str, Any]


@dataclass
class Rejected:
    input: str
    reason: str


def _opt(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass
class BuildOptions:
    """Options every builder takes (declared once; the CLI flags come from these fields)."""

    out: Path = field(metadata={"help": "output dataset folder, or any fsspec URL (s3://bucket/prefix, gs://…)"})
    seed: int = _opt(0, "base seed; every sample's seed derives from it")
    shard_size: float = _opt(DEFAULT_SHARD_MB, "largest shard size in MB (builders of expensive samples, such as "
                                                "simulation, cut a config into more, smaller shards so that "
                                                "every worker has work)")
    samples_per_shard: int | None = _opt(None, "samples per shard (overrides --shard-size)")
    on_error: Literal["raise", "skip"] = _opt("raise", "raise on the first bad input, or skip it and list it in the manifest")
    workers: int = _opt(1, "parallel worker processes, this one included (local executor)")
    executor: Literal["local", "ray"] = _opt("local", "local process pool, or a Ray cluster")
    ray_address: str | None = _opt(None, "Ray cluster address (default: a local Ray instance)")
    cpus_per_task: float = _opt(1.0, "CPUs each Ray task reserves (--executor ray)")
    gpus_per_task: float = _opt(0.0, "GPUs each Ray task reserves (--executor ray; fractions share a GPU)")
    task_retries: int = _opt(3, "times Ray reruns a task whose worker died or that failed with an OSError; a "
                                "rerun replaces the shard, never adds one")
    lock_timeout: float = _opt(0.0, "seconds to wait for another build writing --out to finish (default: stop "
                                    "at once with a message naming it)")
    shard_index: int | None = _opt(None, "run only slice i of the shard plan (SLURM array, indexed job)")
    num_shards: int | None = _opt(None, "number of slices (with --shard-index)")
    resume: bool = _opt(False, "skip shards that exist and match the manifest, redo the rest")
    overwrite: bool = _opt(False, "replace an existing build of the same configs")
    progress: bool = _opt(True, "show progress bars")

    def __post_init__(self):
        import math

        self.out = str(self.out) if is_remote(self.out) else Path(self.out)
        require(math.isfinite(self.shard_size) and self.shard_size > 0, "build", "shard_size", self.shard_size, "give a size in MB > 0")
        require(self.samples_per_shard is None or self.samples_per_shard >= 1, "build", "samples_per_shard",
                self.samples_per_shard, "give at least 1 sample per shard")
        require(self.on_error in ("raise", "skip"), "build", "on_error", self.on_error, "use raise or skip")
        require(self.workers >= 1, "build", "workers", self.workers, "use at least 1 worker")
        require(self.executor in ("local", "ray"), "build", "executor", self.executor, "use local or ray")
        require(math.isfinite(self.cpus_per_task) and self.cpus_per_task > 0, "build", "cpus_per_task",
                self.cpus_per_task, "give a number of CPUs > 0")
        require(math.isfinite(self.gpus_per_task) and self.gpus_per_task >= 0, "build", "gpus_per_task",
                self.gpus_per_task, "give a number of GPUs >= 0")
        require(self.task_retries >= 0, "build", "task_retries", self.task_retries, "give 0 or more retries")
        require(math.isfinite(self.lock_timeout) and self.lock_timeout >= 0, "build", "lock_timeout",
                self.lock_timeout, "give seconds >= 0")
        require((self.shard_index is None) == (self.num_shards is None), "build", "shard_index",
                self.shard_index, "give --shard-index and --num-shards together")
        if self.num_shards is not None:
            require(self.num_shards >= 1 and 0 <= self.shard_index < self.num_shards, "build", "shard_index",
                    self.shard_index, f"use 0 <= --shard-index < --num-shards ({self.num_shards})")


class Builder:
    """Base class of every dataset builder (see the module docstring)."""

    name: ClassVar[str] = ""
    Args: ClassVar[type] = None  # a dataclass
    description: ClassVar[str] = ""
    license: ClassVar[str] = "apache-2.0"
    license_name: ClassVar[str] = ""  # with license "other": a short id and a link to the terms
    license_link: ClassVar[str] = ""
    pretty_name: ClassVar[str] = ""
    task_categories: ClassVar[list[str]] = []  # Hub task ids (text-to-video, ...)
    citation: ClassVar[str] = ""
    tags: ClassVar[list[str]] = []
    sample_mb: ClassVar[float] = 1.0  # estimated size of one sample, to size shards from --shard-size
    # storage declarations (see :meth:`layout`)
    tabular: ClassVar[bool] = False
    columns: ClassVar[tuple[str, ...]] = ()
    gzip_members: ClassVar[tuple[str, ...]] = ()
    # samples take seconds each (simulation, rendering, generation): plan enough shards for every worker
    expensive_samples: ClassVar[bool] = False
    # Args fields naming input files or folders: fingerprinted by content in the manifest (see inputs())
    input_args: ClassVar[tuple[str, ...]] = ()

    def __init__(self, args: Any, seed: int = 0, on_error: str = "raise", samples_per_shard: int | None = None,
                 shard_size: float = DEFAULT_SHARD_MB):
        self.args = args
        self.seed = int(seed)
        self.on_error = on_error
        self.shard_size = shard_size
        self._samples_per_shard = samples_per_shard

    # -- to implement -------------------------------------------------------------------------------------------
    def plan(self) -> list[ShardJob]:
        raise VidalignError(f"builder {self.name!r} does not define plan()")

    def build_shard(self, job: ShardJob) -> Iterator[Sample | Rejected]:
        raise VidalignError(f"builder {self.name!r} does not define build_shard()")

    def estimate_sample_mb(self) -> float:
        """Size estimate of one sample (MB), to turn ``--shard-size`` into samples per shard."""
        return self.sample_mb

    def card_body(self, manifest: dict, folder: Path) -> str:
        """Extra Markdown for the dataset card (plots, vocabulary, ...)."""
        return ""

    def finalize(self, folder: Path, manifest: dict) -> None:
        """Called once every planned shard exists (write previews or plots here)."""

    def inputs(self) -> dict[str, Any]:
        """What the data is made from, fingerprinted in the manifest so that ``--resume`` refuses to mix old and
        new: ``{label: path}`` (a file or folder, hashed by content) or ``{label: value}`` (a resolved
        configuration, hashed as canonical JSON). The default lists the fields named in ``input_args``; builders
        add files their inputs reference (override and extend ``super().inputs()``)."""
        out: dict[str, Any] = {}
        for name in self.input_args:
            value = getattr(self.args, name, None)
            values = value if isinstance(value, (list, tuple)) else [value]
            for i, v in enumerate(values):
                if v is not None and not is_remote(v):
                    out[_flag(name) + (f"[{i}]" if isinstance(value, (list, tuple)) and len(values) > 1 else "")] = \
                        Path(v)
        return out

    def layout(self, config: str) -> Layout:
        """How ``config`` is stored: Parquet when ``tabular``, else tar with the declared ``columns`` and
        ``gzip_members`` (override for per-config choices; all configs of a folder share one container)."""
        if self.tabular:
            return Layout(PARQUET)
        return Layout(WEBDATASET, tuple(self.columns), tuple(self.gzip_members))

    # -- helpers ------------------------------------------------------------------------------------------------
    def samples_per_shard(self, num_samples: int | None = None) -> int:
        """Samples per shard for a config of ``num_samples`` (see :func:`plan_samples_per_shard`)."""
        return plan_samples_per_shard(num_samples, self.estimate_sample_mb(), self.shard_size,
                                      self._samples_per_shard, bool(self.expensive_samples))

    def key(self, index: int) -> str:
        return sample_key(self.seed, index)

    def split_range(self, config: str, split: str, num_samples: int, params: dict | None = None,
                    offset: int = 0) -> list[ShardJob]:
        """Jobs covering samples ``offset .. offset+num_samples`` in shards of :meth:`samples_per_shard`."""
        check_name("config", config)
        check_name("split", split)
        per = self.samples_per_shard(num_samples)
        total = max(1, math.ceil(num_samples / per))
        return [
            ShardJob(config, split, i, total, offset + i * per, offset + min(num_samples, (i + 1) * per),
                     seed=self.seed, params=dict(params or {}))
            for i in range(total)
        ]

    def reject(self, exc: InputError) -> Rejected:
        """Under ``--on-error raise`` re-raise ``exc``; under ``skip`` return a :class:`Rejected` to yield."""
        if self.on_error == "raise":
            raise exc
        return Rejected(input=exc.source, reason=exc.reason)

    def args_dict(self) -> dict:
        return _jsonable(dataclasses.asdict(self.args)) if self.args is not None else {}


PARALLEL_SHARDS = 256  # shards a config of expensive samples is cut into (at least), whatever --workers says


def plan_samples_per_shard(num_samples: int | None, sample_mb: float, shard_mb: float,
                           explicit: int | None = None, expensive: bool = False) -> int:
    """How many samples go in one shard — a pure function of the build arguments, never of ``--workers``, so the
    same seed gives byte-identical shards and ``--resume`` finds them whatever pool runs it.

    ``--samples-per-shard`` when given; else as many samples as fit in ``--shard-size`` MB; and for builders
    whose samples are expensive (simulation, rendering, generation), few enough that the config has
    :data:`PARALLEL_SHARDS` shards (one sample each below that many samples). Shards are the unit of work, so a
    config of 24 drop clips gives 2 workers 12 shards each (it used to be one shard: ``--workers`` did nothing
    under 112 clips), and 5,000 clips make 250 shards of 20, which keep 64 workers busy 98 % of the build
    (46 shards of up to 111 kept at most 72 % busy).
    """
    if explicit:
        return int(explicit)
    per = max(1, int(shard_mb // max(sample_mb, 1e-6)))
    if expensive and num_samples:
        per = min(per, max(1, math.ceil(num_samples / PARALLEL_SHARDS)))
    return per


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, Path):
        return str(v)
    return v


def register_builder(cls: type[Builder]) -> type[Builder]:
    """Class decorator: make a builder available to ``vidalign build <name>``."""
    if not cls.name or cls.Args is None or not dataclasses.is_dataclass(cls.Args):
        raise TypeError(f"{cls.__name__} needs a `name` and a dataclass `Args`")
    _REGISTRY[cls.name] = cls
    return cls


def get_builder(name: str) -> type[Builder]:
    if name not in _REGISTRY and name in KNOWN_BUILDERS:
        importlib.import_module(KNOWN_BUILDERS[name])
    if name not in _REGISTRY and ":" in name:  # module:Class, a builder of the user's own
        module, _, attr = name.partition(":")
        try:
            cls = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise VidalignError(f"builder {name!r}: cannot import it ({exc}); give module:Class of an importable "
                                "module (on PYTHONPATH)") from None
        if not (isinstance(cls, type) and issubclass(cls, Builder)):
            raise VidalignError(f"builder {name!r} is not a vidalign.builder.Builder subclass")
        return cls
    if name not in _REGISTRY:
        raise VidalignError(f"unknown builder {name!r}; choose one of: {', '.join(builder_names())} (or give "
                            "module:Class of your own)")
    return _REGISTRY[name]


def builder_class(ref) -> type[Builder]:
    """A builder class from a registered name, ``module:Class``, or the class itself."""
    if isinstance(ref, type) and issubclass(ref, Builder):
        if not ref.name or ref.Args is None or not dataclasses.is_dataclass(ref.Args):
            raise VidalignError(f"{ref.__name__} needs a `name` and a dataclass `Args`")
        return ref
    return get_builder(ref)


def builder_names() -> list[str]:
    return sorted(set(KNOWN_BUILDERS) | set(_REGISTRY))


def make_builder(name, args: dict, seed: int = 0, on_error: str = "raise",
                 samples_per_shard: int | None = None, shard_size: float = DEFAULT_SHARD_MB) -> Builder:
    """Instantiate a builder from its name (or class) and an args dict (validated by its ``Args.__post_init__``)."""
    cls = builder_class(name)
    name = cls.name
    known = {f.name for f in dataclasses.fields(cls.Args)}
    unknown = sorted(set(args) - known)
    if unknown:
        raise ConfigError(f"builder {name!r}: unknown argument(s) {unknown}; known: {sorted(known)}")
    try:
        parsed = cls.Args(**args)
    except TypeError as exc:
        raise ConfigError(f"builder {name!r}: {exc}") from exc
    return cls(parsed, seed=seed, on_error=on_error, samples_per_shard=samples_per_shard, shard_size=shard_size)


def output_args(cls: type[Builder], args: dict) -> dict:
    """The arguments that change the data: all but the ``Args`` fields declared ``metadata={"output": False}``."""
    neutral = {f.name for f in dataclasses.fields(cls.Args) if f.metadata.get("output") is False}
    return {k: v for k, v in args.items() if k not in neutral}


def fingerprint_inputs(builder: Builder) -> dict[str, dict]:
    """``{label: {"path", "sha256"}}`` of every declared input (:meth:`Builder.inputs`), hashed by content."""
    import hashlib
    import json

    from vidalign.inputs import fingerprint

    out = {}
    for label, value in builder.inputs().items():
        if isinstance(value, Path):
            out[label] = {"path": str(value), "sha256": fingerprint(value)}
        else:
            text = json.dumps(_jsonable(value), sort_keys=True, default=str)
            out[label] = {"sha256": hashlib.sha256(text.encode()).hexdigest()}
    return out


# -- argparse from dataclasses ------------------------------------------------------------------------------------
def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_dataclass_arguments(parser, cls: type, skip: tuple[str, ...] = ()) -> None:
    """Add one flag per dataclass field (type, default, help and choices from the field)."""
    import argparse

    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip or not f.init:
            continue
        tp = hints[f.name]
        origin, targs = typing.get_origin(tp), typing.get_args(tp)
        if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)) and type(None) in targs:
            tp = next(a for a in targs if a is not type(None))
            origin, targs = typing.get_origin(tp), typing.get_args(tp)
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        kw: dict[str, Any] = {"help": f.metadata.get("help", ""), "dest": f.name}
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if tp is bool:
            parser.add_argument(_flag(f.name), action=argparse.BooleanOptionalAction, default=default, **kw)
            continue
        if origin is Literal:
            kw["choices"] = list(targs)
            kw["type"] = type(targs[0])
        elif origin in (list, tuple):
            kw["nargs"] = "+"
            kw["type"] = targs[0] if targs and targs[0] is not Ellipsis else str
        elif tp in (int, float, str):
            kw["type"] = tp
        else:
            kw["type"] = str
        if "choices" in f.metadata:
            kw["choices"] = f.metadata["choices"]
        if kw["help"] and not required and "default" not in kw["help"]:
            kw["help"] += f" (default: {default})"
        parser.add_argument(_flag(f.name), default=default, required=required, **kw)


def add_options(parser) -> None:
    """The common build flags, from :class:`BuildOptions`."""
    add_dataclass_arguments(parser, BuildOptions)


def equivalent_command(name, args: dict, opts: BuildOptions) -> str:
    """The ``vidalign build`` command line that reproduces a build made through the Python API."""
    cls = builder_class(name)
    ref = cls.name if cls.name in _REGISTRY and _REGISTRY[cls.name] is cls else f"{cls.__module__}:{cls.__qualname__}"
    argv = ["build", ref]
    defaults = {f.name: f.default for f in dataclasses.fields(cls.Args)}
    opt_defaults = {f.name: f.default for f in dataclasses.fields(BuildOptions)}
    for source, dflt in ((args, defaults), ({k: getattr(opts, k) for k in ("out", "seed", "shard_size",
                         "samples_per_shard", "on_error")}, opt_defaults)):
        for k, v in source.items():
            if k != "out" and v == dflt.get(k, dataclasses.MISSING):
                continue
            if isinstance(v, bool):
                argv.append(_flag(k) if v else "--no-" + k.replace("_", "-"))
            elif isinstance(v, (list, tuple)):
                argv += [_flag(k), *map(str, v)]
            elif v is not None:
                argv += [_flag(k), str(v)]
    return shlex.join(["vidalign", *argv])


def command_line(argv: list[str] | None = None) -> str:
    return shlex.join(["vidalign", *(argv if argv is not None else sys.argv[1:])])
