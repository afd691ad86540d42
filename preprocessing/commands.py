"""Preprocessing commands: ``encode`` (videos → latents), ``decode-latents`` (latents → mp4 to look at) and
``generate`` (prompts → candidate videos).

``encode`` and ``generate`` are builders (``latents``, ``candidates``) run through :func:`run_ranked`: resumable,
and split over ranks when launched with ``torchrun --nproc_per_node N`` or ``accelerate launch``.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

BUILD_FLAGS = ("out", "seed", "on_error", "resume", "overwrite", "progress", "shard_index", "num_shards")


def _add_build_flags(parser, extra: tuple[str, ...] = ()) -> None:
    from vidalign.builder import BuildOptions, add_dataclass_arguments

    skip = tuple(f.name for f in dataclasses.fields(BuildOptions) if f.name not in BUILD_FLAGS + extra)
    add_dataclass_arguments(parser.add_argument_group("build options"), BuildOptions, skip=skip)


def register(sub, groups) -> None:
    from vidalign.builder import add_dataclass_arguments
    from vidalign.preprocessing.encode import LatentsBuilder
    from vidalign.preprocessing.generate import CandidatesBuilder

    p = sub.add_parser("encode", help="encode the videos of a dataset into VAE latents (+ prompt embeddings)",
                       description=LatentsBuilder.description + " Run on N GPUs with torchrun --nproc_per_node N "
                       "-m vidalign.cli encode ... (each rank takes whole shards).")
    p.add_argument("in_dir", metavar="IN_DIR", help="input dataset folder (vidalign video shards)")
    add_dataclass_arguments(p.add_argument_group("encode options"), LatentsBuilder.Args, skip=("in_dir",))
    _add_build_flags(p)
    p.set_defaults(func=cmd_encode)

    p = sub.add_parser("decode-latents", help="decode a few stored latents back to mp4 to look at them")
    p.add_argument("in_dir", metavar="IN_DIR", help="latent dataset folder (written by vidalign encode)")
    p.add_argument("--out", required=True, help="folder for the mp4 files")
    p.add_argument("--num", type=int, default=4, help="samples to decode (default: 4)")
    p.add_argument("--config", default=None, help="config of the dataset (default: its only one)")
    p.add_argument("--split", default="train", help="split (default: train)")
    p.add_argument("--vae", default=None, help="VAE to decode with (default: the one recorded in each json)")
    p.add_argument("--subfolder", default="auto", help="VAE subfolder (default: auto)")
    p.add_argument("--dtype", default="fp32", choices=["bf16", "fp16", "fp32"], help="VAE dtype (default: fp32)")
    p.add_argument("--device", default=None, help="device (default: cuda if available, else cpu)")
    p.set_defaults(func=cmd_decode_latents)

    p = sub.add_parser("generate", help="generate N candidate videos per prompt with a text-to-video pipeline",
                       description=CandidatesBuilder.description + " Run on N GPUs with torchrun "
                       "--nproc_per_node N -m vidalign.cli generate ... (each rank takes whole shards).")
    p.add_argument("prompts", metavar="PROMPTS", help=CandidatesBuilder.Args.__dataclass_fields__["prompts"]
                   .metadata["help"])
    add_dataclass_arguments(p.add_argument_group("generation options"), CandidatesBuilder.Args, skip=("prompts",))
    _add_build_flags(p, extra=("samples_per_shard",))
    p.set_defaults(func=cmd_generate)


def _split_namespace(args: argparse.Namespace, builder_args: type) -> tuple[dict, object]:
    from vidalign.builder import BuildOptions

    ns = vars(args)
    opts = BuildOptions(**{f.name: ns[f.name] for f in dataclasses.fields(BuildOptions) if f.name in ns})
    bargs = {f.name: ns[f.name] for f in dataclasses.fields(builder_args) if f.name in ns}
    return bargs, opts


def _report(name: str, manifest: dict, out: Path) -> None:
    from vidalign.preprocessing.launch import dist_env

    rank, world, _ = dist_env()
    s = manifest["_summary"]
    who = f"rank {rank}/{world}: " if world > 1 else ""
    print(f"{who}{name}: {s['built_shards']} shard(s) built, {s['skipped_shards']} already done, {s['samples']} "
          f"samples, {s['rejected']} rejected in {s['seconds']} s → {out}")
    if rank == 0:
        rejected = sum(len(e["rejected"]) for e in manifest["configs"].values())
        if rejected:
            print(f"{rejected} rejected input(s) are listed in {out / 'manifest.json'}")


def cmd_encode(args) -> int:
    from vidalign.builder import command_line
    from vidalign.errors import ConfigError
    from vidalign.preprocessing import latents as lat
    from vidalign.preprocessing.encode import LatentsBuilder
    from vidalign.preprocessing.launch import run_ranked

    bargs, opts = _split_namespace(args, LatentsBuilder.Args)
    if Path(bargs["in_dir"]).resolve() == opts.out.resolve():
        raise ConfigError(f"--out {opts.out} is the input folder; write the latents to another folder")
    # a missing model folder is one line now, not after the shard plan and the progress bars
    lat.resolve_model("--vae", bargs["vae"], bargs["subfolder"], "vae")
    if bargs["text_encoder"] is not None:
        lat.resolve_model("--text-encoder", bargs["text_encoder"], bargs["text_subfolder"], "text_encoder")
    _report("encode", run_ranked("latents", bargs, opts, command_line()), opts.out)
    return 0


def cmd_generate(args) -> int:
    from vidalign.builder import command_line
    from vidalign.preprocessing.generate import CandidatesBuilder, check_pipeline_path
    from vidalign.preprocessing.launch import run_ranked

    bargs, opts = _split_namespace(args, CandidatesBuilder.Args)
    check_pipeline_path(bargs["model"])
    if opts.samples_per_shard is None:  # small shards: a resumed GPU run loses at most a few prompts of work
        opts = dataclasses.replace(opts, samples_per_shard=8 * bargs["num_candidates"])
    _report("generate", run_ranked("candidates", bargs, opts, command_line()), opts.out)
    return 0


def cmd_decode_latents(args) -> int:
    from vidalign.data import stream
    from vidalign.errors import ConfigError
    from vidalign.media import encode_mp4
    from vidalign.preprocessing import latents as lat
    from vidalign.preprocessing.launch import default_device

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = args.device or default_device(0)
    vaes: dict[str, object] = {}
    written = []
    for n, sample in enumerate(stream(args.in_dir, args.config, args.split, rank=0, world_size=1)):
        if n >= args.num:
            break
        meta = (sample.get("json") or {}).get("latents") or {}
        vae_id = args.vae or meta.get("vae")
        if not vae_id:
            raise ConfigError(f"{sample['__url__']}:{sample['__key__']}: json has no latents.vae; pass --vae")
        if vae_id not in vaes:
            vaes[vae_id] = lat.load_vae(vae_id, args.subfolder, args.dtype, meta.get("revision"),
                                        meta.get("vae_class"), device)
        for member in sorted(m for m in sample if m.endswith("latents.npy")):
            frames = lat.decode_latents(vaes[vae_id], sample[member])
            path = out / f"{sample['__key__']}.{member[:-len('.npy')]}.mp4"
            path.write_bytes(encode_mp4(frames, float(meta.get("fps") or 16.0)))
            written.append(path)
    for path in written:
        print(f"  {path}")
    print(f"decode-latents: wrote {len(written)} video(s) to {out}")
    return 0
