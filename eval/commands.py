"""Evaluation commands: ``eval pisa``, ``eval dsr``, ``eval omniscore``, ``segment`` and ``track``.

Scores are pure functions in :mod:`~vidalign.eval.pisa`, :mod:`~vidalign.eval.dsr_score` and
:mod:`~vidalign.eval.omniscore`; these handlers only read inputs, call them, print a table like the
papers' and write the JSON results (NaN written as ``null`` so every JSON reader can load it).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from vidalign.errors import InputError, VidalignError

THRESHOLDS_HELP = "Acc@τ is always reported for τ = 0.0 … 0.9"


def register(sub, groups) -> None:
    ev = groups["eval"]
    p = ev.add_parser("pisa", help="PisaBench L2 / Chamfer / IoU of the dropping object's masks",
                      description="Compare predicted masks with PisaBench ground truth, scored as the authors' "
                                  "eval.py (vision-x-nyu/pisa-experiments): either their metrics config "
                                  "(--config) or a GT folder and a prediction folder paired by clip name.")
    p.add_argument("--config", type=Path, default=None,
                   help="the authors' metrics config JSONL (gt_mask, gt_fps, [gt_annotation], pd_mask, pd_fps per "
                        "line); results come one per line, in order, like their eval.py")
    p.add_argument("--gt", default=None, help="PisaBench folder (clip folders) or vidalign dataset with mask.npz")
    p.add_argument("--pred", default=None, help="masks of the generated videos (as written by `vidalign segment`)")
    p.add_argument("--gt-fps", type=float, default=16.0, help="frame rate of the GT clips (real PisaBench: 120)")
    p.add_argument("--pd-fps", type=float, default=16.0, help="frame rate of the generated videos")
    p.add_argument("--out", type=Path, default=None,
                   help="results: with --config one JSON object per scored video per line (their output_path), "
                        "else one JSON document")
    p.add_argument("--results", type=Path, default=None,
                   help="text file the means are appended to, as their eval.py's results_path")
    p.add_argument("--task-name", default="default_task", help="task name written with the means (their --task_name)")
    p.set_defaults(func=cmd_pisa)

    p = ev.add_parser("dsr", help="DSR-Score and Acc@τ of detection tracks (SpatialAlign)",
                      description="Score detection tracks against the prompt CSV (SpatialAlign's calc_dsr_score.py).")
    p.add_argument("--tracks", required=True, type=Path,
                   help="tracks JSONL (vidalign track); with --allow-pickle also the authors' .pkl files or a folder")
    p.add_argument("--prompts", required=True, type=Path, help="prompt CSV (eval30.csv / eval120.csv schema)")
    p.add_argument("--threshold", type=float, default=0.5, help=f"headline τ for the summary line; {THRESHOLDS_HELP}")
    p.add_argument("--min-frames", type=int, default=20, help="fewer kept frames make a video invalid")
    p.add_argument("--allow-pickle", action="store_true",
                   help="read the authors' track pickles (restricted to numpy arrays and builtins; trusted files only)")
    p.add_argument("--seeds", default="all",
                   help="score only videos whose name carries one of these seeds (..._seed03...): 'authors' = 00-04 as "
                        "calc_dsr_score.py, a range '0-4', a list '0,2', or 'all' (default)")
    p.add_argument("--out", type=Path, default=None, help="results JSON")
    p.set_defaults(func=cmd_dsr)

    p = ev.add_parser("omniscore", help="VideoDPO's OmniScore from VBench per-dimension results",
                      description="Quality, Semantic and OmniScore per video (VideoDPO, arXiv:2412.14167).")
    p.add_argument("--vbench", required=True, type=Path,
                   help="folder with the seven {dim}_eval_results.json (VBench) or {dim}__eval_results.json (the "
                        "VideoDPO fork, one folder per candidate: 01/000000.mp4 ...)")
    p.add_argument("--num-frames", type=int, default=16,
                   help="frames of the scored videos; subject_consistency is divided by it (the authors hard-code 16)")
    p.add_argument("--subject-consistency", choices=["auto", "sum", "mean"], default="auto",
                   help="what VBench wrote per video: sum over frame pairs (the VideoDPO fork), mean (upstream "
                        "VBench), or auto: detect (all values > 1: sum; none: mean)")
    p.add_argument("--out", type=Path, default=None, help="results JSON")
    p.set_defaults(func=cmd_omniscore)

    p = sub.add_parser("segment", help="SAM 2 masks of videos, seeded on frame 0 from PisaBench ground truth",
                       description="Segment generated videos for PisaBench: seed SAM 2 on frame 0 with the GT "
                                   "masks (simulated clips) or GT points (real clips) and propagate. With --points, "
                                   "make the GT masks of real clips from their own clip_info.json points, as the "
                                   "authors' generate_mask.py does (--config reads its mask config).")
    p.add_argument("videos", nargs="?", default=None,
                   help="video file, folder of videos/clip folders, or vidalign dataset with mp4 members")
    p.add_argument("--seed-from", default=None, help="PisaBench GT folder (or dataset with mask.npz) to seed from")
    p.add_argument("--points", action="store_true",
                   help="seed each clip with the positive/negative points of its own clip_info.json (GT masks of "
                        "real PisaBench clips)")
    p.add_argument("--config", type=Path, default=None,
                   help="the authors' mask config JSONL ({video, annotation, mask} per line; implies --points)")
    p.add_argument("--out", type=Path, default=None, help="output folder: <clip>/mask.npz + clip_info.json")
    _model_args(p)
    p.set_defaults(func=cmd_segment)

    p = sub.add_parser("track", help="Grounding DINO + SAM 2 detection tracks for DSR-Score",
                       description="Detect the prompt's animal and object per frame, apply the frame rules, "
                                   "track with SAM 2 and write tracks JSONL (SpatialAlign's detection.py).")
    p.add_argument("videos", help="video file, folder of videos, or vidalign dataset (DSR groups: c0.mp4 ...)")
    p.add_argument("--prompts", required=True, type=Path, help="prompt CSV the videos were generated from")
    p.add_argument("--out", required=True, type=Path, help="tracks JSONL")
    p.add_argument("--detector", default="IDEA-Research/grounding-dino-tiny", help="Grounding DINO Hub id or folder")
    p.add_argument("--box-threshold", type=float, default=0.4)
    p.add_argument("--text-threshold", type=float, default=0.3)
    p.add_argument("--on-error", choices=["raise", "skip"], default="raise",
                   help="stop at the first video that cannot be read or tracked, or skip it (listed in "
                        "OUT.skipped.jsonl; a --resume retries it)")
    p.add_argument("--resume", action="store_true",
                   help="keep the tracks OUT already holds (each video's track is written as it finishes) and "
                        "track only the others")
    p.add_argument("--overwrite", action="store_true", help="start OUT afresh")
    _model_args(p)
    p.set_defaults(func=cmd_track)


def _model_args(p) -> None:
    p.add_argument("--model", default="facebook/sam2.1-hiera-large", help="SAM 2 Hub id or local folder")
    p.add_argument("--segmenter", default="sam2-transformers", help="sam2-transformers (default) or sam2")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1, ...")
    p.add_argument("--dtype", default="auto", help="auto (bf16 on GPU, fp32 on CPU), float32, bfloat16, float16")
    p.add_argument("--batch-size", type=int, default=16, help="frames prepared per batch")


# ------------------------------------------------------------------------------------------------ helpers
def _clean(value):
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def write_json(path: Path | None, data: dict) -> None:
    """Results JSON with NaN as null; nothing when ``path`` is None."""
    if path is None:
        return
    from vidalign.storage import write_error

    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(_clean(data), indent=1, allow_nan=False) + "\n", encoding="utf-8")
    except OSError as exc:
        raise write_error(exc, path, "results file") from None
    print(f"wrote {path}")


def _mean_table(title: str, columns: dict[str, float | None], videos: int, width: int = 8) -> None:
    """The paper-style two-line table: a header of metric names, then the means over ``videos``."""
    print(f"{title:<24}" + "".join(f"{name:>{width}}" for name in columns))
    print(f"{f'mean ({videos} videos)':<24}" + "".join(_fmt(v, width) for v in columns.values()))


def _fmt(v: float | None, width: int = 8) -> str:
    return f"{'n/a':>{width}}" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:>{width}.3f}"


# ------------------------------------------------------------------------------------------------ eval pisa
def cmd_pisa(args) -> int:
    from vidalign.eval.pisa import evaluate, read_clips
    from vidalign.eval.pisa_config import evaluate_config, read_metrics_config, results_line, results_text
    from vidalign.inputs import finite_option

    finite_option(args.gt_fps, "--gt-fps", positive=True)
    finite_option(args.pd_fps, "--pd-fps", positive=True)
    progress = sys.stderr.isatty()
    if args.config is not None:
        if args.gt or args.pred:
            raise VidalignError("eval pisa: give either --config or --gt with --pred, not both")
        result = evaluate_config(read_metrics_config(args.config), progress=progress)
    else:
        if not (args.gt and args.pred):
            raise VidalignError("eval pisa: give --config FILE.jsonl (the authors' metrics config) or --gt and --pred")
        gt = read_clips(args.gt)
        pred = read_clips(args.pred, require_info=False)
        result = evaluate(gt, pred, args.gt_fps, args.pd_fps, str(args.gt), str(args.pred), progress=progress)
    m = result["mean"]
    for d in result["dropped"]:  # the authors' eval.py logs these and skips them
        where = f"line {d['line']}" if "line" in d else d["name"]
        print(f"dropped ({where}): {d['reason']}", file=sys.stderr)
    _mean_table("PisaBench", {"L2↓": m["l2"], "CD↓": m["chamfer"], "IoU↑": m["iou"]}, len(result["videos"]))
    if result["dropped"]:
        print(f"{len(result['dropped'])} video(s) dropped, as the authors' eval.py drops them (listed above); "
              "the means are over the scored videos")
    if args.config is not None and args.out is not None:
        from vidalign.storage import write_error

        try:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            with args.out.open("w", encoding="utf-8") as fh:
                for row in result["videos"]:
                    fh.write(json.dumps(_clean(results_line(row)), allow_nan=False) + "\n")
        except OSError as exc:
            raise write_error(exc, args.out, "results file") from None
        print(f"wrote {args.out}")
    else:
        write_json(args.out, result)
    if args.results is not None:
        args.results.parent.mkdir(parents=True, exist_ok=True)
        with args.results.open("a", encoding="utf-8") as fh:
            fh.write(results_text(args.task_name, m, len(result["videos"]), len(result["dropped"])))
        print(f"appended the means to {args.results}")
    return 0


# ------------------------------------------------------------------------------------------------ eval dsr
def _load_tracks(path: Path, allow_pickle: bool, prompt_ids: list[str]):
    from vidalign.eval.dsr_score import read_tracks, track_from_pickle

    pickles = sorted(path.rglob("*.pkl")) if path.is_dir() else ([path] if path.suffix == ".pkl" else [])
    if not pickles:
        if path.is_dir():
            raise InputError(path, None, "folder holds no .pkl track files", "pass a tracks JSONL file")
        return read_tracks(path)
    if not allow_pickle:
        raise VidalignError(f"{path}: reading pickles needs --allow-pickle (only for files you trust); "
                            "or convert them to tracks JSONL")
    tracks = []
    for p in pickles:
        pid = match_prompt_id(p.relative_to(path).as_posix() if path.is_dir() else p.name, prompt_ids)
        if pid is None:
            raise InputError(p, "prompt_id", "no prompt_id of the CSV matches the file or folder name",
                             "name track files <prompt_id>_<seed>.pkl or put them in <prompt_id>/ folders")
        tracks.append(track_from_pickle(p, p.relative_to(path).as_posix() if path.is_dir() else p.name, pid,
                                        allow_pickle=True))
    return tracks


def match_prompt_id(name: str, prompt_ids: list[str]) -> str | None:
    """The prompt a video belongs to, from its relative path: a folder named by the prompt_id, else the
    longest prompt_id that starts the file name (``1043_TL_seed3.mp4`` → ``1043_TL``)."""
    parts = name.split("/")
    ids = set(prompt_ids)
    for folder in parts[:-1]:
        if folder in ids:
            return folder
    stem = parts[-1].split(".")[0]
    # a prompt_id followed by the end of the name or a separator (so "10_LR" does not match "100_LR_s0")
    hits = [pid for pid in prompt_ids if stem == pid or (stem.startswith(pid) and not stem[len(pid)].isalnum())]
    return max(hits, key=len) if hits else None


def parse_seeds(text: str) -> set[int] | None:
    """``--seeds``: ``all`` → None, ``authors`` → {0..4}, ``0-4`` → a range, ``0,2`` → a list."""
    from vidalign.eval.dsr_score import AUTHORS_SEEDS

    text = str(text).strip().lower()
    if text == "all":
        return None
    if text == "authors":
        return set(AUTHORS_SEEDS)
    try:
        out: set[int] = set()
        for part in text.split(","):
            lo, sep, hi = part.strip().partition("-")
            out.update(range(int(lo), int(hi) + 1) if sep else [int(lo)])
    except ValueError:
        raise VidalignError(f"--seeds {text!r}: write 'all', 'authors', a range such as 0-4 or a list such as 0,2") \
            from None
    if not out:
        raise VidalignError(f"--seeds {text!r} names no seed; write e.g. 0-4")
    return out


def video_seed(name: str, source) -> int:
    """The seed in a video's name, as the authors name them (``<prompt_id>_F81_seed03.mp4``)."""
    import re

    found = re.findall(r"seed[_-]?(\d+)", Path(name).name)
    if not found:
        raise InputError(source, "video", f"{name!r} carries no seed (…_seed03…)",
                         "name videos <prompt_id>_F81_seed<NN>.mp4 as the authors do, or drop --seeds")
    return int(found[-1])


def cmd_dsr(args) -> int:
    from vidalign.eval.dsr_prompts_csv import prompts_by_id, read_prompts_csv
    from vidalign.eval.dsr_score import THRESHOLDS, acc_at, score_tracks
    from vidalign.inputs import finite_option

    finite_option(args.threshold, "--threshold")
    if args.min_frames < 3:
        raise VidalignError(f"--min-frames={args.min_frames} is too small; the score uses the first and last 3 frames")
    prompts = prompts_by_id(read_prompts_csv(args.prompts))
    tracks = _load_tracks(args.tracks, args.allow_pickle, list(prompts))
    if not tracks:
        raise InputError(args.tracks, None, "holds no tracks", "write them with `vidalign track` first")
    seeds = parse_seeds(args.seeds)
    if seeds is not None:
        kept = [t for t in tracks if video_seed(t.video, args.tracks) in seeds]
        print(f"scoring {len(kept)} of {len(tracks)} videos (seeds {', '.join(f'{s:02d}' for s in sorted(seeds))})")
        if not kept:
            raise VidalignError(f"--seeds {args.seeds}: no video of {args.tracks} has one of these seeds")
        tracks = kept
    scores = score_tracks(tracks, prompts, str(args.tracks), args.min_frames)
    result = {"acc": acc_at(scores),
              "videos": [{"video": t.video, "prompt_id": t.prompt_id, "dsr": s} for t, s in zip(tracks, scores)]}
    print(f"{'DSR Acc@τ':<12}" + "".join(f"{t:>6.1f}" for t in THRESHOLDS) + f"{'videos':>8}")
    print(f"{'all':<12}" + "".join(f"{v:>6.3f}" for v in result["acc"].values()) + f"{len(scores):>8}")
    for typ in sorted({prompts[t.prompt_id].type for t in tracks}):
        sub = [s for t, s in zip(tracks, scores) if prompts[t.prompt_id].type == typ]
        print(f"{typ:<12}" + "".join(f"{v:>6.3f}" for v in acc_at(sub).values()) + f"{len(sub):>8}")
    invalid = sum(s is None for s in scores)
    headline = sum(1 for s in scores if s is not None and s >= args.threshold) / len(scores)
    print(f"Acc@{args.threshold:g} = {headline:.3f} over {len(scores)} videos ({invalid} invalid)")
    write_json(args.out, result)
    return 0


# ------------------------------------------------------------------------------------------------ eval omniscore
def cmd_omniscore(args) -> int:
    from vidalign.eval.omniscore import OmniScoreConfig, score_folder

    result = score_folder(args.vbench, OmniScoreConfig(num_frames=args.num_frames,
                                                       subject_consistency=args.subject_consistency))
    sc = result["subject_consistency"]
    print(f"subject_consistency: per-video {sc['mode']} ({sc['decided']}), "
          + (f"÷ {sc['num_frames']}" if sc["mode"] == "sum" else f"× {sc['num_frames'] - 1}/{sc['num_frames']}")
          + " (the authors' scale)")
    m = result["mean"]
    _mean_table("OmniScore", {"Quality": m["quality"], "Semantic": m["semantic"], "Omni": m["omniscore"]},
                len(result["videos"]), width=9)
    write_json(args.out, result)
    return 0


# ------------------------------------------------------------------------------------------------ segment / track
def _segmenter(args):
    from vidalign.eval.segment import SegmenterConfig, build_segmenter, parse_backend

    if args.batch_size < 1:
        raise VidalignError(f"--batch-size={args.batch_size} must be a positive number of frames")
    config = SegmenterConfig(backend=parse_backend(args.segmenter), model=args.model, device=args.device,
                             dtype=args.dtype, batch_size=args.batch_size)
    return build_segmenter(config)


def cmd_segment(args) -> int:
    if args.points or args.config is not None:
        return _segment_from_points(args)
    if args.videos is None or args.seed_from is None or args.out is None:
        raise VidalignError("segment: give VIDEOS --seed-from GT --out OUT (generated videos), or --points / "
                            "--config to make GT masks from clip_info.json points")
    import numpy as np
    from tqdm.auto import tqdm

    from vidalign.eval.pisa import read_clips
    from vidalign.eval.segment import seed_from_clip
    from vidalign.eval.video_inputs import list_videos, resize_frames

    gt = {c.name: c for c in read_clips(args.seed_from)}
    videos = list_videos(args.videos)
    unknown = [v.name for v in videos if v.clip not in gt]
    if unknown:
        raise InputError(args.videos, None, f"{len(unknown)} video(s) match no GT clip in {args.seed_from} "
                         f"(first: {unknown[0]!r})", "name each video after its benchmark clip (file stem or folder)")
    clips = [v.clip for v in videos]
    dupes = sorted({c for c in clips if clips.count(c) > 1})
    if dupes:
        raise InputError(args.videos, None, f"several videos for clip {dupes[0]!r}", "keep one video per clip")
    segmenter = _segmenter(args)
    for item in tqdm(videos, desc="segment", unit="video", disable=not sys.stderr.isatty()):
        clip = gt[item.clip]
        frames, _ = item.load()
        h, w = clip.mask.shape[2:]
        frames = resize_frames(frames, h, w)  # PisaBench scores masks at the GT resolution
        seed = seed_from_clip(clip.mask, clip.info.get("points"))
        masks = segmenter.segment(frames, seed)
        out = args.out / item.clip
        out.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(out / "mask.npz", mask=masks)
        info = {k: v for k, v in clip.info.items() if k in ("prompt", "points")}
        info.update({"video": item.name, "segmenter": args.segmenter, "model": args.model,
                     "seed": "points" if seed.points is not None else "masks"})
        (out / "clip_info.json").write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")
    print(f"segmented {len(videos)} video(s) with {args.model} → {args.out}")
    return 0


def _point_jobs(args) -> list[tuple[str, Path, Path, Path]]:
    """``(name, video, clip_info.json, mask.npz out)`` per clip: from the authors' mask config or a clip folder."""
    from vidalign.eval.video_inputs import list_videos

    jobs = []
    if args.config is not None:
        from vidalign.inputs import iter_jsonl

        if not args.config.is_file():
            raise InputError(args.config, None, "mask config not found", "pass a JSONL of {video, annotation, mask}")
        for where, obj in iter_jsonl(args.config, "mask config"):
            n = where.rsplit(":", 1)[-1]
            if not isinstance(obj, dict) or not all(isinstance(obj.get(k), str) for k in ("video", "annotation", "mask")):
                raise InputError(f"{args.config}:{n}", None, "needs video, annotation and mask paths",
                                 'write {"video": clip folder, "annotation": clip_info.json, "mask": mask.npz}')
            jobs.append((Path(obj["video"]).name, Path(obj["video"]), Path(obj["annotation"]), Path(obj["mask"])))
        return jobs
    if args.videos is None or args.out is None:
        raise VidalignError("segment --points: give the folder of real clips (frames + clip_info.json) and --out")
    for item in list_videos(args.videos):
        if item.path is None:
            raise InputError(item.name, None, "is inside a shard", "pass PisaBench clip folders for --points")
        folder = Path(item.path) if Path(item.path).is_dir() else Path(item.path).parent
        jobs.append((item.clip, Path(item.path), folder / "clip_info.json", args.out / item.clip / "mask.npz"))
    return jobs


def _segment_from_points(args) -> int:
    """GT masks of real clips: SAM 2 seeded on frame 0 with every object's positive and negative points."""
    import shutil

    import numpy as np
    from tqdm.auto import tqdm

    from vidalign.eval.pisa import read_clip_info
    from vidalign.eval.segment import Seed
    from vidalign.eval.video_inputs import VideoItem

    jobs = _point_jobs(args)
    if not jobs:
        raise VidalignError(f"segment --points: no clips found in {args.config or args.videos}")
    segmenter = _segmenter(args)
    failed = []
    for name, video, ann, mask_path in tqdm(jobs, desc="segment", unit="video", disable=not sys.stderr.isatty()):
        try:
            if not ann.is_file():
                raise InputError(ann, None, "clip_info.json not found", "annotate the clip with points first")
            info = read_clip_info(ann)
            points = info.get("points")
            if not isinstance(points, list) or not points:
                raise InputError(ann, "points", f"missing or empty ({points!r})",
                                 'list {"positive": [[x, y]], "negative": [...]} per object')
            if not video.exists():
                raise InputError(video, None, "video not found", "point at the clip's frame folder or movie.mp4")
            frames, _ = VideoItem(name, name, path=str(video)).load()
            masks = segmenter.segment(frames, Seed(frame=0, points=tuple(points)))
        except VidalignError as exc:  # the authors' script logs the clip and goes on
            failed.append((name, str(exc)))
            print(f"failed ({name}): {exc}", file=sys.stderr)
            continue
        mask_path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(mask_path, mask=masks)  # [T, N, H, W]; eval pisa also reads their squeezed [T, H, W]
        if ann.resolve() != (mask_path.parent / "clip_info.json").resolve():
            shutil.copyfile(ann, mask_path.parent / "clip_info.json")
    print(f"segmented {len(jobs) - len(failed)} of {len(jobs)} clip(s) from their points with {args.model}"
          + (f"; {len(failed)} failed (listed above)" if failed else ""))
    return 1 if failed else 0


def _done_tracks(path: Path) -> set[str]:
    """Videos whose track a previous run wrote to ``path`` (a torn last line, from a killed run, is cut off)."""
    from vidalign.eval.dsr_score import parse_track
    from vidalign.inputs import parse_json

    data = path.read_bytes()
    keep = data[: data.rfind(b"\n") + 1]
    if len(keep) != len(data):
        with path.open("r+b") as fh:
            fh.truncate(len(keep))
    done = set()
    for n, line in enumerate(keep.decode("utf-8", "replace").splitlines(), start=1):
        if line.strip():
            done.add(parse_track(parse_json(line, path, n), f"{path}:{n}").video)
    return done


def _append_line(fh, record: dict) -> None:
    import os

    fh.write(json.dumps(record) + "\n")
    fh.flush()
    os.fsync(fh.fileno())


def cmd_track(args) -> int:
    from tqdm.auto import tqdm

    from vidalign.eval.detect import DetectionRules, GroundingDinoDetector, track_video
    from vidalign.eval.dsr_prompts_csv import prompts_by_id, read_prompts_csv
    from vidalign.eval.video_inputs import list_videos
    from vidalign.inputs import finite_option
    from vidalign.storage import write_error

    finite_option(args.box_threshold, "--box-threshold", minimum=0)
    finite_option(args.text_threshold, "--text-threshold", minimum=0)
    prompts = prompts_by_id(read_prompts_csv(args.prompts))
    videos = list_videos(args.videos)
    jobs, skipped = [], []
    for v in videos:
        pid = v.meta.get("prompt_id") if isinstance(v.meta.get("prompt_id"), str) else None
        pid = pid or match_prompt_id(v.name, list(prompts))
        if pid is None or pid not in prompts:
            exc = InputError(v.name, "prompt_id", f"matches no prompt of {args.prompts} (got {pid!r})",
                             "name videos <prompt_id>_<seed>.mp4, put them in <prompt_id>/ folders, "
                             "or pass the dataset whose json has prompt_id")
            if args.on_error == "raise":
                raise exc
            skipped.append({"video": v.name, "reason": str(exc)})
            continue
        jobs.append((v, prompts[pid]))
    out = Path(args.out)
    if out.is_dir():
        raise VidalignError(f"--out {out} is a folder; give the tracks JSONL file to write")
    if out.exists() and not (args.resume or args.overwrite):
        raise VidalignError(f"{out} exists; pass --resume to keep its tracks and track the other videos, or "
                            "--overwrite to start again")
    done = _done_tracks(out) if out.exists() and args.resume else set()
    todo = [(v, p) for v, p in jobs if v.name not in done]
    tracked = rejected = 0
    skipped_path = out.with_name(out.name + ".skipped.jsonl")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fh = out.open("a" if done else "w", encoding="utf-8")
    except OSError as exc:
        raise write_error(exc, out, "tracks file") from None
    with fh:
        if todo:
            rules = DetectionRules(box_threshold=args.box_threshold, text_threshold=args.text_threshold)
            detector = GroundingDinoDetector(args.detector, rules, device=args.device,
                                             dtype="float32" if args.dtype == "auto" else args.dtype)
            segmenter = _segmenter(args)
        for v, prompt in tqdm(todo, desc="track", unit="video", disable=not sys.stderr.isatty()):
            try:
                frames, _ = v.load()
                track = track_video(frames, prompt.animal, prompt.object, detector, segmenter, v.name,
                                    prompt.prompt_id)
            except VidalignError as exc:
                if args.on_error == "raise":
                    raise VidalignError(f"{exc} ({tracked} track(s) written to {out}; fix or drop the video, then "
                                        "rerun with --resume, or use --on-error skip)") from None
                print(f"skipped {v.name}: {exc}", file=sys.stderr)
                skipped.append({"video": v.name, "reason": str(exc)})
                continue
            try:  # each track is on disk as soon as it is made: a crash loses at most the video in progress
                _append_line(fh, track.to_json())
            except OSError as exc:
                raise write_error(exc, out, "tracks file") from None
            tracked += 1
            rejected += not track.frames
    if skipped:
        skipped_path.write_text("".join(json.dumps(r) + "\n" for r in skipped), encoding="utf-8")
    else:
        skipped_path.unlink(missing_ok=True)
    print(f"tracked {tracked} video(s)" + (f" ({len(done)} already in {out})" if done else "")
          + f", {rejected} rejected by the frame rules" + (f", {len(skipped)} skipped (listed in {skipped_path})"
                                                         if skipped else "") + f" → {out}")
    return 0
