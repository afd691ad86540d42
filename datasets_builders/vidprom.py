"""VideoDPO's data from VidProM prompts: prompt selection, OmniScore of candidates, and weighted pairs (SPEC §2).

The authors took the first 10,000 rows of VidProM's ``train`` unfiltered, so NSFW, non-English and
HTML-escaped prompts got in; the defaults here reproduce that (``sample="head"``, no filters) and every filter
is an option whose effect is counted for the card. Candidates come from ``vidalign generate`` (N per prompt),
are scored with VBench outside vidalign, and their ``{dim}_eval_results.json`` files become OmniScores through
:mod:`vidalign.eval.omniscore`. VBench's ``video_path`` is matched to a candidate by its file stem: the sample
key, ``<prompt_id>-<candidate>`` or VBench's own ``<prompt>-<candidate>`` naming.
"""

from __future__ import annotations

import dataclasses
import html
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Literal

import numpy as np

from vidalign import contract as C
from vidalign.builder import Builder, Rejected, Sample, register_builder
from vidalign.datasets_builders.pairs import (
    VIDEO_CHECKS,
    VIDEODPO_CITATION,
    CandidateIndex,
    ScoredPair,
    WeightConfig,
    cached_state,
    candidate_shards,
    drop_smallest_gaps,
    is_score,
    materialise,
    mean_mb,
    pair_weights,
    parse_rank_pairs,
    plan_items,
    ranked_pairs,
    split_by_mean,
    stable_seed,
    video_ref,
)
from vidalign.datasets_builders.plots import (
    gap_histogram_png,
    rule_counts_markdown,
    rule_counts_png,
    score_histogram_png,
)
from vidalign.errors import InputError, VidalignError, require
from vidalign.eval.omniscore import OmniScoreConfig, omniscore, read_vbench, resolve_config
from vidalign.format import PREVIEWS_DIR

NSFW_COLUMNS = ("toxicity", "obscene", "identity_attack", "insult", "threat", "sexual_explicit")
SAMPLE_MODES = ("head", "random")
HTML_MODES = ("keep", "unescape", "drop")
_ENTITY_RE = re.compile(r"&(#\d+|#x[0-9a-fA-F]+|[A-Za-z]+);")


# ------------------------------------------------------------------------------------------ prompt tables
def read_prompt_table(source: str, split: str = "train"):
    """A pandas DataFrame from a local Parquet/CSV/JSON(L) file, a Hub dataset id in VidProM's schema, or a local
    folder laid out as a Hub dataset (read by ``datasets.load_dataset`` exactly as the Hub id would be)."""
    import pandas as pd

    path = Path(source).expanduser()
    if path.is_file():
        suffix = path.suffix.lower()
        try:
            if suffix == ".parquet":
                return pd.read_parquet(path)
            if suffix in (".csv", ".tsv"):
                return pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",", keep_default_na=False,
                                   na_values={c: ["", "NaN", "nan"] for c in NSFW_COLUMNS})
            if suffix == ".jsonl":
                return pd.read_json(path, lines=True, dtype=False)
            if suffix == ".json":
                from vidalign.inputs import read_json

                return pd.DataFrame(json_prompt_rows(read_json(path, "prompt file"), path))
        except (ValueError, UnicodeDecodeError, OSError, MemoryError) as exc:
            if isinstance(exc, InputError):
                raise
            raise InputError(path, None, f"cannot be read as {suffix[1:]} ({type(exc).__name__}: {exc})",
                             "pass a valid Parquet, CSV or JSON(L) file") from None
        raise InputError(path, None, f"unknown file type {suffix!r}", "use .parquet, .csv, .json or .jsonl")
    if not path.is_dir() and (path.exists() or str(source).startswith((".", "/", "~")) or str(source).count("/") != 1):
        raise InputError(source, None, "prompt file not found (and not a Hub dataset id OWNER/NAME)",
                         "pass a local .parquet/.csv/.json(l) file or a Hub id such as WenhaoWang/VidProM")
    import datasets

    try:  # a Hub id, or a local folder laid out as a Hub dataset repository (e.g. a downloaded snapshot)
        ds = datasets.load_dataset(str(path) if path.is_dir() else str(source), split=split)
    except Exception as exc:  # network, missing repo, bad split: one line for the user
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise InputError(source, "split" if "split" in first.lower() else None,
                         f"cannot load the Hub dataset ({type(exc).__name__}: {first})",
                         "check the id, the split and the network, or download the CSV and pass its path") from None
    return ds.to_pandas()


def json_prompt_rows(data, source) -> list[dict]:
    """Rows of a JSON prompt file: a list of rows or prompts, ``{"prompts": [...]}`` (or ``"data"``), or VideoDPO's
    ``{"000000.mp4": prompt}`` (``prompts/vidpro-100-dict.json``), whose keys become ``prompt_id`` (``000000``:
    the file name their scripts and VBench fork give the video); a ``{"000000.mp4": prompt}`` row inside
    ``"prompts"`` reads the same way."""
    if isinstance(data, dict) and not {"prompts", "data", "prompt"} & set(data):
        if data and all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
            return [{"prompt_id": PurePosixPath(k).stem, "prompt": v} for k, v in data.items()]
    rows = data.get("prompts", data.get("data")) if isinstance(data, dict) else data
    if not isinstance(rows, list):
        raise InputError(source, None, 'expected a list of rows, {"prompts": [...]} or {"000000.mp4": prompt}',
                         'write a JSON list of {"prompt": ...} objects, or use JSONL')
    out = []
    for r in rows:
        if isinstance(r, dict) and "prompt" not in r and len(r) == 1 and isinstance(next(iter(r.values())), str):
            (k, v), = r.items()
            r = {"prompt_id": PurePosixPath(str(k)).stem, "prompt": v}
        out.append(r if isinstance(r, dict) else {"prompt": r})
    return out


# ------------------------------------------------------------------------------------------ filters
@dataclass(frozen=True)
class PromptSelection:
    """Which prompts of the table are used; the defaults are the authors' (first ``n`` rows, no filter)."""

    n: int = 10000
    sample: str = "head"
    seed: int = 0
    prompt_column: str = "prompt"
    id_column: str = "uuid"
    dedupe: bool = False
    min_words: int = 0
    max_words: int | None = None
    english_ratio: float | None = None
    nsfw_max: float | None = None
    html: str = "keep"

    def __post_init__(self) -> None:
        own = "PromptSelection"
        require(isinstance(self.n, int) and self.n >= 1, own, "n", self.n, "give a positive number of prompts")
        require(self.sample in SAMPLE_MODES, own, "sample", self.sample, f"use one of {', '.join(SAMPLE_MODES)}")
        require(isinstance(self.min_words, int) and self.min_words >= 0, own, "min_words", self.min_words,
                "give a non-negative word count")
        require(self.max_words is None or self.max_words >= max(1, self.min_words), own, "max_words",
                self.max_words, "give a word count ≥ min_words, or leave it unset")
        require(self.english_ratio is None or (is_score(self.english_ratio) and 0 < self.english_ratio <= 1),
                own, "english_ratio", self.english_ratio, "give the minimum share of ASCII letters in (0, 1], e.g. 0.9")
        require(self.nsfw_max is None or (is_score(self.nsfw_max) and 0 <= self.nsfw_max <= 1), own, "nsfw_max",
                self.nsfw_max, "give the highest NSFW probability kept, in [0, 1]")
        require(self.html in HTML_MODES, own, "html", self.html, f"use one of {', '.join(HTML_MODES)}")


def ascii_letter_ratio(text: str) -> float:
    """Share of ASCII letters among all letters (0 for text without letters): a cheap English heuristic."""
    letters = [c for c in text if c.isalpha()]
    return sum(c.isascii() for c in letters) / len(letters) if letters else 0.0


def normalise_prompt(text: str) -> str:
    """The dedupe key: HTML entities resolved, case folded, whitespace collapsed."""
    return " ".join(html.unescape(text).casefold().split())


def select_prompts(df, sel: PromptSelection, source: str = "prompts", on_error: str = "raise"
                   ) -> tuple[list[dict], dict[str, int], list[dict]]:
    """(records, counts, rejected): the chosen prompts ``{prompt_id, prompt, row, nsfw}`` in table order,
    how many prompts each rule dropped (``kept`` last), and duplicate-id rows skipped under ``on_error=skip``.

    ``head`` stops at the n-th prompt that passes (rows after it count as "not sampled"); ``random`` filters the
    whole table, then draws n with the seed and keeps table order.
    """
    if sel.prompt_column not in df.columns:
        raise InputError(source, sel.prompt_column, f"column missing (columns: {', '.join(map(str, df.columns))})",
                         "pass --prompt-column naming the prompt text column")
    counts: dict[str, int] = {"rows": int(len(df))}
    prompts = df[sel.prompt_column]
    id_col = sel.id_column if sel.id_column in df.columns else ("prompt_id" if "prompt_id" in df.columns else None)
    ids = df[id_col] if id_col is not None else None
    nsfw_cols = [c for c in NSFW_COLUMNS if c in df.columns]
    nsfw = df[nsfw_cols].apply(lambda col: _numeric(col)).max(axis=1, skipna=True).to_numpy() \
        if nsfw_cols else np.full(len(df), np.nan)
    rows: list[dict] = []
    rejected: list[dict] = []
    first_row: dict[str, int] = {}
    dropped = {"empty": 0, "html": 0, "length": 0, "language": 0, "nsfw": 0, "duplicate_text": 0}
    seen_text: set[str] = set()
    examined = 0
    for i, raw in enumerate(prompts.tolist()):
        if sel.sample == "head" and len(rows) == sel.n:
            break  # the first n that pass: rows after them are never looked at (nor counted)
        examined += 1
        text = raw.strip() if isinstance(raw, str) else ""
        if not text:
            dropped["empty"] += 1
            continue
        if sel.html != "keep" and _ENTITY_RE.search(text):
            if sel.html == "drop":
                dropped["html"] += 1
                continue
            text = html.unescape(text).strip()
        words = len(text.split())
        if words < sel.min_words or (sel.max_words is not None and words > sel.max_words):
            dropped["length"] += 1
            continue
        if sel.english_ratio is not None and ascii_letter_ratio(text) < sel.english_ratio:
            dropped["language"] += 1
            continue
        score = float(nsfw[i]) if math.isfinite(nsfw[i]) else None
        if sel.nsfw_max is not None and score is not None and score > sel.nsfw_max:
            dropped["nsfw"] += 1
            continue
        if sel.dedupe:
            key = normalise_prompt(text)
            if key in seen_text:
                dropped["duplicate_text"] += 1
                continue
            seen_text.add(key)
        pid = ids.iloc[i] if ids is not None else None
        pid = f"vidprom-{i:07d}" if pid is None or (isinstance(pid, float) and math.isnan(pid)) or str(pid) == "" \
            else str(pid)
        if pid in first_row:
            exc = InputError(f"{source}:row {i}", sel.id_column, f"prompt id {pid!r} repeats row {first_row[pid]}",
                             "make the ids unique or skip duplicates with --on-error skip")
            if on_error != "skip":
                raise exc
            rejected.append({"input": exc.source, "reason": exc.reason})
            continue
        first_row[pid] = i
        rows.append({"prompt_id": pid, "prompt": text, "row": i, "nsfw": score})
    counts.update({f"dropped: {k}": v for k, v in dropped.items()})
    counts["dropped: duplicate id"] = len(rejected)
    if sel.sample == "random" and len(rows) > sel.n:
        rng = np.random.default_rng(stable_seed(sel.seed, "vidprom-sample"))
        keep = np.sort(rng.choice(len(rows), size=sel.n, replace=False))
        chosen = [rows[j] for j in keep]
    else:
        chosen = rows[:sel.n]
    counts["not sampled"] = len(rows) - len(chosen) + (len(df) - examined)
    counts["kept"] = len(chosen)
    if not chosen:
        raise InputError(source, sel.prompt_column, "no prompt passes the filters",
                         "loosen the filters (see the counts) or check the prompt column")
    return chosen, counts, rejected


def _numeric(col):
    import pandas as pd

    return pd.to_numeric(col, errors="coerce")


# ------------------------------------------------------------------------------------------ VBench
def read_vbench_scores(folder: str | Path, config: OmniScoreConfig = OmniScoreConfig(), on_error: str = "raise"
                       ) -> tuple[dict[str, dict], list[dict]]:
    """``{video: {"omniscore", "quality", "semantic", "raw": {dim: value}, "subject_consistency": "sum"|"mean"}}``
    and the videos rejected. Videos are named as :func:`~vidalign.eval.omniscore.read_vbench` names them
    (``video_path``, or ``<candidate>/<file>`` for the VideoDPO fork's files).

    A missing or malformed dimension file is always an error. A video whose value is NaN/not a number in some
    file, or that is missing from some file, is refused naming the file and field, or (``on_error=skip``) left
    out and listed. subject_consistency's convention is stated in ``config`` or detected over all videos.
    """
    bad: dict[str, dict] = {}

    def on_bad(video: str, exc: InputError) -> None:
        if on_error != "skip":
            raise exc
        bad.setdefault(video, {"input": exc.source, "reason": exc.reason})

    raws = read_vbench(folder, on_bad=on_bad)
    config, _ = resolve_config(raws, config, str(Path(folder) / "subject_consistency"))
    return ({video: {**omniscore(raw, config), "raw": raw, "subject_consistency": config.subject_consistency}
             for video, raw in raws.items()}, list(bad.values()))


def fork_candidate(name: str) -> tuple[str, int] | None:
    """``(prompt index, candidate)`` of a VideoDPO-fork video ``<candidate folder>/<prompt index>.mp4``: folder
    ``01`` is the first candidate (index 0)."""
    m = re.fullmatch(r"(?:.*/)?(\d+)/([^/]+?)(?:\.mp4)?", str(name).replace("\\", "/"))
    if m is None or int(m.group(1)) < 1:
        return None
    return m.group(2), int(m.group(1)) - 1


# ================================================================================================ builders
@register_builder
class VidpromPromptsBuilder(Builder):
    """``vidprom-prompts``: VidProM prompts, sampled and filtered, as a ``prompts`` config for ``vidalign generate``."""

    name = "vidprom-prompts"
    input_args = ("source",)
    description = ("Text-to-video prompts from VidProM (or any table in its schema), as VideoDPO used them: the "
                   "first N rows by default, with optional seeded sampling, dedupe, length, language and NSFW filters.")
    license = "cc-by-nc-4.0"
    citation = VIDEODPO_CITATION
    tags = ["vidprom", "videodpo", "prompts", "text-to-video"]
    task_categories = ["text-to-video"]
    tabular = True  # one Parquet row per prompt, every field a column
    sample_mb = 0.001

    @dataclass
    class Args:
        source: str = field(metadata={"help": "local .parquet/.csv/.json(l) file or a Hub dataset id (VidProM schema)"})
        source_split: str = field(default="train", metadata={"help": "split of a Hub dataset"})
        n: int = field(default=10000, metadata={"help": "prompts to keep"})
        sample: Literal["head", "random"] = field(default="head", metadata={
            "help": "first n rows that pass the filters (the authors'), or n at random (seeded by --seed)"})
        prompt_column: str = field(default="prompt", metadata={"help": "column with the prompt text"})
        id_column: str = field(default="uuid", metadata={"help": "column with the prompt id (row number if absent)"})
        dedupe: bool = field(default=False, metadata={"help": "drop repeated prompts (case/space/HTML-insensitive)"})
        min_words: int = field(default=0, metadata={"help": "drop prompts with fewer words"})
        max_words: int | None = field(default=None, metadata={"help": "drop prompts with more words"})
        english_ratio: float | None = field(default=None, metadata={
            "help": "drop prompts whose share of ASCII letters is below this (e.g. 0.9)"})
        nsfw_max: float | None = field(default=None, metadata={
            "help": "drop prompts whose highest NSFW probability exceeds this (when the columns exist)"})
        html: Literal["keep", "unescape", "drop"] = field(default="keep", metadata={
            "help": "prompts with HTML entities (&amp; ...): keep as is, unescape, or drop"})
        split: str = field(default="train", metadata={"help": "output split name"})

        def __post_init__(self):
            self.selection(0)

        def selection(self, seed: int) -> PromptSelection:
            return PromptSelection(n=self.n, sample=self.sample, seed=seed, prompt_column=self.prompt_column,
                                   id_column=self.id_column, dedupe=self.dedupe, min_words=self.min_words,
                                   max_words=self.max_words, english_ratio=self.english_ratio,
                                   nsfw_max=self.nsfw_max, html=self.html)

    def _select(self, for_card: bool = False) -> tuple[list[dict], dict[str, int], list[dict]]:
        def compute():
            df = read_prompt_table(self.args.source, self.args.source_split)
            return select_prompts(df, self.args.selection(self.seed), self.args.source, self.on_error)

        return cached_state(self, compute, for_card)

    def plan(self):
        rows, _, rejected = self._select()
        jobs = self.split_range("prompts", self.args.split, len(rows))
        out = []
        for j in jobs:
            params = {"rows": rows[j.start:j.stop]}
            if j.index == 0 and rejected:
                params["rejected"] = rejected
            out.append(dataclasses.replace(j, params=params))
        return out

    def build_shard(self, job):
        for r in job.params.get("rejected", ()):
            yield Rejected(input=r["input"], reason=r["reason"])
        for offset, row in enumerate(job.params["rows"]):
            yield Sample(self.key(job.start + offset), {"json": row})

    def finalize(self, folder: Path, manifest: dict) -> None:
        rows, counts, _ = self._select(for_card=True)
        previews = Path(folder) / PREVIEWS_DIR
        previews.mkdir(parents=True, exist_ok=True)
        (previews / "vidprom_rules.png").write_bytes(rule_counts_png(_rule_view(counts), "VidProM prompts by rule"))
        with (Path(folder) / "prompts.jsonl").open("w", encoding="utf-8") as fh:
            for r in rows:
                fh.write(json.dumps({"prompt_id": r["prompt_id"], "prompt": r["prompt"]}, ensure_ascii=False) + "\n")

    def card_body(self, manifest: dict, folder: Path) -> str:
        _, counts, _ = self._select(for_card=True)
        return "\n".join(["## Prompt selection", "",
                          f"From `{self.args.source}` ({counts['rows']} rows), sampling `{self.args.sample}`. "
                          "`prompts.jsonl` lists the kept prompts for `vidalign generate`.", "",
                          f"![prompts by rule]({PREVIEWS_DIR}/vidprom_rules.png)", "",
                          rule_counts_markdown(counts), ""])


def _rule_view(counts: dict[str, int]) -> dict[str, int]:
    return {k: v for k, v in counts.items() if k != "rows" and (v or k == "kept")}


@register_builder
class VidpromPairsBuilder(Builder):
    """``vidprom-pairs``: candidates + VBench results → OmniScore → weighted (winner, loser) pairs (config ``pairs``)."""

    name = "vidprom-pairs"
    input_args = ("candidates", "vbench")
    description = ("VideoDPO preference pairs: each prompt's candidate videos scored with OmniScore (seven VBench "
                   "dimensions), paired best vs worst by default, with the pair weight of the paper's "
                   "re-weighting stored per pair.")
    license = "cc-by-nc-4.0"
    citation = VIDEODPO_CITATION
    tags = ["videodpo", "vidprom", "preference", "dpo", "text-to-video"]
    task_categories = ["text-to-video"]
    columns = ("prompt.txt", "prompt_id.txt", "chosen_score.json", "rejected_score.json", "gap.json", "weight.json",
               "chosen_seed.json", "rejected_seed.json")

    @dataclass
    class Args:
        candidates: str = field(metadata={"help": "candidate shard folder (vidalign generate), glob or .tar"})
        vbench: str = field(metadata={"help": "folder with VBench's {dim}_eval_results.json, or the VideoDPO fork's "
                                              "{dim}__eval_results.json (videos <candidate 01..N>/<prompt id>.mp4)"})
        candidates_config: str | None = field(default=None, metadata={"help": "config of the candidate folder"})
        candidates_split: str = field(default="train", metadata={"help": "split of the candidate folder"})
        pair_strategy: Literal["best-worst", "ranks", "all-ranks"] = field(default="best-worst", metadata={
            "help": "best vs worst OmniScore (paper default), chosen --ranks, or every rank pair"})
        ranks: str = field(default="0--1", metadata={
            "help": "rank pairs for --pair-strategy ranks: BETTER-WORSE, 0 = best, -1 = worst (e.g. 0-2,0-3,1-2)"})
        gap_filter: float = field(default=0.0, metadata={"help": "drop this percentage of pairs with the smallest gap"})
        mean_filter: bool = field(default=False, metadata={
            "help": "keep only pairs with s_W > mean OmniScore > s_L (the mean of every scored candidate)"})
        weight: Literal["paper", "code", "none"] = field(default="paper", metadata={
            "help": "pair weight: paper (beta / sqrt(p(s_W) p(s_L)))^alpha, code (0.72 / (s_W s_L))^alpha, or 1"})
        alpha: float = field(default=1.0, metadata={"help": "weight exponent (0 = plain DPO)"})
        beta: float | None = field(default=None, metadata={
            "help": "paper weight's beta (default: probability of the most frequent OmniScore bin)"})
        bin_width: float = field(default=0.01, metadata={"help": "OmniScore histogram bin width"})
        num_frames: int = field(default=16, metadata={"help": "frames VBench's subject_consistency was summed over"})
        subject_consistency: Literal["auto", "sum", "mean"] = field(default="auto", metadata={
            "help": "per-video subject_consistency as VBench wrote it: sum over frame pairs (the VideoDPO fork), "
                    "mean (upstream VBench), or auto (detect)"})
        check_videos: Literal["header", "decode", "none"] = field(default="header", metadata={
            "help": "refuse broken videos: MP4 structure (fast), also decode the first frame, or no check"})
        split: str = field(default="train", metadata={"help": "split name"})

        def __post_init__(self):
            require(is_score(self.gap_filter) and 0 <= self.gap_filter < 100, "vidprom-pairs", "gap_filter",
                    self.gap_filter, "give a percentage in [0, 100)")
            self.rank_pairs()
            self.weight_config()
            self.omniscore_config()
            require(self.check_videos in VIDEO_CHECKS, "vidprom-pairs", "check_videos", self.check_videos,
                    f"use one of {', '.join(VIDEO_CHECKS)}")

        def rank_pairs(self) -> tuple[tuple[int, int], ...]:
            return parse_rank_pairs(self.ranks)

        def omniscore_config(self) -> OmniScoreConfig:
            return OmniScoreConfig(self.num_frames, self.subject_consistency)

        def weight_config(self) -> WeightConfig:
            return WeightConfig(formula=self.weight, alpha=self.alpha, beta=self.beta, bin_width=self.bin_width)

    def estimate_sample_mb(self) -> float:
        return getattr(self, "_sample_mb", 1.0)

    def score(self) -> dict:
        """Candidates → OmniScores → pairs → filters → weights; every decision made before any video is read."""
        a = self.args
        rejected: list[dict] = []
        index = CandidateIndex.scan(candidate_shards(a.candidates, a.candidates_config, a.candidates_split),
                                    self.on_error)
        rejected += index.rejected
        if not len(index):
            raise InputError(a.candidates, None, "no candidates found", "generate candidates first")
        vb, bad = read_vbench_scores(a.vbench, a.omniscore_config(), self.on_error)
        rejected += bad
        score_of: dict[tuple[str, int], dict] = {}
        for video, s in vb.items():
            c = index.lookup(video)
            fork = fork_candidate(video) if c is None else None
            if fork is not None:  # the fork's <candidate 01..N>/<prompt id>.mp4
                c = index.names.get(f"{fork[0]}/{fork[1]}")
            try:
                if c is None:
                    raise InputError(a.vbench, "video_path", f"{video!r} matches no candidate (or several)",
                                     "name the files <prompt_id>-<candidate>.mp4, <sample key>.mp4 or, as the "
                                     "VideoDPO fork, <candidate 01..N>/<prompt_id>.mp4")
                if (c.prompt_id, c.index) in score_of:
                    raise InputError(a.vbench, "video_path", f"{video!r} scores candidate {c.source} a second time",
                                     "evaluate every candidate once")
            except InputError as exc:
                rejected.append(dataclasses.asdict(self.reject(exc)))
                continue
            score_of[(c.prompt_id, c.index)] = s
        counts: dict[str, int] = {"prompts": len(index.by_prompt)}
        ranks, pairs, all_scores = a.rank_pairs(), [], []
        for pid, cands in index.by_prompt.items():
            scores = [score_of.get((pid, c.index), {}).get("omniscore") for c in cands]
            all_scores += [x for x in scores if x is not None]
            chosen = ranked_pairs(scores, a.pair_strategy, ranks)
            if not chosen:
                _bump(counts, "dropped: fewer than 2 scored candidates" if sum(x is not None for x in scores) < 2
                      else "dropped: no rank pair in range")
                continue
            pairs += [ScoredPair(pid, w, lo, scores[w], scores[lo]) for w, lo in chosen]
        if a.gap_filter:
            pairs, dropped = drop_smallest_gaps(pairs, a.gap_filter)
            _count_lost(counts, pairs, dropped, f"dropped: smallest {a.gap_filter:g}% gaps")
        if a.mean_filter and all_scores:
            mean = sum(all_scores) / len(all_scores)
            pairs, dropped = split_by_mean(pairs, mean)
            _count_lost(counts, pairs, dropped, f"dropped: not s_W > mean ({mean:.4f}) > s_L")
        if not pairs:
            raise VidalignError(f"vidprom-pairs: no pair left ({counts}); check the VBench results or the filters")
        counts["kept"] = len({p.prompt_id for p in pairs})
        weights = pair_weights(pairs, all_scores, a.weight_config())
        pairs = [dataclasses.replace(p, weight=w) for p, w in zip(pairs, weights)]
        modes = sorted({sc["subject_consistency"] for sc in score_of.values()})
        return {"index": index, "score_of": score_of, "pairs": pairs, "scores": all_scores, "counts": counts,
                "subject_consistency": modes[0] if len(modes) == 1 else "/".join(modes),
                "rejected": rejected, "sample_mb": 2 * mean_mb(c for v in index.by_prompt.values() for c in v)}

    def _state_(self, for_card: bool = False) -> dict:
        return cached_state(self, self.score, for_card)

    def plan(self):
        s = self._state_()
        self._sample_mb = s["sample_mb"]
        items = [self._item(p, s) for p in s["pairs"]]
        return plan_items(self, "pairs", self.args.split, items, s["rejected"], self.args.check_videos)

    def _item(self, p: ScoredPair, s: dict) -> dict:
        cands = s["index"].by_prompt[p.prompt_id]
        cw, cl = cands[p.winner], cands[p.loser]
        sub = {k: {kk: vv for kk, vv in s["score_of"][(c.prompt_id, c.index)].items() if kk != "omniscore"}
               for k, c in (("chosen", cw), ("rejected", cl))}
        return {"videos": {"chosen.mp4": video_ref(cw), "rejected.mp4": video_ref(cl)},
                "json": C.pair_record(cw.prompt, p.s_w, p.s_l, p.weight, prompt_id=p.prompt_id,
                                      weight_formula=self.args.weight, alpha=self.args.alpha,
                                      chosen_subscores=sub["chosen"], rejected_subscores=sub["rejected"],
                                      chosen_seed=cw.seed, rejected_seed=cl.seed, chosen_candidate=cw.index,
                                      rejected_candidate=cl.index, chosen_key=cw.key, rejected_key=cl.key)}

    def build_shard(self, job):
        yield from materialise(self, job)

    def finalize(self, folder: Path, manifest: dict) -> None:
        s = self._state_(for_card=True)
        previews = Path(folder) / PREVIEWS_DIR
        previews.mkdir(parents=True, exist_ok=True)
        (previews / "omniscore.png").write_bytes(score_histogram_png(s["scores"], "OmniScore", self.args.bin_width))
        (previews / "omniscore_gaps.png").write_bytes(
            gap_histogram_png([p.gap for p in s["pairs"]], "OmniScore", self.args.bin_width))
        (previews / "vidprom_pair_rules.png").write_bytes(
            rule_counts_png(_rule_view(s["counts"]), "prompts kept and dropped"))

    def card_body(self, manifest: dict, folder: Path) -> str:
        s = self._state_(for_card=True)
        w = np.asarray([p.weight for p in s["pairs"]])
        a = self.args
        return "\n".join([
            "## OmniScore and pairs", "",
            f"{len(s['scores'])} scored candidates of {s['counts']['prompts']} prompts; {len(s['pairs'])} pairs "
            f"(strategy `{a.pair_strategy}`{', ranks ' + a.ranks if a.pair_strategy == 'ranks' else ''}, gap filter "
            f"{a.gap_filter:g}%, mean filter {'on' if a.mean_filter else 'off'}). Weights: `{a.weight}`, "
            f"alpha {a.alpha:g}: min {w.min():.3f}, mean {w.mean():.3f}, max {w.max():.3f}. VBench's "
            f"subject_consistency read as a per-video {s['subject_consistency']} ({a.subject_consistency}: "
            f"{'detected' if a.subject_consistency == 'auto' else 'stated'}), brought to the authors' scale "
            f"(÷ {a.num_frames} for a sum over frame pairs).", "",
            f"![OmniScore distribution]({PREVIEWS_DIR}/omniscore.png) "
            f"![winner–loser gap]({PREVIEWS_DIR}/omniscore_gaps.png)", "",
            f"![prompts by rule]({PREVIEWS_DIR}/vidprom_pair_rules.png)", "", rule_counts_markdown(s["counts"]), ""])


def _bump(counts: dict, key: str, n: int = 1) -> None:
    counts[key] = counts.get(key, 0) + n


def _count_lost(counts: dict, kept: list[ScoredPair], dropped: list[ScoredPair], rule: str) -> None:
    """Prompts whose every pair a filter dropped count as dropped by that rule."""
    left = {p.prompt_id for p in kept}
    _bump(counts, rule, len({p.prompt_id for p in dropped} - left))
