"""SpatialAlign's dynamic-spatial-relation (DSR) data: prompts, and candidate groups/pairs labelled by DSR-Score.

Prompts follow the one template of SPEC §1 (``eval/dsr_prompts_csv.py`` renders it and reads/writes the
authors' CSV schema). A prompt is drawn by a seeded pure function of (seed, index): its type comes round-robin
from ``types`` (so every type gets n/len(types) prompts, ±1), then scene, animal, object and verb are drawn
from the vocabulary; a draw that repeats an earlier prompt is redrawn, so prompts are unique and the first
``n`` prompts of a bigger build are the prompts of a smaller one.

Pairs (``dsr-pairs``): the candidate shards of ``vidalign generate`` are indexed (json only), each track of the
tracks JSONL (``vidalign track``) is matched to its candidate (by sample key or ``<prompt_id>/<candidate>``, see
:class:`~vidalign.datasets_builders.pairs.CandidateIndex`) and scored with DSR-Score; a candidate without a
track is invalid. Everything is decided in ``plan()``; shard jobs then only copy mp4 byte ranges.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from vidalign import contract as C
from vidalign.builder import Builder, Sample, register_builder
from vidalign.datasets_builders.pairs import (
    INVALID,
    LOSER,
    VIDEO_CHECKS,
    WINNER,
    CandidateIndex,
    DsrPairConfig,
    cached_state,
    candidate_shards,
    label_by_threshold,
    materialise,
    mean_mb,
    plan_items,
    stable_seed,
    video_ref,
    winner_loser_pairs,
)
from vidalign.datasets_builders.plots import (
    gap_histogram_png,
    rule_counts_markdown,
    rule_counts_png,
    score_histogram_png,
)
from vidalign.errors import ConfigError, InputError, VidalignError, require
from vidalign.eval.dsr_prompts_csv import (
    FINAL_PHRASES,
    INITIAL_PHRASES,
    RELATIONS,
    DSRPrompt,
    prompts_by_id,
    read_prompts_csv,
    render_prompt,
    write_prompts_csv,
)
from vidalign.eval.dsr_score import MIN_FRAMES, Track, parse_track, score_track
from vidalign.format import PREVIEWS_DIR, WEBDATASET, Layout

# Verbs that suit each animal (the released prompts pair e.g. ducks with "waddles", birds with "flutters").
ANIMAL_VERBS: dict[str, tuple[str, ...]] = {
    "rabbit": ("hops", "jumps", "leaps", "bounds"),
    "squirrel": ("scampers", "darts", "scurries", "climbs", "hops"),
    "cat": ("walks", "sneaks", "paces", "jumps", "prowls"),
    "dog": ("runs", "trots", "walks", "bounds", "jumps"),
    "fox": ("trots", "sprints", "dashes", "sneaks"),
    "turtle": ("crawls", "ambles", "shuffles"),
    "bird": ("flutters", "hops", "flies"),
    "duck": ("waddles", "shuffles", "steps"),
    "monkey": ("leaps", "climbs", "swings", "jumps"),
    "hamster": ("crawls", "scurries", "climbs"),
}
OBJECTS: tuple[str, ...] = (
    "stone", "lamp", "hydrant", "bucket", "chair", "bench", "crate", "log", "desk", "table", "box", "pot",
    "cushion", "sofa", "stool", "basket", "stump", "rock",
)
# Scenes are "<place> <detail>" (short place phrases as in the released sets); details fit their place kind.
OUTDOOR_PLACES: tuple[str, ...] = (
    "On a grassy field", "In a quiet forest clearing", "By a calm riverbank", "At the edge of a sunny meadow",
    "On a rocky hillside", "At a seaside dock", "Near a market square", "On a stone plaza", "By a village well",
    "In a maple grove", "By a pebble beach", "At a fountain plaza", "On a courtyard deck", "By a canal",
)
OUTDOOR_DETAILS: tuple[str, ...] = (
    "with wildflowers", "with moss", "with fallen leaves", "with reeds", "at dusk", "in soft morning light",
    "with lanterns", "under a cloudy sky", "with scattered pebbles", "in the afternoon sun",
)
INDOOR_PLACES: tuple[str, ...] = (
    "In a cozy living room", "In a quiet study", "In a bright workshop", "In a narrow attic", "In a spacious loft",
    "In a storage room", "In a library corner", "In a reading nook", "Inside a sunroom", "Inside a long hallway",
)
INDOOR_DETAILS: tuple[str, ...] = (
    "with a large window", "with wooden floors", "with a patterned rug", "with potted plants",
    "with tall bookshelves", "with a floor lamp", "with scattered books", "with white walls",
)
DEFAULT_TYPES: tuple[str, ...] = ("LR", "LT", "RL", "RT", "TL", "TR")
MAX_REDRAWS = 1000


def types_from_relations(letters: str) -> tuple[str, ...]:
    """Every ordered pair of different relation letters, e.g. ``"LRT"`` → LR LT RL RT TL TR."""
    letters = "".join(dict.fromkeys(str(letters).upper().replace(",", "").replace(" ", "")))
    bad = [c for c in letters if c not in RELATIONS]
    if bad or len(letters) < 2:
        raise ConfigError(f"relations {letters!r} are invalid: give two or more of {''.join(RELATIONS)} "
                          "(L left, R right, T top, B below)")
    return tuple(a + b for a, b in itertools.permutations(letters, 2))


def parse_types(text: str) -> tuple[str, ...]:
    """``"LR,RL"`` → ("LR", "RL"); a bare letter set such as ``"LRTB"`` means every ordered pair of them."""
    items = [t.strip().upper() for t in str(text).split(",") if t.strip()]
    if len(items) == 1 and len(items[0]) != 2:
        return types_from_relations(items[0])
    return tuple(items)


def default_scenes() -> tuple[str, ...]:
    """Every outdoor place × outdoor detail and indoor place × indoor detail."""
    return tuple(f"{p} {d}" for places, details in ((OUTDOOR_PLACES, OUTDOOR_DETAILS), (INDOOR_PLACES, INDOOR_DETAILS))
                 for p, d in itertools.product(places, details))


@dataclass(frozen=True)
class DsrPromptConfig:
    """A seeded DSR prompt set; ``verbs=None`` uses each animal's own verbs (:data:`ANIMAL_VERBS`)."""

    n: int = 120
    seed: int = 0
    types: tuple[str, ...] = DEFAULT_TYPES
    animals: tuple[str, ...] = tuple(ANIMAL_VERBS)
    objects: tuple[str, ...] = OBJECTS
    verbs: tuple[str, ...] | None = None
    scenes: tuple[str, ...] | None = None
    first_group: int = 0

    def __post_init__(self) -> None:
        require(isinstance(self.n, int) and self.n >= 1, "DsrPromptConfig", "n", self.n, "give a positive count")
        require(isinstance(self.seed, int), "DsrPromptConfig", "seed", self.seed, "give an integer seed")
        require(len(self.types) >= 1 and len(set(self.types)) == len(self.types), "DsrPromptConfig", "types",
                self.types, "give distinct relation types such as LR,RL")
        for t in self.types:
            require(isinstance(t, str) and len(t) == 2 and t[0] in RELATIONS and t[1] in RELATIONS and t[0] != t[1],
                    "DsrPromptConfig", "types", t, f"use two different letters of {''.join(RELATIONS)} "
                    "(initial then final), e.g. LR")
        for name in ("animals", "objects"):
            vals = getattr(self, name)
            require(len(vals) >= 1 and all(isinstance(v, str) and v.strip() for v in vals), "DsrPromptConfig",
                    name, vals, f"give at least one non-empty {name[:-1]}")
        require(not set(self.animals) & set(self.objects), "DsrPromptConfig", "objects",
                sorted(set(self.animals) & set(self.objects)), "an object must not also be an animal")
        if self.verbs is None:
            missing = [a for a in self.animals if a not in ANIMAL_VERBS]
            require(not missing, "DsrPromptConfig", "verbs", None,
                    f"give verbs (--verbs) for animals without default verbs: {missing}")
        else:
            require(len(self.verbs) >= 1, "DsrPromptConfig", "verbs", self.verbs, "give at least one verb")
        require(self.scenes is None or len(self.scenes) >= 1, "DsrPromptConfig", "scenes", self.scenes,
                "give at least one scene or leave it unset for the defaults")
        require(isinstance(self.first_group, int) and self.first_group >= 0, "DsrPromptConfig", "first_group",
                self.first_group, "give a non-negative integer")


@dataclass(frozen=True)
class GeneratedPrompt:
    """A :class:`DSRPrompt` with what the CSV schema omits: the verb and the seed it was drawn with."""

    row: DSRPrompt
    verb: str
    seed: int

    def record(self) -> dict:
        r = self.row
        return {"prompt": r.prompt, "prompt_id": r.prompt_id, "type": r.type, "animal": r.animal,
                "object": r.object, "scene": r.scene, "initial_SR": r.initial_SR, "final_SR": r.final_SR,
                "verb": self.verb, "group": r.group, "seed": self.seed}


def draw_prompt(config: DsrPromptConfig, index: int, attempt: int = 0) -> GeneratedPrompt:
    """Prompt ``index`` of the set (pure: depends on the config's seed, the index and the redraw attempt)."""
    seed = stable_seed(config.seed, "dsr-prompt", index, attempt)
    rng = np.random.default_rng(seed)
    ptype = config.types[index % len(config.types)]
    scenes = config.scenes or default_scenes()
    scene = scenes[int(rng.integers(len(scenes)))]
    animal = config.animals[int(rng.integers(len(config.animals)))]
    obj = config.objects[int(rng.integers(len(config.objects)))]
    verbs = config.verbs or ANIMAL_VERBS[animal]
    verb = verbs[int(rng.integers(len(verbs)))]
    group = config.first_group + index
    row = DSRPrompt(type=ptype, prompt_id=f"{group:05d}_{ptype}", animal=animal, object=obj, scene=scene,
                    initial_SR=INITIAL_PHRASES[ptype[0]], final_SR=FINAL_PHRASES[ptype[1]],
                    prompt=render_prompt(scene, animal, obj, verb, ptype[0], ptype[1]), group=group)
    return GeneratedPrompt(row, verb, seed)


def generate_prompts(config: DsrPromptConfig) -> list[GeneratedPrompt]:
    """``config.n`` distinct prompts, balanced across ``config.types``."""
    out, seen = [], set()
    for i in range(config.n):
        for attempt in range(MAX_REDRAWS):
            p = draw_prompt(config, i, attempt)
            if p.row.prompt not in seen:
                break
        else:
            raise ConfigError(f"DsrPromptConfig.n={config.n} is too large for the vocabulary: prompt {i} repeated "
                              f"an earlier one {MAX_REDRAWS} times; add scenes/animals/objects/verbs or lower n")
        seen.add(p.row.prompt)
        out.append(p)
    return out


def type_counts(prompts: Iterable[DSRPrompt | GeneratedPrompt]) -> dict[str, int]:
    """How many prompts of each type (for the card and the balance check)."""
    rows = [p.row if isinstance(p, GeneratedPrompt) else p for p in prompts]
    return dict(sorted(Counter(r.type for r in rows).items()))


def is_balanced(counts: Sequence[int] | dict[str, int]) -> bool:
    vals = list(counts.values()) if isinstance(counts, dict) else list(counts)
    return bool(vals) and max(vals) - min(vals) <= 1


# ================================================================================================ builders
def _tuple(v) -> tuple | None:
    return None if v is None else tuple(v) if isinstance(v, (list, tuple)) else (v,)


@register_builder
class DsrPromptsBuilder(Builder):
    """``dsr-prompts``: a seeded, type-balanced DSR prompt set (config ``prompts``), or an authors' CSV converted."""

    name = "dsr-prompts"
    input_args = ("from_csv",)
    description = ("SpatialAlign dynamic-spatial-relation prompts: \"{scene}, a {animal} is {initial} a {object}, "
                   "then the {animal} {verb} {final} the {object}.\", balanced across relation types.")
    tags = ["spatialalign", "dsr", "prompts", "text-to-video"]
    task_categories = ["text-to-video"]
    tabular = True  # one Parquet row per prompt, every field a column
    sample_mb = 0.001

    @dataclass
    class Args:
        n: int = field(default=120, metadata={"help": "number of prompts to generate"})
        types: tuple[str, ...] = field(default=DEFAULT_TYPES, metadata={
            "help": "relation types (initial+final letters of L R T B), or a letter set such as LRTB for all pairs"})
        animals: tuple[str, ...] = field(default=tuple(ANIMAL_VERBS), metadata={"help": "animal vocabulary"})
        objects: tuple[str, ...] = field(default=OBJECTS, metadata={"help": "object vocabulary"})
        verbs: tuple[str, ...] | None = field(default=None, metadata={
            "help": "verbs for every animal (default: each animal's own verbs)"})
        scenes: tuple[str, ...] | None = field(default=None, metadata={
            "help": "scene phrases (default: place × detail combinations)"})
        first_group: int = field(default=0, metadata={"help": "group number of the first prompt (ids <group>_<type>)"})
        from_csv: str | None = field(default=None, metadata={
            "help": "convert this authors'-schema CSV (eval30.csv/eval120.csv) instead of generating"})
        split: str = field(default="train", metadata={"help": "split name"})

        def __post_init__(self):
            types: list[str] = []
            for t in _tuple(self.types) or ():
                types.extend(parse_types(t))
            self.types = tuple(dict.fromkeys(types))
            self.animals, self.objects = _tuple(self.animals), _tuple(self.objects)
            self.verbs, self.scenes = _tuple(self.verbs), _tuple(self.scenes)
            if self.from_csv is None:
                self.config(0)

        def config(self, seed: int) -> DsrPromptConfig:
            return DsrPromptConfig(n=self.n, seed=seed, types=self.types, animals=self.animals,
                                   objects=self.objects, verbs=self.verbs, scenes=self.scenes,
                                   first_group=self.first_group)

    def rows(self) -> list[dict]:
        """The prompt records, generated (seeded by the build seed) or read from ``--from-csv``."""
        if self.args.from_csv:
            return [{**dataclasses.asdict(p), "verb": None, "seed": None}
                    for p in read_prompts_csv(self.args.from_csv)]
        return [p.record() for p in generate_prompts(self.args.config(self.seed))]

    def plan(self):
        n = len(self.rows()) if self.args.from_csv else self.args.n
        return self.split_range("prompts", self.args.split, n)

    def build_shard(self, job):
        rows = self.rows()
        for i in job.indices():
            yield Sample(self.key(i), {"json": rows[i]})

    def finalize(self, folder: Path, manifest: dict) -> None:
        rows = [DSRPrompt(**{k: r[k] for k in DSRPrompt.__dataclass_fields__}) for r in self.rows()]
        write_prompts_csv(Path(folder) / "prompts.csv", rows)

    def card_body(self, manifest: dict, folder: Path) -> str:
        counts = type_counts(DSRPrompt(**{k: r[k] for k in DSRPrompt.__dataclass_fields__}) for r in self.rows())
        lines = ["## DSR prompts", "",
                 "`prompts.csv` holds the same prompts in the authors' eval CSV schema (for `vidalign generate` "
                 "and `vidalign eval dsr`).", "", "| type | prompts |", "|---|---:|"]
        lines += [f"| {t} | {c} |" for t, c in counts.items()]
        return "\n".join(lines)


# ------------------------------------------------------------------------------------------ dsr-pairs
def prompt_from_meta(meta: dict, source: str) -> DSRPrompt:
    """The DSR fields a candidate's json carries when it was generated from a DSR prompt file."""
    try:
        ptype = str(meta.get("type", "")).upper()
        return DSRPrompt(type=ptype, prompt_id=meta["prompt_id"], animal=str(meta.get("animal", "")),
                         object=str(meta.get("object", "")), scene=str(meta.get("scene", "")),
                         initial_SR=str(meta.get("initial_SR", "")), final_SR=str(meta.get("final_SR", "")),
                         prompt=meta["prompt"], group=None)
    except VidalignError as exc:
        raise InputError(source, "json.type", f"no usable DSR fields (type/animal/object): {exc}",
                         "pass --prompts with the prompt CSV the candidates were generated from") from None


def read_track_records(path: str | Path, on_error: str = "raise") -> tuple[list[Track], list[dict]]:
    """Tracks of a JSONL file, record by record, so that ``on_error=skip`` drops only the bad lines."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, None, "tracks file not found", "pass the tracks JSONL of the candidates")
    from vidalign.inputs import parse_json, read_text

    tracks, rejected = [], []
    for lineno, line in enumerate(read_text(path, "tracks file").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            tracks.append(parse_track(parse_json(line, path, lineno, finite=False), where))
        except InputError as exc:
            if on_error != "skip":
                raise
            rejected.append({"input": exc.source, "reason": exc.reason})
    if not tracks and not rejected:
        raise InputError(path, None, "holds no tracks", "write them with `vidalign track` first")
    return tracks, rejected


@register_builder
class DsrPairsBuilder(Builder):
    """``dsr-pairs``: candidates + tracks → DSR-Score → winners/losers → ``groups`` and ``pairs`` configs."""

    name = "dsr-pairs"
    input_args = ("candidates", "tracks", "prompts")
    description = ("SpatialAlign preference data: every candidate video of a DSR prompt scored with DSR-Score "
                   "from its detection tracks; winners (DSR ≥ threshold) and losers per prompt, as whole groups "
                   "(config `groups`, for drawing a fresh pair each step) and as materialised pairs (`pairs`).")
    tags = ["spatialalign", "dsr", "preference", "dpo", "text-to-video"]
    task_categories = ["text-to-video"]
    _COLUMNS = {"groups": ("prompt.txt", "prompt_id.txt", "type.txt", "winners.json", "losers.json"),
                "pairs": ("prompt.txt", "prompt_id.txt", "type.txt", "chosen_score.json", "rejected_score.json",
                          "gap.json", "weight.json", "chosen_seed.json", "rejected_seed.json")}

    def layout(self, config: str) -> Layout:
        return Layout(WEBDATASET, self._COLUMNS.get(config, ()))

    @dataclass
    class Args:
        candidates: str = field(metadata={"help": "candidate shard folder (vidalign generate), glob or .tar"})
        tracks: str = field(metadata={"help": "tracks JSONL ({video, prompt_id, frames}) of the candidates"})
        prompts: str | None = field(default=None, metadata={
            "help": "DSR prompt CSV (authors' schema); default: the type/animal/object in each candidate's json"})
        candidates_config: str | None = field(default=None, metadata={"help": "config of the candidate folder"})
        candidates_split: str = field(default="train", metadata={"help": "split of the candidate folder"})
        threshold: float = field(default=0.7, metadata={"help": "winner if DSR >= threshold, loser if below"})
        pair_strategy: Literal["all", "random"] = field(default="all", metadata={
            "help": "pairs config: every winner×loser, or --pairs-per-prompt random ones (seeded)"})
        pairs_per_prompt: int = field(default=1, metadata={"help": "pairs per prompt with --pair-strategy random"})
        min_frames: int = field(default=MIN_FRAMES, metadata={"help": "kept frames below which a video is invalid"})
        num_candidates: int | None = field(default=None, metadata={
            "help": "N candidates per group (default: the most any prompt has); prompts with fewer are dropped"})
        configs: tuple[str, ...] = field(default=("groups", "pairs"), metadata={"help": "configs to build"})
        check_videos: Literal["header", "decode", "none"] = field(default="header", metadata={
            "help": "refuse broken videos: MP4 structure (fast), also decode the first frame, or no check"})
        split: str = field(default="train", metadata={"help": "split name"})

        def __post_init__(self):
            self.configs = tuple(dict.fromkeys(_tuple(self.configs) or ()))
            require(bool(self.configs) and set(self.configs) <= {"groups", "pairs"}, "dsr-pairs", "configs",
                    self.configs, "build groups, pairs or both")
            require(self.num_candidates is None or self.num_candidates >= 2, "dsr-pairs", "num_candidates",
                    self.num_candidates, "give at least 2 candidates per prompt")
            require(self.min_frames >= 3, "dsr-pairs", "min_frames", self.min_frames, "use at least 3 frames")
            require(self.check_videos in VIDEO_CHECKS, "dsr-pairs", "check_videos", self.check_videos,
                    f"use one of {', '.join(VIDEO_CHECKS)}")
            self.pair_config(0)

        def pair_config(self, seed: int) -> DsrPairConfig:
            return DsrPairConfig(threshold=self.threshold, strategy=self.pair_strategy, k=self.pairs_per_prompt,
                                 seed=seed)

    def estimate_sample_mb(self) -> float:
        return getattr(self, "_sample_mb", 1.0)

    # -- scoring -------------------------------------------------------------------------------------------------
    def score(self) -> dict:
        """Index candidates, match tracks, score, label: the whole build decided before any video is read."""
        a = self.args
        rejected: list[dict] = []

        def refuse(exc: InputError) -> None:
            rejected.append(dataclasses.asdict(self.reject(exc)))

        # the small files first: a bad tracks file or prompt CSV fails before the candidate shards are scanned
        table = prompts_by_id(read_prompts_csv(a.prompts)) if a.prompts else {}
        tracks, bad_tracks = read_track_records(a.tracks, self.on_error)
        index = CandidateIndex.scan(candidate_shards(a.candidates, a.candidates_config, a.candidates_split),
                                    self.on_error)
        rejected += index.rejected
        if not len(index):
            raise InputError(a.candidates, None, "no candidates found", "generate candidates first")
        rejected += bad_tracks
        track_of: dict[tuple[str, int], Track] = {}
        for t in tracks:
            c = index.lookup(t.video)
            try:
                if c is None:
                    raise InputError(a.tracks, "video", f"{t.video!r} (prompt {t.prompt_id!r}) matches no candidate "
                                     "(or several)",
                                     "name videos by sample key or <prompt_id>/<candidate>; see vidalign.datasets_"
                                     "builders.pairs.CandidateIndex")
                if t.prompt_id != c.prompt_id:
                    raise InputError(a.tracks, "prompt_id", f"video {t.video!r} says {t.prompt_id!r}, its candidate "
                                     f"{c.source} belongs to {c.prompt_id!r}", "fix the tracks' prompt_id")
                if (c.prompt_id, c.index) in track_of:
                    raise InputError(a.tracks, "video", f"two tracks for candidate {c.source} ({t.video!r})",
                                     "keep one track per video")
            except InputError as exc:
                refuse(exc)
                continue
            track_of[(c.prompt_id, c.index)] = t
        counts = {"prompts": len(index.by_prompt)}
        n_cand = a.num_candidates or max(len(v) for v in index.by_prompt.values())
        groups, all_scores = [], []
        cfg = a.pair_config(self.seed)
        for pid, cands in index.by_prompt.items():
            try:
                prompt = table.get(pid) if a.prompts else prompt_from_meta(cands[0].meta, cands[0].source)
                if prompt is None:
                    raise InputError(a.prompts, "prompt_id", f"{pid!r} (candidates {cands[0].source}) is not in "
                                     "the prompt CSV", "pass the CSV the candidates were generated from")
            except InputError as exc:
                refuse(exc)
                _bump(counts, "dropped: no DSR prompt fields")
                continue
            cands = cands[:n_cand]
            scores = [score_track(track_of[(pid, c.index)], prompt, a.min_frames)
                      if (pid, c.index) in track_of else None for c in cands]
            all_scores += scores
            labels = label_by_threshold(scores, a.threshold)
            if len(cands) < n_cand:
                _bump(counts, f"dropped: fewer than {n_cand} candidates")
            elif all(lab == INVALID for lab in labels):
                _bump(counts, "dropped: no valid candidate")
            elif WINNER not in labels:
                _bump(counts, f"dropped: no winner (DSR >= {a.threshold:g})")
            elif LOSER not in labels:
                _bump(counts, "dropped: no loser")
            else:
                _bump(counts, "kept")
                groups.append((prompt, cands, scores, labels))
        if not groups:
            raise VidalignError(f"dsr-pairs: no prompt has both a winner and a loser ({counts}); lower --threshold, "
                                "generate more candidates, or check the tracks")
        return {"groups": groups, "scores": all_scores, "counts": counts, "rejected": rejected, "n": n_cand,
                "pair_config": cfg, "sample_mb": mean_mb(c for g in groups for c in g[1])}

    def plan(self):
        s = cached_state(self, self.score)
        self._sample_mb = s["sample_mb"] * s["n"]
        a = self.args
        jobs, rejected = [], s["rejected"]
        if "groups" in a.configs:
            items = [self._group_item(*g) for g in s["groups"]]
            jobs += plan_items(self, "groups", a.split, items, rejected, a.check_videos)
            rejected = []
        if "pairs" in a.configs:
            self._sample_mb = s["sample_mb"] * 2
            items = self._pair_items(s)
            jobs += plan_items(self, "pairs", a.split, items, rejected, a.check_videos)
        return jobs

    def _group_item(self, prompt: DSRPrompt, cands, scores, labels) -> dict:
        entries = [{"member": f"c{i}", "candidate": c.index, "seed": c.seed, "dsr": s, "label": lab, "key": c.key}
                   for i, (c, s, lab) in enumerate(zip(cands, scores, labels))]
        return {"videos": {f"c{i}.mp4": video_ref(c) for i, c in enumerate(cands)},
                "json": {"prompt": prompt.prompt, "prompt_id": prompt.prompt_id, "type": prompt.type,
                         "animal": prompt.animal, "object": prompt.object, "threshold": self.args.threshold,
                         "winners": labels.count(WINNER), "losers": labels.count(LOSER), "candidates": entries}}

    def _pair_items(self, s: dict) -> list[dict]:
        cfg: DsrPairConfig = s["pair_config"]
        items = []
        for prompt, cands, scores, labels in s["groups"]:
            seed = stable_seed(cfg.seed, "dsr-pairs", prompt.prompt_id)
            for w, lo in winner_loser_pairs(labels, cfg.strategy, cfg.k, seed):
                cw, cl = cands[w], cands[lo]
                items.append({"videos": {"chosen.mp4": video_ref(cw), "rejected.mp4": video_ref(cl)},
                              "json": C.pair_record(prompt.prompt, scores[w], scores[lo], 1.0,
                                                    prompt_id=prompt.prompt_id, type=prompt.type,
                                                    animal=prompt.animal, object=prompt.object,
                                                    threshold=cfg.threshold, chosen_seed=cw.seed,
                                                    rejected_seed=cl.seed, chosen_candidate=cw.index,
                                                    rejected_candidate=cl.index, chosen_key=cw.key,
                                                    rejected_key=cl.key, pair_seed=seed)})
        return items

    def build_shard(self, job):
        yield from materialise(self, job)

    # -- card ----------------------------------------------------------------------------------------------------
    def _stats(self) -> dict:
        return cached_state(self, self.score, for_card=True)

    def finalize(self, folder: Path, manifest: dict) -> None:
        s = self._stats()
        gaps = [it["json"]["gap"] for it in self._pair_items(s)]
        previews = Path(folder) / PREVIEWS_DIR
        previews.mkdir(parents=True, exist_ok=True)
        (previews / "dsr_scores.png").write_bytes(
            score_histogram_png(s["scores"], "DSR-Score", 0.02, threshold=self.args.threshold))
        (previews / "dsr_gaps.png").write_bytes(gap_histogram_png(gaps, "DSR-Score", 0.02))
        (previews / "dsr_rules.png").write_bytes(rule_counts_png(s["counts"], "DSR prompts kept and dropped"))

    def card_body(self, manifest: dict, folder: Path) -> str:
        s = self._stats()
        valid = [x for x in s["scores"] if x is not None]
        n_pairs = len(self._pair_items(s))
        return "\n".join([
            "## DSR-Score, winners and losers", "",
            f"{len(s['scores'])} candidates ({len(valid)} valid) of {s['counts']['prompts']} prompts, N = {s['n']} "
            f"per group; winner if DSR ≥ {self.args.threshold:g}. {len(s['groups'])} groups, {n_pairs} pairs "
            f"(strategy `{self.args.pair_strategy}`).", "",
            f"![DSR-Score distribution]({PREVIEWS_DIR}/dsr_scores.png) "
            f"![winner–loser gap]({PREVIEWS_DIR}/dsr_gaps.png)", "",
            f"![prompts by rule]({PREVIEWS_DIR}/dsr_rules.png)", "", rule_counts_markdown(s["counts"]), ""])


def _bump(counts: dict, key: str) -> None:
    counts[key] = counts.get(key, 0) + 1
