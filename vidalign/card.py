"""The dataset card (``README.md``): the YAML that makes a folder a Hub dataset, and the prose a person reads.

The YAML header lists ``configs`` (data files per config and split — the same glob ``load_dataset`` resolves on
the Hub and locally) and ``dataset_info`` (features with dtypes and shapes, so arrays load as arrays).
"""

from __future__ import annotations

from pathlib import Path

import yaml

from vidalign import __version__
from vidalign import features as feats
from vidalign.format import CARD_NAME, FORMAT_VERSION, split_glob


def config_schema(entry: dict) -> dict[str, dict]:
    return feats.merge_all([rec["schema"] for _, rec in sorted(entry["shards"].items())])


def card_yaml(manifest: dict, builders: dict) -> dict:
    configs, infos, licenses, tags = [], [], set(), {"vidalign", "webdataset"}
    for config, entry in sorted(manifest["configs"].items()):
        if not entry["complete"]:
            continue
        configs.append({"config_name": config,
                        "data_files": [{"split": s, "path": split_glob(config, s)} for s in sorted(entry["splits"])]})
        splits = []
        for s in sorted(entry["splits"]):
            recs = [r for p, r in entry["shards"].items() if Path(p).name.startswith(s + "-")]
            # num_bytes: the shards' size on disk (datasets checks num_examples only)
            splits.append({"name": s, "num_bytes": sum(r["bytes"] for r in recs),
                           "num_examples": sum(r["samples"] for r in recs)})
        infos.append({"config_name": config, "features": feats.features_yaml(config_schema(entry)),
                      "splits": splits})
        b = builders.get(entry["builder"])
        if b is not None:
            licenses.add(b.license)
            tags.update(b.tags)
    out: dict = {}
    if licenses:
        out["license"] = sorted(licenses)[0] if len(licenses) == 1 else sorted(licenses)
    out["tags"] = sorted(tags)
    out["configs"] = configs
    out["dataset_info"] = infos
    return out


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000
    return f"{n} B"


def card_text(manifest: dict, builders: dict, folder: Path) -> str:
    head = yaml.safe_dump(card_yaml(manifest, builders), sort_keys=False, allow_unicode=True, width=120)
    lines = ["---", head.rstrip(), "---", ""]
    names = sorted({e["builder"] for e in manifest["configs"].values()})
    lines += [f"# vidalign dataset: {', '.join(names)}", ""]
    for b in builders.values():
        if b.description:
            lines += [b.description.strip(), ""]
    lines += ["## Loading", "", "```python", "import datasets",
              f"ds = datasets.load_dataset(\"<this repo or folder>\", \"{sorted(manifest['configs'])[0]}\")",
              "ds = ds.with_format(\"numpy\")            # arrays come back as numpy arrays of the declared shape",
              "# streaming: datasets.load_dataset(..., streaming=True); training: vidalign.data.stream(folder, ...)",
              "```", "", "## Contents", "",
              "| config | split | samples | shards | size | rejected |", "|---|---|---|---|---|---|"]
    for config, entry in sorted(manifest["configs"].items()):
        for split in sorted(entry["splits"]):
            recs = [r for p, r in entry["shards"].items() if Path(p).name.startswith(split + "-")]
            lines.append(f"| {config} | {split} | {sum(r['samples'] for r in recs)} | {len(recs)} | "
                         f"{_fmt_bytes(sum(r['bytes'] for r in recs))} | "
                         f"{sum(len(r.get('rejected', [])) for r in recs)} |")
    lines += ["", "## Features", ""]
    for config, entry in sorted(manifest["configs"].items()):
        lines += [f"Config `{config}`:", "", "| member | type |", "|---|---|"]
        for member, summ in config_schema(entry).items():
            lines.append(f"| `{member}` | {feats.describe(summ)} |")
        lines.append("")
    lines += ["## How it was built", ""]
    for config, entry in sorted(manifest["configs"].items()):
        lines += [f"Config `{config}` (builder `{entry['builder']}`, seed {entry.get('seed', 0)}):", "",
                  "```bash", entry.get("command") or "(built through the Python API)", "```", ""]
        if entry.get("rejected"):
            lines += [f"{len(entry['rejected'])} inputs were rejected (listed in `manifest.json`):", ""]
            lines += [f"- `{r['input']}`: {r['reason']}" for r in entry["rejected"][:20]]
            if len(entry["rejected"]) > 20:
                lines.append(f"- … and {len(entry['rejected']) - 20} more")
            lines.append("")
    lines += [f"vidalign {__version__}, format {FORMAT_VERSION}. Every shard's sha256 is in `manifest.json`; "
              "check them with `vidalign verify <folder>`.", ""]
    for b in builders.values():
        extra = b.card_body(manifest, folder)
        if extra:
            lines += [extra.strip(), ""]
    lines += ["## License", "", ", ".join(sorted({b.license for b in builders.values()})) or "apache-2.0", ""]
    cites = [b.citation.strip() for b in builders.values() if b.citation]
    if cites:
        lines += ["## Citation", "", "```bibtex", *cites, "```", ""]
    return "\n".join(lines)


def write_card(folder: Path, manifest: dict, builders: dict) -> Path:
    from vidalign.hub import portable_text
    from vidalign.manifest import write_atomic

    path = Path(folder) / CARD_NAME
    # the card is public on the Hub: no local absolute paths (commands, inputs) in it
    write_atomic(path, portable_text(card_text(manifest, builders, Path(folder)), folder))
    return path
