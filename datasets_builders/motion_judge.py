"""Judging rendered motions with a vision-language model, and turning scores into preference pairs.

AToM shows each candidate motion to GPT-4o as stick-figure frames with a task-specific rubric and keeps the
score. :class:`OpenAICompatibleJudge` does that against any OpenAI-compatible ``/chat/completions`` endpoint
(OpenAI, vLLM, SGLang, LM Studio, …) with the standard library only: frames go as base64 JPEG ``image_url`` parts
(one contact sheet by default), the reply must carry a 0–10 score (JSON ``{"score": …}`` or ``Score: N``).
Calls are rate limited (requests per minute, per process), retried with exponential backoff on 429, 5xx,
timeouts and malformed replies (``Retry-After`` honoured), and cached as JSON lines keyed by
``sha256(model, rubric with the prompt, image bytes)`` — a rerun pays only for what failed before. A candidate
whose judging still fails comes back as a :class:`Verdict` with ``error`` set: the caller lists it and pairs
the others, nothing is lost silently. The authors' rubric is not public; :data:`RUBRICS` is ours.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import math
import os
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np

from vidalign.errors import ConfigError, VidalignError, require

SCORE_MIN, SCORE_MAX = 0.0, 10.0
PAIR_MODES = ("best-worst", "gap")
LAYOUTS = ("sheet", "frames")

_REPLY_FORMAT = ('Reply with JSON only: {"score": <integer 0-10>, "reason": "<one sentence>"}. '
                 "10 means the description is fully satisfied, 0 means not at all.")
RUBRICS = {
    "integrity": (
        "You rate generated human motions shown as stick-figure frames in time order (left to right, top to "
        "bottom). Task: INTEGRITY. Check that EVERY action in the description is performed, each recognisably. "
        "Start from 10 and subtract about 10/N for each of the N listed actions that is missing or unrecognisable; "
        "subtract 1-2 for unnatural or broken poses. Ignore the order of the actions. " + _REPLY_FORMAT),
    "temporal": (
        "You rate generated human motions shown as stick-figure frames in time order (left to right, top to "
        "bottom). Task: TEMPORAL ORDER. Check that the actions happen in exactly the order the description "
        "gives ('then', 'first', 'finally'). Give at most 3 if two actions are swapped, at most 5 if an action is "
        "missing, 8-10 only if all actions appear in the stated order. " + _REPLY_FORMAT),
    "frequency": (
        "You rate generated human motions shown as stick-figure frames in time order (left to right, top to "
        "bottom). Task: FREQUENCY. Count how many times each counted action is performed and compare with the "
        "number in the description. Give 10 for exact counts, subtract 3 per repetition too many or too few, "
        "and give at most 2 if the action is absent. " + _REPLY_FORMAT),
}


class JudgeReplyError(ValueError):
    """The endpoint answered, but not with a usable score (retried, then recorded as a failure)."""


@dataclass
class Verdict:
    """One candidate's judgement: ``score`` in [0, 10], or ``error`` after every retry failed."""

    score: float | None
    reason: str = ""
    error: str | None = None
    cached: bool = False
    attempts: int = 0

    @property
    def ok(self) -> bool:
        return self.score is not None and self.error is None


def parse_score(text: str) -> tuple[float, str]:
    """``(score, reason)`` from a judge reply: JSON ``{"score": …}`` (code fences allowed) or ``Score: N``."""
    if not isinstance(text, str) or not text.strip():
        raise JudgeReplyError("empty reply")
    body = re.sub(r"^```(?:json)?\s*|\s*```$", "", text.strip())
    score, reason = None, ""
    m = re.search(r"\{.*\}", body, re.S)
    if m:
        try:
            obj = json.loads(m.group(0))
        except json.JSONDecodeError:
            obj = None
        if isinstance(obj, dict) and "score" in obj:
            score, reason = obj["score"], str(obj.get("reason", ""))
    if score is None:
        m = re.search(r"score\s*(?:is|of|[:=])?\s*(-?\d+(?:\.\d+)?)", body, re.I)
        if m:
            score, reason = m.group(1), body
    try:
        value = float(score)
    except (TypeError, ValueError):
        raise JudgeReplyError(f"no score in reply {text[:80]!r}") from None
    if not (math.isfinite(value) and SCORE_MIN <= value <= SCORE_MAX):
        raise JudgeReplyError(f"score {value} outside [{SCORE_MIN:g}, {SCORE_MAX:g}]")
    return value, reason


def rubric_text(sub_task: str, prompt: str) -> str:
    """The full instruction for one candidate (part of the cache key)."""
    require(sub_task in RUBRICS, "judge", "sub_task", sub_task, f"use one of {', '.join(RUBRICS)}")
    return f"{RUBRICS[sub_task]}\nDescription: {prompt}"


def judge_images(frames: np.ndarray, n_frames: int = 8, layout: str = "sheet", quality: int = 85) -> list[bytes]:
    """JPEG images sent for one clip: a contact sheet of ``n_frames`` frames, or the frames one by one."""
    from vidalign.media import encode_jpeg
    from vidalign.motion import contact_sheet, sample_frame_indices

    f = np.asarray(frames)
    require(f.ndim == 4 and f.shape[0] > 0 and f.dtype == np.uint8, "judge", "frames", f.shape,
            "pass rendered uint8 frames [T, H, W, 3]")
    if layout == "sheet":
        return [encode_jpeg(contact_sheet(f, n_frames, cols=min(4, n_frames)), quality)]
    return [encode_jpeg(f[i], quality) for i in sample_frame_indices(f.shape[0], n_frames)]


def cache_key(model: str, rubric: str, images: Sequence[bytes]) -> str:
    h = hashlib.sha256()
    for part in (model.encode(), rubric.encode(), *images):
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h.hexdigest()


class JudgeCache:
    """Append-only JSON-lines cache ``{"key", "score", "reason", "model"}``; unreadable lines are ignored.

    Each entry is one ``os.write`` on an ``O_APPEND`` descriptor, so several worker processes can share a file.
    """

    def __init__(self, path: str | os.PathLike | None):
        self.path = Path(path) if path else None
        self.entries: dict[str, dict] = {}
        self.bad_lines = 0
        self._lock = threading.Lock()
        if self.path is not None and self.path.exists():
            for line in self.path.read_text(encoding="utf-8", errors="replace").splitlines():
                try:
                    rec = json.loads(line)
                    self.entries[rec["key"]] = rec
                except (json.JSONDecodeError, KeyError, TypeError):
                    self.bad_lines += line.strip() != ""

    def get(self, key: str) -> dict | None:
        return self.entries.get(key)

    def put(self, key: str, record: dict) -> None:
        rec = {"key": key, **record}
        with self._lock:
            self.entries[key] = rec
            if self.path is None:
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, (json.dumps(rec, ensure_ascii=False) + "\n").encode("utf-8"))
            finally:
                os.close(fd)


class RateLimiter:
    """At most ``rpm`` request starts per minute (evenly spaced); ``rpm <= 0`` means no limit."""

    def __init__(self, rpm: float, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        self.interval = 60.0 / rpm if rpm > 0 else 0.0
        self.clock, self.sleep = clock, sleep
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        if self.interval <= 0:
            return
        with self._lock:
            now = self.clock()
            start = max(now, self._next)
            self._next = start + self.interval
        if start > now:
            self.sleep(start - now)


# ------------------------------------------------------------------------------------------------ judges
class Judge:
    """Scores one rendered candidate for a prompt and sub-task; subclasses implement :meth:`judge`."""

    name: ClassVar[str] = ""
    model: str = ""

    def judge(self, prompt: str, sub_task: str, frames: np.ndarray) -> Verdict:
        raise VidalignError(f"judge {type(self).__name__} does not implement judge()")

    def judge_all(self, prompt: str, sub_task: str, candidates: Sequence[np.ndarray]) -> list[Verdict]:
        return [self.judge(prompt, sub_task, frames) for frames in candidates]


JUDGES: dict[str, type[Judge]] = {}


def register_judge(cls: type[Judge]) -> type[Judge]:
    JUDGES[cls.name] = cls
    return cls


@dataclass(frozen=True)
class JudgeConfig:
    """Endpoint, model and the client's manners (retries, rate, cache); the key comes from ``api_key_env``."""

    url: str
    model: str
    api_key_env: str = "OPENAI_API_KEY"
    timeout_s: float = 60.0
    max_retries: int = 4
    backoff_s: float = 2.0
    max_backoff_s: float = 60.0
    rpm: float = 60.0
    cache: str | None = None
    n_frames: int = 8
    layout: str = "sheet"
    jpeg_quality: int = 85
    max_tokens: int = 200
    temperature: float = 0.0
    detail: str = "auto"
    extra_headers: dict = field(default_factory=dict)

    def __post_init__(self):
        require(self.url.startswith(("http://", "https://")), "judge", "url", self.url,
                "give the API base URL, e.g. https://api.openai.com/v1 (--judge-url)")
        require(bool(self.model), "judge", "model", self.model, "name the model, e.g. gpt-4o (--judge-model)")
        require(self.timeout_s > 0, "judge", "timeout_s", self.timeout_s, "use a timeout > 0 seconds")
        require(self.max_retries >= 0, "judge", "max_retries", self.max_retries, "use >= 0 retries")
        require(self.backoff_s >= 0 and self.max_backoff_s >= 0, "judge", "backoff_s", self.backoff_s, "use >= 0")
        require(self.rpm >= 0, "judge", "rpm", self.rpm, "use requests per minute >= 0 (0: unlimited)")
        require(1 <= self.n_frames <= 64, "judge", "n_frames", self.n_frames, "send 1..64 frames")
        require(self.layout in LAYOUTS, "judge", "layout", self.layout, f"use one of {', '.join(LAYOUTS)}")
        require(1 <= self.jpeg_quality <= 100, "judge", "jpeg_quality", self.jpeg_quality, "use 1..100")
        require(self.detail in ("auto", "low", "high"), "judge", "detail", self.detail, "use auto, low or high")

    @property
    def endpoint(self) -> str:
        base = self.url.rstrip("/")
        return base if base.endswith("/chat/completions") else base + "/chat/completions"


class _Retryable(Exception):
    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


@register_judge
class OpenAICompatibleJudge(Judge):
    """A vision-language model behind an OpenAI-compatible chat-completions endpoint (see module docstring)."""

    name = "openai"

    def __init__(self, config: JudgeConfig, sleep: Callable[[float], None] = time.sleep):
        self.config = config
        self.model = config.model
        self.cache = JudgeCache(config.cache)
        self.limiter = RateLimiter(config.rpm, sleep=sleep)
        self.sleep = sleep
        self.requests = 0  # HTTP requests sent (tests and summaries)
        self._key = os.environ.get(config.api_key_env) or None

    def payload(self, rubric: str, images: Sequence[bytes]) -> dict:
        parts = [{"type": "text", "text": rubric}]
        for img in images:
            url = "data:image/jpeg;base64," + base64.b64encode(img).decode("ascii")
            parts.append({"type": "image_url", "image_url": {"url": url, "detail": self.config.detail}})
        return {"model": self.config.model, "messages": [{"role": "user", "content": parts}],
                "max_tokens": self.config.max_tokens, "temperature": self.config.temperature}

    def _post(self, body: bytes) -> str:
        headers = {"Content-Type": "application/json", **self.config.extra_headers}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        req = urllib.request.Request(self.config.endpoint, data=body, headers=headers, method="POST")
        self.requests += 1
        try:
            with urllib.request.urlopen(req, timeout=self.config.timeout_s) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:200].decode("utf-8", "replace")
            if exc.code == 429 or exc.code >= 500:
                raise _Retryable(f"HTTP {exc.code}: {detail}", _retry_after(exc.headers.get("Retry-After"))) from None
            if exc.code in (401, 403):
                raise VidalignError(f"judge endpoint {self.config.endpoint}: HTTP {exc.code} ({detail}); set a valid "
                                    f"API key in ${self.config.api_key_env}") from None
            if exc.code == 404:
                raise VidalignError(f"judge endpoint {self.config.endpoint}: HTTP 404; check --judge-url (the API "
                                    "base, e.g. https://api.openai.com/v1) and --judge-model") from None
            raise JudgeReplyError(f"HTTP {exc.code}: {detail}") from None
        except TimeoutError as exc:
            raise _Retryable(f"timeout after {self.config.timeout_s:g} s") from exc
        except urllib.error.URLError as exc:
            raise _Retryable(f"connection failed ({exc.reason})") from exc
        except (http.client.HTTPException, ConnectionError) as exc:
            raise _Retryable(f"connection broken ({type(exc).__name__})") from exc
        try:
            reply = json.loads(raw)
            return reply["choices"][0]["message"]["content"]
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, IndexError, TypeError) as exc:
            raise JudgeReplyError(f"reply is not a chat completion ({type(exc).__name__}): {raw[:80]!r}") from None

    def judge(self, prompt: str, sub_task: str, frames: np.ndarray) -> Verdict:
        cfg = self.config
        rubric = rubric_text(sub_task, prompt)
        images = judge_images(frames, cfg.n_frames, cfg.layout, cfg.jpeg_quality)
        key = cache_key(cfg.model, rubric, images)
        hit = self.cache.get(key)
        if hit is not None:
            return Verdict(float(hit["score"]), hit.get("reason", ""), cached=True)
        body = json.dumps(self.payload(rubric, images)).encode("utf-8")
        last: Exception | None = None
        for attempt in range(cfg.max_retries + 1):
            if attempt:
                self.sleep(self._backoff(attempt, getattr(last, "retry_after", None)))
            self.limiter.wait()
            try:
                score, reason = parse_score(self._post(body))
            except (_Retryable, JudgeReplyError) as exc:  # 429/5xx/timeouts and malformed replies: try again
                last = exc
                continue
            self.cache.put(key, {"score": score, "reason": reason, "model": cfg.model})
            return Verdict(score, reason, attempts=attempt + 1)
        return Verdict(None, error=f"{last} (after {cfg.max_retries + 1} attempts)", attempts=cfg.max_retries + 1)

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        wait = min(self.config.max_backoff_s, self.config.backoff_s * 2 ** (attempt - 1))
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.config.max_backoff_s))
        return wait


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def make_judge(name: str, config: JudgeConfig) -> Judge:
    """A registered judge by name (``openai``: any OpenAI-compatible chat-completions endpoint)."""
    if name not in JUDGES:
        raise ConfigError(f"judge {name!r} is unknown; choose one of: {', '.join(sorted(JUDGES))}")
    return JUDGES[name](config)


# ------------------------------------------------------------------------------------------ score → pairs
@dataclass(frozen=True)
class PairChoice:
    chosen: int
    rejected: int
    gap: float


def select_pairs(scores: Sequence[float | None], mode: str = "best-worst", pairs_per_prompt: int = 1,
                 min_gap: float = 0.0) -> list[PairChoice]:
    """Candidate index pairs from scores (``None``: failed or invalid, never paired).

    ``best-worst``: the k-th best against the k-th worst, k < ``pairs_per_prompt``, each candidate used once.
    ``gap``: every pair whose score gap is at least ``min_gap``, largest gaps first, at most
    ``pairs_per_prompt`` (0: no cap). Equal scores never make a pair; ties rank by candidate index.
    """
    require(mode in PAIR_MODES, "pairs", "mode", mode, f"use one of {', '.join(PAIR_MODES)}")
    require(pairs_per_prompt >= 0, "pairs", "pairs_per_prompt", pairs_per_prompt, "use >= 0 (0: no cap, gap mode)")
    require(min_gap >= 0, "pairs", "min_gap", min_gap, "use a gap >= 0")
    valid = [(float(s), i) for i, s in enumerate(scores) if s is not None and math.isfinite(float(s))]
    ranked = [i for _, i in sorted(valid, key=lambda t: (-t[0], t[1]))]
    score = dict((i, s) for s, i in valid)
    out: list[PairChoice] = []
    if mode == "best-worst":
        for k in range(max(1, pairs_per_prompt)):
            a, b = k, len(ranked) - 1 - k
            if a >= b:
                break
            gap = score[ranked[a]] - score[ranked[b]]
            if gap > 0 and gap >= min_gap:
                out.append(PairChoice(ranked[a], ranked[b], gap))
        return out
    cands = [PairChoice(i, j, score[i] - score[j]) for i in ranked for j in ranked
             if score[i] - score[j] > 0 and score[i] - score[j] >= min_gap]
    cands.sort(key=lambda p: (-p.gap, p.chosen, p.rejected))
    return cands[:pairs_per_prompt] if pairs_per_prompt else cands
