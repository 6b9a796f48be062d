"""A double of the Hugging Face Hub's network API, for offline publishing tests.

Only the HTTP calls are replaced: ``HfApi.repo_info``/``create_repo``/``preupload_lfs_files``/
``create_commit``, the cards' YAML validation requests, and the ways ``datasets`` reads a
repo back (the Hub filesystem; ``list_repo_tree`` and ``hf_hub_download`` in older
releases). Everything that prepares the upload (shards, cards, file lists, deletions) runs
for real; each repo is an in-memory ``{path: bytes}`` that commits change.
"""

from __future__ import annotations

import hashlib
import io
import re
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from fsspec import AbstractFileSystem

# The packages whose modules may hold HfApi methods bound at import.
_CALLERS = ("huggingface_hub", "transformers", "datasets", "gift_hf")


class RecordingHub:
    def __init__(self) -> None:
        self.repos: dict[str, dict[str, bytes]] = {}
        self.private: dict[str, bool] = {}
        self.commits: list[dict[str, Any]] = []
        self.tokens: list[Any] = []
        self._preuploaded: dict[str, bytes] = {}
        self._downloads = tempfile.TemporaryDirectory(prefix="hub-double-")  # hf_hub_download's files

    # ------------------------------------------------------------------ install
    def install(self, monkeypatch) -> "RecordingHub":
        import datasets.dataset_dict
        from huggingface_hub import HfApi, RepoCard

        hub = self

        def repo_info(api, repo_id, **kwargs):
            hub.tokens.append(kwargs.get("token") or api.token)
            if repo_id not in hub.repos:
                from huggingface_hub.errors import RepositoryNotFoundError

                url = f"https://huggingface.co/api/{kwargs.get('repo_type') or 'model'}s/{repo_id}"
                raise RepositoryNotFoundError(f"{repo_id} not found", response=_not_found(url))
            return SimpleNamespace(id=repo_id, sha=hub.sha(repo_id))

        def list_repo_tree(api, repo_id, path_in_repo=None, *, recursive=False, **kwargs):
            from huggingface_hub.hf_api import RepoFile

            if not recursive:
                raise NotImplementedError("the Hub double lists repos recursively only")
            prefix = path_in_repo.strip("/") + "/" if path_in_repo else ""
            for name, data in sorted(hub.repos.get(repo_id, {}).items()):
                if name.startswith(prefix):
                    yield RepoFile(path=name, size=len(data), oid=hashlib.sha1(data).hexdigest())

        def hf_hub_download(api, repo_id, filename, *, subfolder=None, **kwargs):
            name = f"{subfolder}/{filename}" if subfolder else filename
            files = hub.repos.get(repo_id, {})
            if name not in files:
                from huggingface_hub.errors import EntryNotFoundError

                raise EntryNotFoundError(f"{name} not in {repo_id}")
            path = Path(hub._downloads.name, repo_id, name)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(files[name])
            return str(path)

        def create_repo(api, repo_id, *, private=None, exist_ok=False, **kwargs):
            from huggingface_hub import RepoUrl

            hub.tokens.append(kwargs.get("token") or api.token)
            if repo_id not in hub.repos:
                hub.repos[repo_id] = {}
                hub.private[repo_id] = bool(private)
            prefix = "datasets/" if kwargs.get("repo_type") == "dataset" else ""
            return RepoUrl(f"https://huggingface.co/{prefix}{repo_id}", endpoint="https://huggingface.co")

        def preupload_lfs_files(api, repo_id, additions, **kwargs):
            for op in additions:
                hub._preuploaded[op.path_in_repo] = hub._content(op.path_or_fileobj)

        def create_commit(api, repo_id, operations, *, commit_message, **kwargs):
            from huggingface_hub import CommitInfo, CommitOperationAdd, CommitOperationDelete

            hub.tokens.append(kwargs.get("token") or api.token)
            files = hub.repos[repo_id]
            changes: dict[str, Any] = {"repo_id": repo_id, "message": commit_message, "added": [], "deleted": []}
            for op in operations:
                if isinstance(op, CommitOperationAdd):
                    data = hub._preuploaded.pop(op.path_in_repo, None)
                    files[op.path_in_repo] = data if data is not None else hub._content(op.path_or_fileobj)
                    changes["added"].append(op.path_in_repo)
                elif isinstance(op, CommitOperationDelete):
                    files.pop(op.path_in_repo, None)
                    changes["deleted"].append(op.path_in_repo)
            hub.commits.append(changes)
            oid = hub.sha(repo_id)
            return CommitInfo(
                commit_url=f"https://huggingface.co/{repo_id}/commit/{oid}",
                commit_message=commit_message,
                commit_description="",
                oid=oid,
            )

        monkeypatch.setattr(HfApi, "repo_info", repo_info)
        monkeypatch.setattr(HfApi, "create_repo", create_repo)
        monkeypatch.setattr(HfApi, "preupload_lfs_files", preupload_lfs_files)
        monkeypatch.setattr(HfApi, "create_commit", create_commit)
        monkeypatch.setattr(HfApi, "list_repo_tree", list_repo_tree)
        monkeypatch.setattr(HfApi, "hf_hub_download", hf_hub_download)
        # `from huggingface_hub import create_repo` binds a method of a default HfApi at import
        # (transformers' Trainer before 5.x calls it so): bind those names to the double too.
        for module in [m for name, m in sys.modules.items() if name.split(".")[0] in _CALLERS]:
            for name in ("repo_info", "create_repo", "preupload_lfs_files", "create_commit", "list_repo_tree"):
                bound = getattr(module, name, None)
                if isinstance(getattr(bound, "__self__", None), HfApi):
                    monkeypatch.setattr(module, name, getattr(bound.__self__, name))
        # a card's YAML is checked by a POST to the Hub (before a card push and an upload_folder)
        monkeypatch.setattr(RepoCard, "validate", lambda card, repo_type=None: None)
        monkeypatch.setattr(HfApi, "_validate_yaml", lambda api, *args, **kwargs: None, raising=False)
        # (older datasets releases read through list_repo_tree and hf_hub_download instead)
        monkeypatch.setattr(datasets.dataset_dict, "HfFileSystem", lambda **kwargs: RepoFileSystem(hub), raising=False)
        # upload_folder's Xet transport streams files to storage before committing; without it
        # upload_folder selects the files (real code) and sends them in one create_commit.
        import huggingface_hub.hf_api

        monkeypatch.setattr(huggingface_hub.hf_api, "is_xet_available", lambda: False)
        return self

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _content(source: Any) -> bytes:
        if isinstance(source, bytes):
            return source
        if isinstance(source, (str, Path)):
            return Path(source).read_bytes()
        source.seek(0)
        return source.read()

    def sha(self, repo_id: str) -> str:
        """A commit id that changes with every commit, as the Hub's does."""
        return hashlib.sha1(f"{repo_id}:{len(self.commits)}".encode()).hexdigest()

    def files(self, repo_id: str) -> dict[str, bytes]:
        return dict(self.repos[repo_id])


def _not_found(url: str):
    """A 404 response of the HTTP client this huggingface_hub release uses (httpx, or requests before 1.0)."""
    from huggingface_hub.errors import Response

    client = sys.modules[Response.__module__.split(".")[0]]
    if client.__name__ == "requests":
        response = Response()
        response.status_code, response.url = 404, url
        response.request = client.Request("GET", url).prepare()
        return response
    return Response(404, request=client.Request("GET", url))


class RepoFileSystem(AbstractFileSystem):
    """Read-only view of the double's repos under ``datasets/<repo_id>@<revision>/`` paths."""

    protocol = "hubdouble"

    def __init__(self, hub: RecordingHub, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.hub = hub

    def _split(self, path: str) -> tuple[str, str]:
        match = re.match(r"^/?(?:datasets/)?([^@]+)@[^/]*/?(.*)$", path)
        if match is None:
            raise FileNotFoundError(path)
        return match.group(1), match.group(2).strip("/")

    def ls(self, path: str, detail: bool = True, **kwargs: Any):
        repo_id, inner = self._split(path)
        root = path.rstrip("/")[: len(path.rstrip("/")) - len(inner)].rstrip("/") if inner else path.rstrip("/")
        files = self.hub.repos.get(repo_id, {})
        entries: dict[str, dict] = {}
        for name, data in files.items():
            if inner and not name.startswith(inner + "/"):
                if name == inner:
                    entries[name] = {"name": f"{root}/{name}", "size": len(data), "type": "file"}
                continue
            rest = name[len(inner) + 1 :] if inner else name
            head = rest.split("/", 1)[0]
            full = f"{inner}/{head}" if inner else head
            kind = "directory" if "/" in rest else "file"
            entries[full] = {"name": f"{root}/{full}", "size": len(data) if kind == "file" else 0, "type": kind}
        if not entries and inner:
            raise FileNotFoundError(path)
        return list(entries.values()) if detail else [e["name"] for e in entries.values()]

    def _open(self, path: str, mode: str = "rb", **kwargs: Any):
        repo_id, inner = self._split(path)
        files = self.hub.repos.get(repo_id, {})
        if inner not in files:
            raise FileNotFoundError(path)
        return io.BytesIO(files[inner])
