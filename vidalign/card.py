"""The dataset card (``README.md``): the YAML that makes a folder a Hub dataset, and the prose a person reads.

The YAML header holds what the Hub and ``datasets`` read: ``license`` (with ``license_name``/``license_link``
when it is ``other``), ``pretty_name``, ``task_categories``, ``size_categories``, ``tags``; ``configs`` (data
files per config and split, one marked ``default: true`` so ``load_dataset(folder)`` needs no config name, and a
``description`` carrying the build fingerprint: ``datasets`` keys its cache of a local folder on the card, so a
rebuild into the same folder must change the card or plain ``load_dataset`` serves the old data); and
``dataset_info`` (features with dtypes and shapes, so arrays load as arrays).

The prose has one section per config (grouped when one build made several), and never a local absolute path:
paths in commands and builder notes are cut to their last component.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import yaml

from vidalign import __version__
from vidalign import features as feats
from vidalign.errors import VidalignError
from vidalign.format import CARD_NAME, CONTAINER_EXT, FORMAT_VERSION, PARQUET, WEBDATASET, split_glob

SIZE_CATEGORIES = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                   (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B")]


def config_schema(entry: dict) -> dict[str, dict]:
    """A config's merged feature summary (format 2.1: stored once per config; 2.0: merged from its shards)."""
    from vidalign.manifest import config_schema as merged

    return merged(entry)


def container(entry: dict) -> str:
    """A config's container; format-1.0 manifests have no field: tar."""
    return entry.get("container", WEBDATASET)


def fingerprint(entry: dict) -> str:
    """A short digest of a config's shards (paths and sha256): changes whenever its data change."""
    shas = sorted((rel, rec["sha256"]) for rel, rec in entry["shards"].items())
    return hashlib.sha256(json.dumps([FORMAT_VERSION, shas]).encode()).hexdigest()[:16]


def size_category(n: int) -> str:
    for bound, name in SIZE_CATEGORIES:
        if n < bound:
            return name
    return "n>1B"


def default_config(manifest: dict) -> str | None:
    """The config ``load_dataset(folder)`` gives: ``default`` if there is one, else the first one built."""
    complete = [c for c, e in manifest["configs"].items() if e["complete"]]
    if not complete:
        return None
    return "default" if "default" in complete else complete[0]


def _split_recs(entry: dict, split: str) -> list[dict]:
    return [r for p, r in entry["shards"].items() if Path(p).name.startswith(split + "-")]


def card_yaml(manifest: dict, builders: dict) -> dict:
    """The YAML header; ``builders`` maps config name → builder instance (for license, tags, task categories)."""
    default = default_config(manifest)
    order = sorted((c for c, e in manifest["configs"].items() if e["complete"]), key=lambda c: (c != default, c))
    configs, infos, licenses, tags, tasks = [], [], {}, {"vidalign"}, []
    samples = 0
    for config in order:
        entry = manifest["configs"][config]
        kind = container(entry)
        ext = CONTAINER_EXT[kind]
        tags.add(kind)
        c = {"config_name": config}
        if config == default:
            c["default"] = True
        c["description"] = (f"vidalign {entry['builder']} build fingerprint {fingerprint(entry)} "
                            f"(format {FORMAT_VERSION})")
        c["data_files"] = [{"split": s, "path": split_glob(config, s, ext)} for s in sorted(entry["splits"])]
        configs.append(c)
        splits = []
        for s in sorted(entry["splits"]):
            recs = _split_recs(entry, s)
            samples += sum(r["samples"] for r in recs)
            # num_bytes: the shards' size on disk (datasets checks num_examples only)
            splits.append({"name": s, "num_bytes": sum(r["bytes"] for r in recs),
                           "num_examples": sum(r["samples"] for r in recs)})
        infos.append({"config_name": config,
                      "features": feats.features_yaml(config_schema(entry), tabular=kind == PARQUET),
                      "splits": splits})
        b = builders.get(config)
        if b is not None:
            licenses.setdefault(b.license, b)
            tags.update(b.tags)
            tasks += [t for t in b.task_categories if t not in tasks]
    out: dict = {}
    if licenses:
        names = sorted(licenses)
        out["license"] = names[0] if len(names) == 1 else names
        if "other" in licenses:
            b = licenses["other"]
            out["license_name"] = b.license_name or f"{b.name}-license"
            if b.license_link:
                out["license_link"] = b.license_link
    out["pretty_name"] = pretty_name(manifest, builders)
    if tasks:
        out["task_categories"] = tasks
    out["size_categories"] = [size_category(samples)]
    out["tags"] = sorted(tags)
    out["configs"] = configs
    out["dataset_info"] = infos
    return out


def pretty_name(manifest: dict, builders: dict) -> str:
    names = []
    for config, entry in manifest["configs"].items():
        b = builders.get(config)
        n = (b.pretty_name if b is not None and b.pretty_name else "") or f"vidalign {entry['builder']}"
        if n not in names:
            names.append(n)
    return " + ".join(names) or "vidalign dataset"


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000
    return f"{n} B"


# an absolute POSIX path not inside a URL (no "scheme:" or "host" right before it): /tmp/x/out, /home/u/a.jsonl
_ABS_PATH = re.compile(r"(?<![\w.:/~%-])/(?:[^\s/`'\"()\[\]<>|,;*]+/)+[^\s/`'\"()\[\]<>|,;*]*")


def scrub_paths(text: str, folder: Path | None = None) -> str:
    """Cut every local absolute path in ``text`` to its last component (the dataset folder to its name)."""
    def short(m: re.Match) -> str:
        p = m.group(0).rstrip("/")
        return p.rsplit("/", 1)[-1] or "."

    return _ABS_PATH.sub(short, text)


def _loading(manifest: dict, default: str) -> list[str]:
    kind = container(manifest["configs"][default])
    others = [c for c in sorted(manifest["configs"]) if c != default]
    lines = ["## Loading", "", "```python", "import datasets", "",
             f"ds = datasets.load_dataset(\"<this repo or folder>\")            # config `{default}` (the default)"]
    if others:
        lines.append(f"ds = datasets.load_dataset(\"<this repo or folder>\", \"{others[0]}\")  # configs: "
                     + ", ".join(f"`{c}`" for c in [default, *others]))
    if kind == PARQUET:
        lines += ["# flat, typed columns: a trl config goes straight into trl.DPOTrainer(train_dataset=ds[\"train\"])",
                  "# pandas / polars / duckdb read the same files: data/<config>/<split>-*.parquet"]
    else:
        lines += ["ds = ds.with_format(\"numpy\")          # arrays come back as numpy arrays of the declared shape",
                  "",
                  "import vidalign.data                   # dtypes kept (float16 depth, bool masks), masks fast",
                  f"ds = vidalign.data.load(\"<folder>\", \"{default}\", split=\"train\")",
                  "",
                  "import webdataset as wds, vidalign.format  # plain WebDataset, decoded safely (never unpickles)",
                  f"pipe = wds.WebDataset(vidalign.data.shard_paths(\"<folder>\", \"{default}\"), shardshuffle=False)"
                  ".map(vidalign.format.decode_sample)"]
    lines += ["", "# training: one stream from this repo, a folder or its URL, split by rank and DataLoader worker,",
              "# shuffled and resumable (vidalign train ... train_data=<this repo> does the same)",
              *(["import vidalign.data"] if kind == PARQUET else []),
              f"stream = vidalign.data.stream(\"<this repo, folder or URL>\", config=\"{default}\")",
              "```", ""]
    return lines


def _config_groups(manifest: dict) -> list[list[str]]:
    """Configs made by one build (same builder, arguments and seed) share a card section."""
    groups: dict[str, list[str]] = {}
    for config, entry in manifest["configs"].items():
        sig = json.dumps([entry["builder"], entry.get("args"), entry.get("seed", 0)], sort_keys=True, default=str)
        groups.setdefault(sig, []).append(config)
    return list(groups.values())


def _section(manifest: dict, configs: list[str], builder, folder: Path) -> list[str]:
    first = manifest["configs"][configs[0]]
    names = ", ".join(f"`{c}`" for c in configs)
    lines = [f"## Config{'s' if len(configs) > 1 else ''} {names}", "",
             f"Builder `{first['builder']}`, seed {first.get('seed', 0)}, "
             f"{'Parquet' if container(first) == PARQUET else 'WebDataset'} shards."
             + ("" if first["complete"] else " **Incomplete** (rerun the build with `--resume`)."), ""]
    for config in configs:
        entry = manifest["configs"][config]
        what = "column" if container(entry) == PARQUET else "member / column"
        lines += [f"`{config}`:", "", f"| {what} | type |", "|---|---|"]
        schema = config_schema(entry)
        if container(entry) == PARQUET:
            for f in (schema.get("json") or {}).get("features", []):
                lines.append(f"| `{f['name']}` | {feats._yaml_type(f)} |")
            schema = {k: v for k, v in schema.items() if k != "json"}
        for member, summ in schema.items():
            lines.append(f"| `{member}` | {feats.describe(summ)} |")
        lines.append("")
    lines += ["Built with:", "", "```bash", first.get("command") or "(built through the Python API)", "```", ""]
    rejected = [r for c in configs for r in manifest["configs"][c].get("rejected", [])]
    if rejected:
        lines += [f"{len(rejected)} inputs were rejected (listed in `manifest.json`):", ""]
        lines += [f"- `{r['input']}`: {r['reason']}" for r in rejected[:20]]
        if len(rejected) > 20:
            lines.append(f"- … and {len(rejected) - 20} more")
        lines.append("")
    if builder is not None:
        try:
            extra = builder.card_body(manifest, folder)
        except (VidalignError, OSError, ValueError, KeyError) as exc:  # inputs moved since: the card still writes
            extra = f"(this section could not be regenerated: {exc})"
        if extra:
            lines += [extra.strip(), ""]
    return lines


def card_text(manifest: dict, builders: dict, folder: Path) -> str:
    """The whole card; ``builders`` maps config name → builder instance."""
    head = yaml.safe_dump(card_yaml(manifest, builders), sort_keys=False, allow_unicode=True, width=120)
    lines = ["---", head.rstrip(), "---", "", f"# {pretty_name(manifest, builders)}", ""]
    seen = set()
    for b in builders.values():
        if b.description and b.description not in seen:
            seen.add(b.description)
            lines += [b.description.strip(), ""]
    default = default_config(manifest) or sorted(manifest["configs"])[0]
    lines += _loading(manifest, default)
    lines += ["## Contents", "", "| config | split | samples | shards | size | rejected |", "|---|---|---|---|---|---|"]
    for config, entry in sorted(manifest["configs"].items()):
        for split in sorted(entry["splits"]):
            recs = _split_recs(entry, split)
            lines.append(f"| {config} | {split} | {sum(r['samples'] for r in recs)} | {len(recs)} | "
                         f"{_fmt_bytes(sum(r['bytes'] for r in recs))} | "
                         f"{sum(len(r.get('rejected', [])) for r in recs)} |")
    lines.append("")
    for group in _config_groups(manifest):
        lines += _section(manifest, group, builders.get(group[0]), Path(folder))
    lines += [f"vidalign {__version__}, format {FORMAT_VERSION}. Every shard's sha256 is in `manifest.json`; "
              "check them with `vidalign verify <folder>`.", ""]
    licenses = sorted({b.license for b in builders.values()}) or ["apache-2.0"]
    lines += ["## License", "", ", ".join(licenses), ""]
    for b in {id(b): b for b in builders.values()}.values():
        if b.license == "other" and b.license_link:
            lines += [f"`{b.name}`: {b.license_name or 'see'} — {b.license_link}", ""]
    cites = list(dict.fromkeys(b.citation.strip() for b in builders.values() if b.citation))
    if cites:
        lines += ["## Citation", "", "```bibtex", *cites, "```", ""]
    return scrub_paths("\n".join(lines), folder)


def write_card(folder: Path, manifest: dict, builders: dict) -> Path:
    from vidalign.hub import portable_text
    from vidalign.manifest import write_atomic

    path = Path(folder) / CARD_NAME
    # the card is public on the Hub: no local absolute paths (commands, inputs) in it
    write_atomic(path, portable_text(card_text(manifest, builders, Path(folder)), folder))
    return path
