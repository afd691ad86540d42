"""Hugging Face ``datasets`` features for shard members, inferred while writing.

The WebDataset loader of ``datasets`` would otherwise infer ``.npy`` members as nested Python lists, which is
slow and loses dtype and shape. The writer summarises every member (:func:`summarize`), summaries merge across
samples and shards (:func:`merge`), and the card declares the result (:func:`features_yaml`):

- arrays become ``ArrayND`` (dtype kept, fixed trailing dims, dynamic first dim), wrapped in ``List`` for the
  leading dims that vary between samples (e.g. a mask ``[V, N, H, W]`` with varying ``N`` is
  ``List(Array3D((None, H, W)))``: ``with_format("numpy")`` still returns one ``[V, N, H, W]`` array);
- ``.npz`` members become a struct of such arrays; ``json`` a struct inferred with Arrow, a column member
  ``<field>.json`` the field's own type (``Value("int64")``, ``List(...)``, ...);
- videos become ``Video()``, images ``Image()``, text ``Value("string")``; ``<member>.gz`` is typed as
  ``<member>`` (``datasets`` decompresses it);
- a Parquet config's columns (:func:`table_features`): ``__key__``, the json fields, then the other members.

Summaries are JSON so that each shard's record in the manifest carries its own, and a merge of sliced builds
needs no shard reads.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vidalign.errors import VidalignError
from vidalign.format import (
    BYTES_EXTENSIONS,
    IMAGE_EXTENSIONS,
    KEY_COLUMN,
    VIDEO_EXTENSIONS,
    logical_member,
    member_extension,
)

_ARRAY_CLASSES = {2: "Array2D", 3: "Array3D", 4: "Array4D", 5: "Array5D"}


def _array_summary(arr: np.ndarray) -> dict:
    return {"kind": "array", "dtype": str(arr.dtype), "shape": [[int(d), int(d)] for d in arr.shape]}


def _json_features(obj: Any) -> list:
    import pyarrow as pa
    from datasets import Features
    from datasets.features.features import cast_to_python_objects

    table = pa.Table.from_pylist([cast_to_python_objects(obj if isinstance(obj, dict) else {"value": obj})])
    return Features.from_arrow_schema(table.schema)._to_yaml_list()


def summarize(member: str, value: Any) -> dict:
    """JSON summary of one decoded member value (what its feature needs)."""
    ext = member_extension(logical_member(member))
    if ext == "json":
        if isinstance(value, dict):
            return {"kind": "json", "features": _json_features(value)}
        return {"kind": "jsonvalue", "features": _json_features({"value": value})}
    if ext == "npy":
        return _array_summary(np.asarray(value))
    if ext == "npz":
        return {"kind": "npz", "arrays": {k: _array_summary(np.asarray(v)) for k, v in sorted(value.items())}}
    if ext in VIDEO_EXTENSIONS:
        return {"kind": "video"}
    if ext in IMAGE_EXTENSIONS:
        return {"kind": "image"}
    if ext == "txt":
        return {"kind": "text"}
    return {"kind": "binary"}


def _merge_array(a: dict, b: dict, where: str) -> dict:
    if a["dtype"] != b["dtype"] or len(a["shape"]) != len(b["shape"]):
        raise VidalignError(
            f"{where}: samples disagree on dtype/rank ({a['dtype']} {len(a['shape'])}-d vs "
            f"{b['dtype']} {len(b['shape'])}-d); every sample of a config must store the same array type"
        )
    shape = [[min(x[0], y[0]), max(x[1], y[1])] for x, y in zip(a["shape"], b["shape"])]
    return {"kind": "array", "dtype": a["dtype"], "shape": shape}


def _merge_json(a: list, b: list) -> list:
    import pyarrow as pa
    from datasets import Features

    if a == b:
        return a
    sa = Features._from_yaml_list(a).arrow_schema
    sb = Features._from_yaml_list(b).arrow_schema
    try:
        merged = pa.unify_schemas([sa, sb], promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise VidalignError(f"json metadata of samples disagree on a field type: {exc}") from exc
    return Features.from_arrow_schema(merged)._to_yaml_list()


def merge(a: dict | None, b: dict, where: str = "member") -> dict:
    """Merge two summaries of the same member (shapes widen to ranges, json schemas unify)."""
    if a is None:
        return b
    if a["kind"] != b["kind"]:
        raise VidalignError(f"{where}: member kind changed from {a['kind']} to {b['kind']} between samples")
    if a["kind"] == "array":
        return _merge_array(a, b, where)
    if a["kind"] == "npz":
        if set(a["arrays"]) != set(b["arrays"]):
            raise VidalignError(f"{where}: .npz keys differ between samples ({sorted(a['arrays'])} vs "
                                f"{sorted(b['arrays'])}); every sample must store the same arrays")
        return {"kind": "npz", "arrays": {k: _merge_array(a["arrays"][k], b["arrays"][k], f"{where}[{k}]")
                                          for k in a["arrays"]}}
    if a["kind"] in ("json", "jsonvalue"):
        return {"kind": a["kind"], "features": _merge_json(a["features"], b["features"])}
    return a


def merge_all(summaries: list[dict[str, dict]]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for s in summaries:
        for member, summ in s.items():
            out[member] = merge(out.get(member), summ, member)
    return out


def _array_feature(summary: dict):
    import datasets

    dtype = summary["dtype"]
    shape = summary["shape"]
    if len(shape) == 0:
        return datasets.Value(dtype)
    varying = [i for i in range(1, len(shape)) if shape[i][0] != shape[i][1]]
    j = varying[-1] if varying else 0
    rank = len(shape) - j
    if rank == 1:
        inner = datasets.List(datasets.Value(dtype))
        # the last dim sits in a List; `j` more Lists wrap it below, minus the one just made
        for _ in range(j):
            inner = datasets.List(inner)
        return inner
    if rank > 5:
        raise VidalignError(f"arrays of {rank} fixed trailing dims are not supported by datasets (max 5)")
    first = shape[j][0] if (j == 0 and shape[0][0] == shape[0][1]) else None
    fixed = tuple([first] + [shape[i][0] for i in range(j + 1, len(shape))])
    inner = getattr(datasets, _ARRAY_CLASSES[rank])(shape=fixed, dtype=dtype)
    for _ in range(j):
        inner = datasets.List(inner)
    return inner


def to_feature(summary: dict):
    """The ``datasets`` feature for a merged member summary."""
    import datasets

    kind = summary["kind"]
    if kind == "array":
        return _array_feature(summary)
    if kind == "npz":
        return {k: _array_feature(v) for k, v in summary["arrays"].items()}
    if kind == "json":
        return datasets.Features._from_yaml_list(summary["features"])
    if kind == "jsonvalue":
        return datasets.Features._from_yaml_list(summary["features"])["value"]
    if kind == "video":
        return datasets.Video()
    if kind == "image":
        return datasets.Image()
    if kind == "text":
        return datasets.Value("string")
    return datasets.Value("binary")


def to_features(summaries: dict[str, dict]):
    import datasets

    return datasets.Features({member: to_feature(s) for member, s in summaries.items()})


def table_features(summaries: dict[str, dict]):
    """Features of a Parquet config: ``__key__``, one column per json field, one per other member."""
    import datasets

    feats = {KEY_COLUMN: datasets.Value("string")}
    if "json" in summaries:
        feats.update(to_feature(summaries["json"]))
    feats.update({m: to_feature(s) for m, s in summaries.items() if m != "json"})
    return datasets.Features(feats)


def features_yaml(summaries: dict[str, dict], tabular: bool = False) -> list:
    """The card's ``dataset_info.features`` list (a WebDataset config's members, or a Parquet config's columns,
    each led by ``__key__``)."""
    import datasets

    if tabular:
        return table_features(summaries)._to_yaml_list()
    feats = datasets.Features({KEY_COLUMN: datasets.Value("string"), **to_features(summaries)})
    return feats._to_yaml_list()


def describe(summary: dict) -> str:
    """Human-readable type of a member for cards and ``vidalign info``."""
    kind = summary["kind"]
    if kind == "array":
        dims = ["?" if lo != hi else str(lo) for lo, hi in summary["shape"]]
        return f"{summary['dtype']} [{', '.join(dims)}]"
    if kind == "npz":
        return "npz {" + ", ".join(f"{k}: {describe(v)}" for k, v in summary["arrays"].items()) + "}"
    if kind == "json":
        names = [f["name"] for f in summary["features"]]
        return "json {" + ", ".join(names) + "}"
    if kind == "jsonvalue":
        return _yaml_type(summary["features"][0])
    return kind


def _yaml_type(entry: dict) -> str:
    """``{"name": "seed", "dtype": "int64"}`` → ``int64``; nested types in short form."""
    if "dtype" in entry:
        d = entry["dtype"]
        return d if isinstance(d, str) else "struct"
    if "list" in entry:
        inner = entry["list"]
        return f"list[{_yaml_type(inner) if isinstance(inner, dict) else inner}]"
    if "struct" in entry:
        return "struct {" + ", ".join(f["name"] for f in entry["struct"]) + "}"
    return "?"


__all__ = ["summarize", "merge", "merge_all", "to_feature", "to_features", "table_features", "features_yaml",
           "describe", "BYTES_EXTENSIONS"]
