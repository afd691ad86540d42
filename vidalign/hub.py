"""Pushing a dataset folder to the Hugging Face Hub (``vidalign push``).

The folder is verified first; then exactly the card, the manifest, the shards and the previews are uploaded with
``huggingface_hub``'s resumable large-folder upload (partial files and slice manifests stay behind).
"""

from __future__ import annotations

import fnmatch
from pathlib import Path

from vidalign.errors import VidalignError
from vidalign.format import CARD_NAME, DATA_DIR, MANIFEST_NAME, PREVIEWS_DIR

ALLOW_PATTERNS = [CARD_NAME, MANIFEST_NAME, f"{DATA_DIR}/**/*.tar", f"{PREVIEWS_DIR}/*"]
IGNORE_PATTERNS = ["*.tmp", "manifest.parts/*", ".cache/*", ".huggingface/*"]


def upload_files(folder: str | Path) -> list[str]:
    """The relative paths ``push`` uploads, in order (what the Hub repository will hold)."""
    folder = Path(folder)
    out = []
    for p in sorted(folder.rglob("*")):
        if not p.is_file():
            continue
        rel = p.relative_to(folder).as_posix()
        if any(fnmatch.fnmatch(rel, pat) for pat in IGNORE_PATTERNS):
            continue
        if any(fnmatch.fnmatch(rel, pat) for pat in ALLOW_PATTERNS):
            out.append(rel)
    return out


def push(folder: str | Path, repo_id: str, private: bool = False, revision: str | None = None,
         dry_run: bool = False, verify: bool = True) -> list[str]:
    """Upload ``folder`` to the dataset repository ``repo_id``; returns the uploaded paths."""
    from vidalign import manifest as mf

    folder = Path(folder)
    if "/" not in repo_id or repo_id.count("/") != 1:
        raise VidalignError(f"--repo-id {repo_id!r} is invalid: use ORG/NAME")
    if not (folder / CARD_NAME).exists():
        raise VidalignError(f"{folder}: no {CARD_NAME} dataset card; finish the build (all shards) before pushing")
    if verify:
        problems = mf.verify(folder)
        if problems:
            raise VidalignError(f"{folder}: verification failed before push: {problems[0]} "
                                f"({len(problems)} problem(s); run vidalign verify)")
    files = upload_files(folder)
    if dry_run:
        return files
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    api.upload_large_folder(repo_id=repo_id, folder_path=str(folder), repo_type="dataset", revision=revision,
                            allow_patterns=ALLOW_PATTERNS, ignore_patterns=IGNORE_PATTERNS, private=private)
    return files
