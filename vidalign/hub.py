"""Publishing a dataset folder on the Hugging Face Hub (``vidalign push``).

What is uploaded is decided here, from the folder's own records, never by globbing the data folder: the card
(``README.md``), ``manifest.json``, every shard the manifest lists (whatever its extension), the format's root files
that exist (``empty_prompt_embeds.npy`` of a latent dataset, :data:`vidalign.format.ROOT_FILES`), ``previews/``, and
every file of the folder the card refers to (links, images, and file names in backticks such as ``prompts.csv``
or ``prompts.jsonl``). Temporaries, locks, caches and slice manifests stay behind. A card that still names a
local absolute path (``/home/...``) is refused: the card is what everyone reads on the Hub.

The push checks before it uploads — a token (``HF_TOKEN`` or ``hf auth login``), the Hub reachable and the token
accepted (``whoami``) — so a missing token or network fails in a second with one line. It uploads with the
installed ``huggingface_hub``: ``upload_large_folder`` where that version has it (0.25–1.x: resumable,
multi-commit), otherwise ``upload_folder``, which in huggingface_hub ≥ 2 is the resumable multi-commit upload
(through Xet when ``hf_xet`` is installed; ``HF_HUB_DISABLE_XET=1`` makes it use Git LFS). Rerunning an
interrupted push resumes it: files already on the Hub are not sent again.
"""

from __future__ import annotations

import fnmatch
import glob
import os
import re
from pathlib import Path, PurePosixPath

from vidalign.errors import VidalignError
from vidalign.format import CARD_NAME, MANIFEST_NAME, PREVIEWS_DIR, ROOT_FILES

# never uploaded, even when listed or linked: temporaries, locks, caches, slice manifests, hidden files
IGNORE_PATTERNS = ["*.tmp", "*.lock", "*.part", "*.incomplete", "*~", "manifest.parts/*", ".cache/*",
                   ".huggingface/*", "__pycache__/*", ".*", "*/.*"]

_LINK_RE = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")  # [text](target), ![alt](target)
_SRC_RE = re.compile(r"""<(?:img|video|source|a)\b[^>]*?\b(?:src|href)\s*=\s*["']([^"']+)["']""", re.I)
_TICK_RE = re.compile(r"`([^`\s]+)`")
# an absolute POSIX path with at least two components (/home/me, /tmp/x/ds), not part of a URL or a fraction
_SEG = r"\.?[\w~+@-]+(?:\.[\w~+@-]+)*"  # a path component (a final dot is punctuation, not part of it)
_ABS_RE = re.compile(rf"(?<![\w.:/~%-])(/{_SEG}(?:/{_SEG})+/?)")
_WIN_ABS_RE = re.compile(r"(?<![\w])([A-Za-z]:\\[^\s`'\"<>|]+)")


def _ignored(rel: str) -> bool:
    return any(fnmatch.fnmatch(rel, pat) for pat in IGNORE_PATTERNS)


def _inside(folder: Path, target: str) -> str | None:
    """``target`` (a card reference) as a path relative to ``folder``, or None if it points elsewhere."""
    if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith(("#", "/", "\\")):
        return None  # URL, anchor or absolute path
    rel = PurePosixPath(target.split("#", 1)[0].split("?", 1)[0])
    if not rel.parts or ".." in rel.parts:
        return None
    return rel.as_posix().removeprefix("./")


def card_references(folder: str | Path) -> tuple[list[str], list[str]]:
    """Files of ``folder`` the card refers to: (present, missing). Links and images must exist; a name in
    backticks counts only when such a file exists (backticks also quote member names and commands)."""
    folder = Path(folder)
    text = (folder / CARD_NAME).read_text(encoding="utf-8")
    present, missing = set(), set()
    for target in _LINK_RE.findall(text) + _SRC_RE.findall(text):
        rel = _inside(folder, target)
        if rel is None:
            continue
        (present if (folder / rel).is_file() else missing).add(rel)
    for token in _TICK_RE.findall(text):
        rel = _inside(folder, token)
        if rel is not None and (folder / rel).is_file():
            present.add(rel)
    return sorted(p for p in present if not _ignored(p)), sorted(missing)


def manifest_files(folder: str | Path) -> list[str]:
    """Every shard path the manifest lists, in every config."""
    from vidalign import manifest as mf

    m = mf.load(folder)
    return sorted({rel for entry in m["configs"].values() for rel in entry.get("shards", {})})


def upload_files(folder: str | Path) -> list[str]:
    """The relative paths ``push`` uploads, sorted (what the Hub repository will hold, besides .gitattributes)."""
    folder = Path(folder)
    files = {CARD_NAME}
    if (folder / MANIFEST_NAME).is_file():
        files.add(MANIFEST_NAME)
        files.update(manifest_files(folder))
    files.update(name for name in ROOT_FILES if (folder / name).is_file())
    previews = folder / PREVIEWS_DIR
    if previews.is_dir():
        files.update(p.relative_to(folder).as_posix() for p in previews.rglob("*") if p.is_file())
    files.update(card_references(folder)[0])
    return sorted(f for f in files if not _ignored(f))


def local_paths(text: str) -> list[str]:
    """Absolute local paths (POSIX with two or more components, or Windows drive paths) written in ``text``."""
    return sorted(set(_ABS_RE.findall(text)) | set(_WIN_ABS_RE.findall(text)))


def portable_text(text: str, folder: str | Path) -> str:
    """``text`` with absolute local paths made shareable: the dataset folder (and paths inside it) relative to
    the folder's parent, any other path shortened to its last component. Used on the card before it is written."""
    root = Path(os.path.abspath(folder))

    def repl(m: re.Match) -> str:
        raw = m.group(1)
        p = Path(os.path.abspath(raw.rstrip("/\\")))
        try:
            return (Path(root.name) / p.relative_to(root)).as_posix().removesuffix("/.")
        except ValueError:
            return p.name or raw
    text = _ABS_RE.sub(repl, text)
    return _WIN_ABS_RE.sub(lambda m: re.split(r"[\\/]", m.group(1).rstrip("\\/"))[-1], text)


def check_folder(folder: str | Path, verify: bool = True) -> list[str]:
    """Everything ``push`` checks locally before it contacts the Hub; returns the files to upload."""
    from vidalign import manifest as mf

    folder = Path(folder)
    if not (folder / CARD_NAME).exists():
        raise VidalignError(f"{folder}: no {CARD_NAME} dataset card; finish the build (all shards) before pushing")
    if verify:
        problems = mf.verify(folder)
        if problems:
            raise VidalignError(f"{folder}: verification failed before push: {problems[0]} "
                                f"({len(problems)} problem(s); run vidalign verify)")
    paths = local_paths((folder / CARD_NAME).read_text(encoding="utf-8"))
    if paths:
        raise VidalignError(f"{folder / CARD_NAME} names the local path {paths[0]!r}; the card is public on the Hub: "
                            "rewrite it with `vidalign build ... --resume` (cards no longer record local paths) "
                            "or edit it")
    _, missing = card_references(folder)
    if missing:
        raise VidalignError(f"{folder / CARD_NAME} links {missing[0]!r}, which is not in {folder}; "
                            "restore the file or remove the link")
    return upload_files(folder)


def preflight(api, repo_id: str) -> str:
    """Fail fast, before any upload: a token exists, the Hub answers, and it accepts the token. Returns the
    user name."""
    from huggingface_hub import constants
    from huggingface_hub.errors import HfHubHTTPError

    endpoint = api.endpoint
    if constants.HF_HUB_OFFLINE:
        raise VidalignError("HF_HUB_OFFLINE=1 is set: unset it to push (uploading needs the network)")
    token = api.token if isinstance(api.token, str) else None
    if token is None:
        from huggingface_hub import get_token

        token = get_token()
    if not token:
        raise VidalignError(f"no Hugging Face token to push {repo_id}: run `hf auth login` or set HF_TOKEN to a "
                            f"token with write access (https://huggingface.co/settings/tokens)")
    try:
        who = api.whoami(token=token)
    except HfHubHTTPError as exc:
        status = getattr(getattr(exc, "response", None), "status_code", None)
        if status == 401:
            raise VidalignError(f"{endpoint} rejected the Hugging Face token (401): run `hf auth login` or set "
                                "HF_TOKEN to a valid token with write access") from None
        raise VidalignError(f"{endpoint} answered {status} to the token check: {_first_line(exc)}") from None
    except Exception as exc:  # connection refused, DNS, timeout, proxy: the network, not us
        raise VidalignError(f"cannot reach the Hugging Face Hub at {endpoint} ({type(exc).__name__}: "
                            f"{_first_line(exc)}); check the network, proxy or HF_ENDPOINT, then rerun") from None
    return who.get("name", "?") if isinstance(who, dict) else "?"


def _first_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split("\n\n")[0].split())
    return text[:300] or type(exc).__name__


def repo_url(repo_id: str) -> str:
    """The dataset's page on the Hub this process talks to (``HF_ENDPOINT``, default huggingface.co)."""
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    return f"{endpoint}/datasets/{repo_id}"


def push(folder: str | Path, repo_id: str, private: bool = False, revision: str | None = None,
         dry_run: bool = False, verify: bool = True, token: str | None = None,
         commit_message: str | None = None) -> list[str]:
    """Upload ``folder`` to the dataset repository ``repo_id`` (see the module docstring); returns the paths."""
    folder = Path(folder)
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise VidalignError(f"--repo-id {repo_id!r} is invalid: use ORG/NAME")
    files = check_folder(folder, verify=verify)
    if dry_run:
        return files
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    api = HfApi(token=token)
    preflight(api, repo_id)
    allow = [glob.escape(f) for f in files]  # exact paths (fnmatch patterns with special characters escaped)
    message = commit_message or f"Upload {folder.name} with vidalign"
    try:
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        if revision is not None:
            api.create_branch(repo_id, branch=revision, repo_type="dataset", exist_ok=True)
        large = getattr(api, "upload_large_folder", None)
        if large is not None:
            large(repo_id=repo_id, folder_path=str(folder), repo_type="dataset", revision=revision,
                  allow_patterns=allow, private=private)
        else:
            api.upload_folder(repo_id=repo_id, folder_path=str(folder), repo_type="dataset", revision=revision,
                              allow_patterns=allow, commit_message=message)
    except HfHubHTTPError as exc:
        raise VidalignError(f"push to {repo_id} failed: {_first_line(exc)}; rerun the same `vidalign push` to "
                            "resume (files already uploaded are not sent again)") from None
    except Exception as exc:  # the network dropped, a timeout, a file changed under us: rerun resumes
        raise VidalignError(f"push to {repo_id} failed ({type(exc).__name__}: {_first_line(exc)}); rerun the same "
                            "`vidalign push` to resume") from None
    return files


__all__ = ["push", "upload_files", "check_folder", "card_references", "manifest_files", "local_paths",
           "portable_text", "preflight", "repo_url", "IGNORE_PATTERNS"]
