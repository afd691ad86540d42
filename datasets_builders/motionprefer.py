"""MotionPrefer (AToM): motion preference pairs, imported from AToM's files or made by judging candidates.

Two builders write the same dataset layout, configs ``default`` and ``trl``, splits ``train``/``eval``, both as
Parquet (flat, typed columns; one container per folder, see :mod:`vidalign.format`):

- ``default``: ``chosen.npy`` / ``rejected.npy`` (float32 HumanML3D features ``[T, 263]``, array columns) and the
  json fields as columns (id, prompt, sub_task, degree, label_smoothing, frame counts, VQ token codes, sources);
  with ``--videos`` also ``chosen.mp4``/``rejected.mp4`` (video columns);
- ``trl``: one TRL preference row per pair — columns ``prompt``, ``chosen``, ``rejected`` (motion-token strings
  ``<motion_id_512>…<motion_id_513>``) and ``label_smoothing`` (plus ``__key__``):
  ``datasets.load_dataset(folder, "trl", split="train")`` goes straight into ``trl.DPOTrainer``. Sample keys
  match across configs.

``motionprefer-atom`` (``vidalign import atom``) reads ``preference_labels.jsonl`` as the authors' loader
(``src/utils/motiongpt_utils.py``) does: only the *last* ``chosen`` entry counts, rows whose last choice is
``skipped`` are dropped, degree → label smoothing (Much better 0, Better 0.2, Slightly better 0.3, Negligibly
better/unsure 0.5), then the 90/10 split of ``datasets.Dataset.train_test_split(test_size=0.1, shuffle=True,
seed=2222)`` reproduced index for index over every row their filter keeps; rows vidalign cannot use (a bad
degree, a missing path) are dropped only *after* the split, so the ids of both splits match theirs. Token
files are found by their rule (:func:`token_paths`); the ``trl`` config needs only the token files.
``motionprefer`` renders every candidate of a prompt as a stick figure, asks a judge
(:mod:`vidalign.datasets_builders.motion_judge`) for a 0–10 score and pairs best against worst.
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vidalign.builder import Builder, Sample, register_builder
from vidalign.datasets_builders.motion_prompts import SUB_TASKS
from vidalign.errors import InputError, VidalignError, require
from vidalign.inputs import load_npy, parse_json, read_text
from vidalign.motion import CODEBOOK_SIZE, MAX_FRAMES, MIN_FRAMES, check_features, motion_string

LABEL_SMOOTHING = {"Much better": 0.0, "Better": 0.2, "Slightly better": 0.3, "Negligibly better/unsure": 0.5}
SPLIT_SEED = 2222
EVAL_FRACTION = 0.1
CITATION = """@misc{han2024atomaligningtexttomotionmodel,
  title={AToM: Aligning Text-to-Motion Model at Event-Level with GPT-4Vision Reward},
  author={Haonan Han and Xiangzuo Wu and Huan Liao and Zunnan Xu and Zhongyuan Hu and Ronghui Li and Yachao Zhang and Xiu Li},
  year={2024}, eprint={2411.18654}, archivePrefix={arXiv}, primaryClass={cs.CV}}"""


# ----------------------------------------------------------------------------------------- AToM records
@dataclass(frozen=True)
class AtomRecord:
    """One usable annotation: the last ``chosen`` entry of a line decides chosen/rejected and the degree."""

    id: str
    prompt: str
    chosen: dict
    rejected: dict
    degree: str
    label_smoothing: float
    user: str | None
    sub_task: str | None
    source: str
    line: int


@dataclass
class AtomFile:
    """A parsed ``preference_labels.jsonl``.

    ``rows``: every line the authors' loader keeps (its filter drops only a last choice of ``skipped``), in file
    order, each an :class:`AtomRecord` or, when vidalign cannot use it, the :class:`InputError` saying why; these
    are what the train/eval split runs over. ``skipped``: ids the annotators skipped. ``errors``: lines the
    authors' loader could not read either (not JSON, no ``chosen`` list), outside the split.
    """

    path: str
    rows: list[AtomRecord | InputError] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    errors: list[InputError] = field(default_factory=list)

    @property
    def records(self) -> list[AtomRecord]:
        """The usable rows, in file order."""
        return [r for r in self.rows if isinstance(r, AtomRecord)]


def kept_by_authors(obj: object) -> bool:
    """The authors' filter ``x["chosen"][-1]["choice"] != "skipped"`` on a row it can evaluate."""
    if not isinstance(obj, dict):
        return False
    chosen = obj.get("chosen")
    return isinstance(chosen, list) and bool(chosen) and isinstance(chosen[-1], dict) and \
        chosen[-1].get("choice") != "skipped"


def infer_sub_task(path: str | os.PathLike) -> str | None:
    """The sub-task named by the nearest folder (or file name) of ``path``: integrity, temporal or frequency."""
    for part in reversed(Path(path).parts):
        low = part.lower()
        found = [t for t in SUB_TASKS if t in low]
        if len(found) == 1:
            return found[0]
    return None


def parse_atom_record(obj: object, source: str, line: int, sub_task: str | None = None) -> AtomRecord | None:
    """One JSONL object → :class:`AtomRecord`, ``None`` when the annotator skipped it, or :class:`InputError`."""
    where = f"{source}:{line}"
    if not isinstance(obj, dict):
        raise InputError(where, None, f"line is a JSON {type(obj).__name__}, not an object",
                         "each line must be one AToM record object")
    for name in ("id", "prompt", "sample_1", "sample_2", "chosen"):
        if name not in obj:
            raise InputError(where, name, "missing", "AToM records need id, prompt, sample_1, sample_2, chosen")
    chosen = obj["chosen"]
    if not isinstance(chosen, list) or not chosen or not isinstance(chosen[-1], dict):
        raise InputError(where, "chosen", f"expected a non-empty list of objects, got {str(chosen)[:60]}",
                         "fix the annotation or drop the line")
    last = chosen[-1]
    choice, degree = last.get("choice"), last.get("degree of preference")
    if choice == "skipped":
        return None
    if choice not in ("sample_1", "sample_2"):
        raise InputError(where, "chosen[-1].choice", f"value {choice!r} is not sample_1, sample_2 or skipped",
                         "fix the annotation or drop the line")
    if degree not in LABEL_SMOOTHING:
        raise InputError(where, "chosen[-1].degree of preference", f"value {degree!r} is unknown",
                         f"use one of {', '.join(LABEL_SMOOTHING)}")
    samples = {}
    for name in ("sample_1", "sample_2"):
        s = obj[name]
        if not isinstance(s, dict) or not isinstance(s.get("features"), str) or not s["features"]:
            raise InputError(where, f"{name}.features", "missing or not a path", "give the motion's .npy path")
        samples[name] = s
    other = "sample_2" if choice == "sample_1" else "sample_1"
    prompt = obj["prompt"]
    if not isinstance(prompt, str) or not prompt.strip():
        raise InputError(where, "prompt", f"value {prompt!r} is not a non-empty string", "give the text prompt")
    return AtomRecord(id=str(obj["id"]), prompt=prompt.strip(), chosen=samples[choice], rejected=samples[other],
                      degree=degree, label_smoothing=LABEL_SMOOTHING[degree], user=last.get("user"),
                      sub_task=sub_task, source=source, line=line)


def read_atom_jsonl(path: str | os.PathLike, sub_task: str | None = None) -> AtomFile:
    """Parse every line; the sub-task comes from ``sub_task`` or else from the file's folder names."""
    path = Path(path)
    if not path.is_file():
        raise VidalignError(f"{path}: AToM labels file not found; pass the path of preference_labels.jsonl")
    task = sub_task or infer_sub_task(path.resolve())
    out = AtomFile(str(path))
    for n, raw in enumerate(read_text(path, "AToM labels file").splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            obj = parse_json(raw, path, n)
        except InputError as exc:
            out.errors.append(InputError(exc.source, None, exc.problem, "fix or drop the line"))
            continue
        try:
            rec = parse_atom_record(obj, str(path), n, task)
        except InputError as exc:
            # a row their loader keeps holds its place in the split and is dropped after it
            (out.rows if kept_by_authors(obj) else out.errors).append(exc)
            continue
        if rec is None:
            out.skipped.append(str(obj.get("id")))
        else:
            out.rows.append(rec)
    return out


def split_indices(n: int, seed: int = SPLIT_SEED, eval_fraction: float = EVAL_FRACTION) -> tuple[list[int], list[int]]:
    """(train, eval) row indices exactly as ``datasets``' ``train_test_split(test_size, shuffle=True, seed)``.

    Eval takes the first ``ceil(fraction * n)`` entries of ``np.random.default_rng(seed).permutation(n)`` and
    train the rest, each in permutation order (that is what AToM's loader trains on).
    """
    require(0 <= eval_fraction < 1, "split", "eval_fraction", eval_fraction, "use 0 <= fraction < 1")
    if n == 0:
        return [], []
    n_test = math.ceil(eval_fraction * n)
    perm = np.random.default_rng(seed).permutation(n)
    return perm[n_test:].tolist(), perm[:n_test].tolist()


# ----------------------------------------------------------------------------------------- motion files
def resolve(path: str, base: Path) -> Path:
    p = Path(path)
    return p if p.is_absolute() else base / p


def token_paths(features: str, base: Path) -> list[Path]:
    """Where MotionGPT's codes for the motion at ``features`` (the path as the JSONL writes it) may live, the
    authors' rule first: ``features[:-4].replace('data2', 'data3') + "_token.npy"`` with ``features`` → ``tokens``,
    on the path string as written, joined to the JSONL's folder (``os.path.join(base_dir, ...)``); then the same
    without one of the two replacements, then ``<stem>_token.npy`` beside the features."""
    stem = features[:-4] if features.lower().endswith(".npy") else features
    theirs = stem.replace("data2", "data3") + "_token.npy"
    beside = stem + "_token.npy"
    names = [theirs.replace("features", "tokens"), theirs, beside.replace("features", "tokens"), beside]
    return [Path(os.path.join(base, n)) for n in dict.fromkeys(names)]


def load_features(path: Path, min_frames: int = MIN_FRAMES, max_frames: int = MAX_FRAMES) -> np.ndarray:
    """Validated float32 ``[T, 263]`` features from a ``.npy`` (never unpickled)."""
    if not path.is_file():
        raise InputError(path, "features", "file not found", "check the path (relative paths start at the JSONL's folder)")
    return check_features(load_npy(path), str(path), min_frames, max_frames)


def load_tokens(features: str, base: Path, explicit: str | None = None,
                codebook_size: int = CODEBOOK_SIZE) -> list[int] | None:
    """MotionGPT VQ codes (first row of ``_token.npy``) for a motion, or ``None`` when no token file exists.

    ``features`` is the motion's path as written in the record, relative to ``base`` (or absolute); ``explicit`` a
    ``tokens`` path the record names itself. Only the token file is read, never the features.
    """
    paths = [resolve(explicit, base)] if explicit else token_paths(features, base)
    for p in paths:
        if p.is_file():
            codes = np.asarray(load_npy(p))
            if codes.dtype.kind not in "iufb":
                raise InputError(p, "tokens", f"dtype {codes.dtype} is not numeric", "store integer codes")
            codes = codes[0] if codes.ndim >= 2 else codes
            codes = codes.reshape(-1)
            ok = codes.size > 0 and np.all(np.isfinite(codes)) and np.all(codes == np.round(codes)) \
                and np.all((codes >= 0) & (codes < codebook_size))
            if not ok:
                raise InputError(p, "tokens", f"codes must be integers in [0, {codebook_size}), got "
                                 f"{codes[:6].tolist()}", "re-tokenise the motion with the VQ-VAE")
            return [int(c) for c in codes]
        if explicit:
            raise InputError(p, "tokens", "file not found", "fix the tokens path or remove it")
    return None


def trl_row(prompt: str, chosen_codes: list[int], rejected_codes: list[int], label_smoothing: float,
            template: str = "{prompt}", codebook_size: int = CODEBOOK_SIZE) -> dict:
    """A TRL preference row (``prompt``, ``chosen``, ``rejected`` as motion-token text, ``label_smoothing``)."""
    return {"prompt": template.format(prompt=prompt), "chosen": motion_string(chosen_codes, codebook_size),
            "rejected": motion_string(rejected_codes, codebook_size), "label_smoothing": float(label_smoothing)}


def trl_dataset(folder: str | os.PathLike, split: str = "train"):
    """The ``trl`` config as a ``datasets.Dataset`` of TRL rows: ``datasets.load_dataset(folder, "trl",
    split=split)``, which is all it takes (the card's fingerprint keeps the cache fresh across rebuilds)."""
    import datasets

    return datasets.load_dataset(str(folder), "trl", split=split)


# ---------------------------------------------------------------------------------------------- builders
_ROW_FIELDS = {"prompt", "chosen", "rejected", "label_smoothing"}


@dataclass
class PairPlan:
    """What a builder's plan is made of: usable entries (train first, then eval), bad inputs, skipped ids."""

    entries: list
    n_train: int
    errors: list[InputError] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def item(self, index: int):
        """Entry ``index`` in plan order: train entries, then input errors (rejected), then eval entries."""
        if index < self.n_train:
            return self.entries[index]
        if index < self.n_train + len(self.errors):
            return self.errors[index - self.n_train]
        return self.entries[index - len(self.errors)]


class _MotionPairs(Builder):
    """Shared plan and sample writing: ``default`` + ``trl`` configs, train/eval split by seeded permutation."""

    license = "other"
    # HumanML3D motions derive from AMASS, whose license allows non-commercial research use only
    license_name = "amass-humanml3d"
    license_link = "https://amass.is.tue.mpg.de/license.html"
    task_categories = ["text-to-3d"]
    citation = CITATION
    tags = ["motion", "humanml3d", "preference", "dpo", "text-to-motion"]
    tabular = True  # default (motion arrays) and trl (TRL rows) as Parquet: one container per folder
    sample_mb = 0.4

    def make_plan(self) -> PairPlan:
        raise VidalignError(f"builder {self.name!r} does not define make_plan()")

    @functools.cached_property
    def pair_plan(self) -> PairPlan:
        return self.make_plan()

    def plan(self):
        p = self.pair_plan
        if p.errors and self.on_error == "raise":  # every cheap check before any costly work (judge calls)
            raise p.errors[0]
        n_train, n_eval = p.n_train + len(p.errors), len(p.entries) - p.n_train
        if n_train + n_eval == 0:
            raise VidalignError(f"{', '.join(map(str, self.input_files()))}: no usable rows (empty, or every row "
                                "skipped); check the file")
        jobs = []
        for config in (["default", "trl"] if self.args.trl else ["default"]):
            if n_train:
                jobs += self.split_range(config, "train", n_train)
            if n_eval:
                jobs += self.split_range(config, "eval", n_eval, offset=n_train)
        return jobs

    def input_files(self) -> list[str]:
        a = self.args
        return list(getattr(a, "jsonl", None) or [getattr(a, "candidates", "input")])

    def pair_members(self, config: str, meta: dict, chosen: np.ndarray, rejected: np.ndarray,
                     codes: tuple[list[int] | None, list[int] | None], extra: dict | None = None) -> dict:
        """``default`` members (features + json), or the ``trl`` row (needs both motions' token codes)."""
        a = self.args
        if config == "trl":
            if codes[0] is None or codes[1] is None:
                raise InputError(f"{meta['source']['file']}:{meta['source']['line']}", "tokens",
                                 f"pair {meta['id']!r} has no MotionGPT token file (<stem>_token.npy, or the "
                                 "authors' data3/tokens path)", "tokenise the motions with the VQ-VAE, or build "
                                 "with --no-trl")
            return {"json": trl_row(meta["prompt"], codes[0], codes[1], meta["label_smoothing"],
                                    a.trl_prompt_template, a.codebook_size)}
        return {"chosen.npy": chosen, "rejected.npy": rejected, "json": meta, **(extra or {})}


@dataclass
class MotionPairOptions:
    """Options both motion builders take (declared once): split, length limits and the TRL config."""

    split_seed: int = field(default=SPLIT_SEED, metadata={"help": "seed of the 90/10 train/eval split"})
    eval_fraction: float = field(default=EVAL_FRACTION, metadata={"help": "share of rows (import) or prompts "
                                                                             "(judged) in eval"})
    min_frames: int = field(default=MIN_FRAMES, metadata={"help": "shortest motion kept (frames)"})
    max_frames: int = field(default=MAX_FRAMES, metadata={"help": "longest motion kept (frames)"})
    trl: bool = field(default=True, metadata={"help": "also write the trl config (needs _token.npy files)"})
    codebook_size: int = field(default=CODEBOOK_SIZE, metadata={"help": "VQ-VAE codebook size"})
    trl_prompt_template: str = field(default="{prompt}", metadata={"help": "TRL prompt text, with {prompt}"})


def _check_common(owner: str, a) -> None:
    require(a.sub_task is None or a.sub_task in SUB_TASKS, owner, "sub_task", a.sub_task,
            f"use one of {', '.join(SUB_TASKS)} (or leave it out to read it from the folder names)")
    require(0 <= a.eval_fraction < 1, owner, "eval_fraction", a.eval_fraction, "use 0 <= fraction < 1")
    require(1 <= a.min_frames <= a.max_frames, owner, "max_frames", (a.min_frames, a.max_frames),
            "use 1 <= --min-frames <= --max-frames (HumanML3D: 40..196)")
    require(a.codebook_size >= 1, owner, "codebook_size", a.codebook_size, "use MotionGPT's 512")
    try:
        a.trl_prompt_template.format(prompt="x")
    except (KeyError, IndexError, ValueError):
        require(False, owner, "trl_prompt_template", a.trl_prompt_template, "use a template with only {prompt}")


@register_builder
class AtomImportBuilder(_MotionPairs):
    """``vidalign import atom``: AToM's ``preference_labels.jsonl`` + motion ``.npy`` files → MotionPrefer."""

    name = "motionprefer-atom"
    description = ("MotionPrefer preference pairs imported from AToM (Han et al. 2024): HumanML3D motions "
                   "(263-dim features, 20 fps) with the annotator's last choice, degree and label smoothing.")

    @dataclass
    class Args(MotionPairOptions):
        jsonl: list[str] = field(default_factory=list, metadata={"help": "AToM preference_labels.jsonl file(s)"})
        sub_task: str | None = field(default=None, metadata={
            "help": "integrity, temporal or frequency (default: from each file's folder names)",
            "choices": list(SUB_TASKS)})
        drop_unsure: bool = field(default=False, metadata={"help": "drop 'Negligibly better/unsure' rows"})

        def __post_init__(self):
            self.jsonl = [str(p) for p in self.jsonl]
            require(bool(self.jsonl), "motionprefer-atom", "jsonl", self.jsonl,
                    "pass one or more preference_labels.jsonl files")
            _check_common("motionprefer-atom", self)

    def inputs(self) -> dict:
        """The labels files and every motion and token file they name (an edited or replaced .npy changes the
        pairs as much as an edited JSONL)."""
        out = {}
        for i, path in enumerate(self.args.jsonl):
            out[f"jsonl[{i}]" if len(self.args.jsonl) > 1 else "jsonl"] = Path(path)
        for entry in self.pair_plan.entries:
            base = Path(entry.source).parent
            for s in (entry.chosen, entry.rejected):
                out[str(resolve(s["features"], base))] = resolve(s["features"], base)
                for t in ([resolve(s["tokens"], base)] if s.get("tokens") else token_paths(s["features"], base)):
                    if t.is_file():
                        out[str(t)] = t
                        break
        return out

    def make_plan(self) -> PairPlan:
        a = self.args
        train, evals, errors, skipped = [], [], [], []
        for path in a.jsonl:
            f = read_atom_jsonl(path, a.sub_task)
            rows = f.rows
            # per file, as the authors' loader: split every row its filter keeps, then drop what cannot be used
            # (malformed rows, and the unsure ones with --drop-unsure), so the ids of each split match theirs
            tr, ev = split_indices(len(rows), a.split_seed, a.eval_fraction)
            for idx, dest in ((tr, train), (ev, evals)):
                for i in idx:
                    r = rows[i]
                    if isinstance(r, InputError):
                        errors.append(r)
                    elif not (a.drop_unsure and r.degree == "Negligibly better/unsure"):
                        dest.append(r)
            errors += f.errors
            skipped += f.skipped
        return PairPlan(train + evals, len(train), errors, skipped)

    def build_shard(self, job):
        for i in job.indices():
            rec = self.pair_plan.item(i)
            try:
                if isinstance(rec, InputError):
                    raise rec
                yield Sample(self.key(i), self._members(job.config, rec))
            except InputError as exc:
                yield self.reject(exc)

    def _members(self, config: str, rec: AtomRecord) -> dict:
        a = self.args
        base = Path(rec.source).parent
        samples = (rec.chosen, rec.rejected)
        codes = tuple(load_tokens(s["features"], base, s.get("tokens"), a.codebook_size) for s in samples)
        if config == "trl":  # a TRL row is text made of the token codes: the features are not needed
            meta = {"id": rec.id, "prompt": rec.prompt, "label_smoothing": rec.label_smoothing,
                    "source": {"file": rec.source, "line": rec.line}}
            return self.pair_members(config, meta, None, None, codes)
        paths = [resolve(s["features"], base) for s in samples]
        motions = [load_features(p, a.min_frames, a.max_frames) for p in paths]
        meta = {
            "id": rec.id, "prompt": rec.prompt, "sub_task": rec.sub_task or "", "degree": rec.degree,
            "label_smoothing": rec.label_smoothing, "chosen_frames": int(motions[0].shape[0]),
            "rejected_frames": int(motions[1].shape[0]), "chosen_tokens": codes[0] or [],
            "rejected_tokens": codes[1] or [], "user": str(rec.user or ""), "split_seed": a.split_seed,
            "source": {"file": rec.source, "line": rec.line, "chosen_features": rec.chosen["features"],
                       "rejected_features": rec.rejected["features"]},
        }
        return self.pair_members(config, meta, motions[0], motions[1], codes)

    def card_body(self, manifest: dict, folder: Path) -> str:
        p = self.pair_plan
        entries, errors, skipped = p.entries, p.errors, p.skipped
        by_task, by_degree = {}, {}
        for r in entries:
            by_task[r.sub_task or "unknown"] = by_task.get(r.sub_task or "unknown", 0) + 1
            by_degree[r.degree] = by_degree.get(r.degree, 0) + 1
        lines = ["## MotionPrefer (AToM import)", "",
                 f"{len(entries)} annotated pairs ({p.n_train} train), {len(skipped)} rows skipped by the "
                 f"annotators (dropped), {len(errors)} malformed rows (listed above). Split: seed "
                 f"{self.args.split_seed}, {self.args.eval_fraction:g} to eval, as AToM's loader.", "",
                 "| sub-task | pairs |", "|---|---|", *[f"| {k} | {v} |" for k, v in sorted(by_task.items())], "",
                 "| degree | label smoothing | pairs |", "|---|---|---|",
                 *[f"| {k} | {LABEL_SMOOTHING[k]} | {v} |" for k, v in by_degree.items()], "", TRL_USAGE]
        return "\n".join(lines)


TRL_USAGE = """Train with TRL (config `trl`, one row per pair):

```python
import datasets, trl
train = datasets.load_dataset("<this repo or folder>", "trl", split="train")  # prompt, chosen, rejected, ...
trainer = trl.DPOTrainer(model=model, args=trl.DPOConfig(...), train_dataset=train, processing_class=tokenizer)
```"""


# ---------------------------------------------------------------------------------------- judged pairs
def degree_for_gap(gap: float) -> str:
    """A judged score gap (0–10 scale) as an AToM degree: ≥6 Much better, ≥4 Better, ≥2 Slightly better."""
    if gap >= 6:
        return "Much better"
    if gap >= 4:
        return "Better"
    if gap >= 2:
        return "Slightly better"
    return "Negligibly better/unsure"


@dataclass(frozen=True)
class CandidatePrompt:
    """One line of a candidates file: a prompt and the motions generated for it."""

    id: str
    prompt: str
    sub_task: str
    candidates: tuple[dict, ...]
    source: str
    line: int


def read_candidates(path: str | os.PathLike, sub_task: str | None = None) -> tuple[list[CandidatePrompt], list[InputError]]:
    """Parse a candidates JSONL: ``{"id", "prompt", "sub_task"?, "candidates": [path | {"features", "tokens"?,
    "seed"?}, …]}`` per line (paths relative to the file)."""
    path = Path(path)
    if not path.is_file():
        raise VidalignError(f"{path}: candidates file not found; pass the JSONL of prompts and candidate motions")
    out, errors = [], []
    default_task = sub_task or infer_sub_task(path.resolve())
    for n, raw in enumerate(read_text(path, "candidates file").splitlines(), start=1):
        if not raw.strip():
            continue
        where = f"{path}:{n}"
        try:
            obj = parse_json(raw, path, n)
            if not isinstance(obj, dict):
                raise InputError(where, None, "line is not a JSON object", "one object per line")
            prompt, cands = obj.get("prompt"), obj.get("candidates")
            if not isinstance(prompt, str) or not prompt.strip():
                raise InputError(where, "prompt", "missing or empty", "give the text prompt")
            if not isinstance(cands, list) or len(cands) < 2:
                raise InputError(where, "candidates", "needs a list of at least 2 motions", "list the .npy paths")
            cands = [{"features": c} if isinstance(c, str) else c for c in cands]
            if not all(isinstance(c, dict) and isinstance(c.get("features"), str) for c in cands):
                raise InputError(where, "candidates", "every candidate needs a features path",
                                 'use "path.npy" or {"features": "path.npy"}')
            task = obj.get("sub_task") or default_task
            if task not in SUB_TASKS:
                raise InputError(where, "sub_task", f"value {task!r} is unknown",
                                 f"set it per line or pass --sub-task ({', '.join(SUB_TASKS)})")
            out.append(CandidatePrompt(str(obj.get("id", n)), prompt.strip(), task, tuple(cands), str(path), n))
        except InputError as exc:
            errors.append(exc)
    return out, errors


@register_builder
class JudgedPairsBuilder(_MotionPairs):
    """``vidalign build motionprefer``: render candidates, judge them with a VLM, pair best against worst."""

    name = "motionprefer"
    description = ("MotionPrefer-style preference pairs: text-to-motion candidates rendered as stick figures, "
                   "scored 0-10 by a vision-language judge with a per-sub-task rubric (AToM), best vs worst.")
    sample_mb = 0.6

    @dataclass
    class Args(MotionPairOptions):
        candidates: str = field(default="", metadata={"help": "JSONL: id, prompt, sub_task, candidates (.npy paths)"})
        sub_task: str | None = field(default=None, metadata={
            "help": "sub-task of lines that do not name one", "choices": list(SUB_TASKS)})
        judge: str = field(default="openai", metadata={"help": "judge backend"})
        judge_url: str = field(default="https://api.openai.com/v1", metadata={"help": "OpenAI-compatible API base URL"})
        judge_model: str = field(default="gpt-4o", metadata={"help": "model name sent to the endpoint"})
        judge_key_env: str = field(default="OPENAI_API_KEY", metadata={"help": "environment variable with the API key"})
        judge_cache: str | None = field(default=None, metadata={
            "help": "JSONL cache of verdicts (default: <candidates>.judge_cache.jsonl)"})
        judge_rpm: float = field(default=60.0, metadata={"help": "requests per minute per worker (0: no limit)",
                                                         "output": False})
        judge_timeout: float = field(default=60.0, metadata={"help": "seconds per request", "output": False})
        judge_retries: int = field(default=4, metadata={"help": "retries on 429/5xx/timeouts/malformed replies",
                                                        "output": False})
        judge_backoff: float = field(default=2.0, metadata={"help": "first retry wait in s (doubles each retry)",
                                                            "output": False})
        judge_frames: int = field(default=8, metadata={"help": "frames shown per candidate"})
        judge_layout: str = field(default="sheet", metadata={"help": "one contact sheet or separate frames",
                                                              "choices": ["sheet", "frames"]})
        pair_mode: str = field(default="best-worst", metadata={"help": "best-worst or gap",
                                                                "choices": ["best-worst", "gap"]})
        pairs_per_prompt: int = field(default=3, metadata={"help": "pairs per prompt (AToM: 3 of 10 candidates)"})
        min_gap: float = field(default=1.0, metadata={"help": "smallest score gap that makes a pair"})
        render_size: int = field(default=256, metadata={"help": "stick-figure frame size (pixels)"})
        videos: bool = field(default=False, metadata={"help": "also store chosen.mp4/rejected.mp4 renders"})
        mean: str | None = field(default=None, metadata={"help": "Mean.npy when features are normalised"})
        std: str | None = field(default=None, metadata={"help": "Std.npy when features are normalised"})

        def __post_init__(self):
            require(bool(self.candidates), "motionprefer", "candidates", self.candidates,
                    "pass --candidates FILE.jsonl (prompts with their generated motions)")
            require((self.mean is None) == (self.std is None), "motionprefer", "mean", self.mean,
                    "give --mean and --std together")
            require(self.pairs_per_prompt >= 0, "motionprefer", "pairs_per_prompt", self.pairs_per_prompt, "use >= 0")
            _check_common("motionprefer", self)

    def make_plan(self) -> PairPlan:
        prompts, errors = read_candidates(self.args.candidates, self.args.sub_task)
        self._preflight(prompts)
        tr, ev = split_indices(len(prompts), self.args.split_seed, self.args.eval_fraction)
        return PairPlan([prompts[i] for i in tr] + [prompts[i] for i in ev], len(tr), errors)

    def _preflight(self, prompts: list) -> None:
        """Every cheap check before the first judge call (which costs money): each candidate's features load
        (shape, length, finite values), its token file exists when the trl config is built, the normalisation
        files load. Under ``--on-error raise`` the first failure stops the build here; under ``skip`` the
        candidate is rejected without being judged."""
        a = self.args
        self._bad: dict[tuple[str, int], InputError] = {}
        for f in (a.mean, a.std):
            if f is not None:
                load_npy(f)
        for cp in prompts:
            base = Path(cp.source).parent
            for k, cand in enumerate(cp.candidates):
                try:
                    load_features(resolve(cand["features"], base), a.min_frames, a.max_frames)
                    if a.trl and load_tokens(cand["features"], base, cand.get("tokens"), a.codebook_size) is None:
                        raise InputError(resolve(cand["features"], base), "tokens", f"candidate {k} of prompt "
                                         f"{cp.id!r} has no MotionGPT token file (<stem>_token.npy)",
                                         "tokenise the motions first, or build with --no-trl")
                except InputError as exc:
                    if self.on_error == "raise":
                        raise
                    self._bad[(cp.id, k)] = exc

    def inputs(self) -> dict:
        out = {"candidates": Path(self.args.candidates)}
        for f in ("mean", "std"):
            if getattr(self.args, f):
                out[f"--{f}"] = Path(getattr(self.args, f))
        for cp in self.pair_plan.entries:
            base = Path(cp.source).parent
            for cand in cp.candidates:
                out[str(resolve(cand["features"], base))] = resolve(cand["features"], base)
        return out

    @functools.cached_property
    def judge(self):
        from vidalign.datasets_builders.motion_judge import JudgeConfig, make_judge

        a = self.args
        cache = a.judge_cache or str(Path(a.candidates).with_suffix("")) + ".judge_cache.jsonl"
        cfg = JudgeConfig(url=a.judge_url, model=a.judge_model, api_key_env=a.judge_key_env, cache=cache,
                          rpm=a.judge_rpm, timeout_s=a.judge_timeout, max_retries=a.judge_retries,
                          backoff_s=a.judge_backoff,
                          n_frames=a.judge_frames, layout=a.judge_layout)
        return make_judge(a.judge, cfg)

    @functools.cached_property
    def _norm(self):
        a = self.args
        if a.mean is None:
            return None, None
        return (load_npy(a.mean), load_npy(a.std))

    def build_shard(self, job):
        for i in job.indices():
            item = self.pair_plan.item(i)
            if isinstance(item, InputError):
                yield self.reject(item)
                continue
            yield from self._prompt_samples(job.config, i, item)

    def _prompt_samples(self, config: str, index: int, cp: CandidatePrompt):
        from vidalign.datasets_builders.motion_judge import select_pairs
        from vidalign.motion import (
            StickFigureStyle,
            features_to_joints,
            render_motion_mp4,
            render_stick_figure,
        )

        a = self.args
        base = Path(cp.source).parent
        style = StickFigureStyle(size=a.render_size)
        mean, std = self._norm
        motions, codes, scores, verdicts = [], [], [], []
        for k, cand in enumerate(cp.candidates):
            path = resolve(cand["features"], base)
            try:
                if (cp.id, k) in getattr(self, "_bad", {}):
                    raise self._bad[(cp.id, k)]
                feats = load_features(path, a.min_frames, a.max_frames)
                tok = load_tokens(cand["features"], base, cand.get("tokens"), a.codebook_size)
            except InputError as exc:
                motions.append(None)
                codes.append(None)
                scores.append(None)
                verdicts.append(None)
                yield self.reject(exc)
                continue
            joints = features_to_joints(feats, mean, std)
            v = self.judge.judge(cp.prompt, cp.sub_task, render_stick_figure(joints, style))
            if not v.ok:
                yield self.reject(InputError(path, "judge", f"candidate {k} of prompt {cp.id!r} was not scored: "
                                             f"{v.error}", "rerun later: scored candidates are cached"))
            motions.append((feats, joints))
            codes.append(tok)
            scores.append(v.score)
            verdicts.append(v)
        for n, pc in enumerate(select_pairs(scores, a.pair_mode, a.pairs_per_prompt, a.min_gap)):
            degree = degree_for_gap(pc.gap)
            (fc, jc), (fr, jr) = motions[pc.chosen], motions[pc.rejected]
            meta = {
                "id": f"{cp.id}-{pc.chosen}-{pc.rejected}", "prompt": cp.prompt, "sub_task": cp.sub_task,
                "degree": degree, "label_smoothing": LABEL_SMOOTHING[degree], "chosen_frames": int(fc.shape[0]),
                "rejected_frames": int(fr.shape[0]), "chosen_tokens": codes[pc.chosen] or [],
                "rejected_tokens": codes[pc.rejected] or [], "chosen_score": float(scores[pc.chosen]),
                "rejected_score": float(scores[pc.rejected]), "gap": float(pc.gap),
                "scores": [s if s is None else float(s) for s in scores], "judge": self.judge.model,
                "chosen_reason": verdicts[pc.chosen].reason, "rejected_reason": verdicts[pc.rejected].reason,
                "split_seed": a.split_seed,
                "source": {"file": cp.source, "line": cp.line, "chosen_index": pc.chosen, "rejected_index": pc.rejected,
                           "chosen_features": cp.candidates[pc.chosen]["features"],
                           "rejected_features": cp.candidates[pc.rejected]["features"],
                           "chosen_seed": cp.candidates[pc.chosen].get("seed"),
                           "rejected_seed": cp.candidates[pc.rejected].get("seed")},
            }
            extra = {}
            if a.videos and config == "default":
                extra = {"chosen.mp4": render_motion_mp4(jc, style=style),
                         "rejected.mp4": render_motion_mp4(jr, style=style)}
            try:
                members = self.pair_members(config, meta, fc, fr, (codes[pc.chosen], codes[pc.rejected]), extra)
            except InputError as exc:
                yield self.reject(exc)
                continue
            yield Sample(f"{self.key(index)}-{n}", members)

    def card_body(self, manifest: dict, folder: Path) -> str:
        a = self.args
        return "\n".join([
            "## MotionPrefer (judged)", "",
            f"Candidates from `{a.candidates}`, judged by `{a.judge_model}` at `{a.judge_url}` "
            f"({a.judge_frames} frames, {a.judge_layout}); pairs: {a.pair_mode}, {a.pairs_per_prompt} per prompt, "
            f"score gap ≥ {a.min_gap:g}. Degree from the gap: ≥6 Much better, ≥4 Better, ≥2 Slightly better, "
            "else Negligibly better/unsure. The judge rubric is vidalign's (AToM did not publish theirs).", "",
            TRL_USAGE])
