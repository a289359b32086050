"""A local stand-in for the Hugging Face Hub: a small HTTP server answering what huggingface_hub's
`snapshot_download` / `hf_hub_download` / `model_info` ask, so that kvstudy's fetch rules are tested with
huggingface_hub's own download code (HF_ENDPOINT pointing here), offline.

Answered:
- `GET /api/{models,datasets}/{repo}` and `.../revision/{rev}`: the repository's info (`sha`, `siblings`); an unknown
  revision is a 404 with `X-Error-Code: RevisionNotFound`, an unknown repository `RepoNotFound`;
- `GET /api/{models,datasets}/{repo}/tree/{rev}[/{folder}]`: the file listing (path, size, oid), one page; a folder
  that does not exist is a 404 `EntryNotFound`;
- `HEAD`/`GET /{repo}/resolve/{rev}/{file}` and `/datasets/{repo}/resolve/...`: the file, with `X-Repo-Commit`,
  `ETag` and `Content-Length`, and range requests (`Range: bytes=N-` -> 206), so an interrupted transfer resumes;
- `GET /files/{name}`: a plain file (an archive a study fetches by URL).
A repository can be gated (`token=`: a request without `Authorization: Bearer <token>` gets 401 / GatedRepo), and
a file can be cut (`cut_after`): its first GET sends the full Content-Length but only that many bytes, then closes
the connection. Every request is logged (`requests`: method, path, Range, whether it carried the token).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

API = re.compile(r"^/api/(models|datasets)/(.+?)(?:/(revision|tree)/([^/]+)(?:/(.+))?)?/?$")
RESOLVE = re.compile(r"^(/datasets)?/(.+?)/resolve/([^/]+)/(.+)$")


class StandInHub:
    def __init__(self):
        self.repos: dict[tuple[str, str], dict] = {}  # (models|datasets, repo id) -> {"refs", "commits", "token"}
        self.plain: dict[str, bytes] = {}
        self.cut_after: dict[str, int] = {}  # file path in repo (or /files/ name) -> bytes sent by its first GET
        self.requests: list[dict] = []
        self._server = None

    # --- content ---------------------------------------------------------------------------------------------
    def add(self, repo_id: str, files: dict[str, bytes], repo_type: str = "model", branch: str = "main",
            token: str | None = None) -> str:
        """Commit `files` (the whole tree) to `repo_id` on `branch`; returns the new commit hash."""
        kind = repo_type + "s"
        repo = self.repos.setdefault((kind, repo_id), {"refs": {}, "commits": {}, "token": token})
        digest = hashlib.sha1(repr((repo_id, len(repo["commits"]), sorted(files.items()))).encode()).hexdigest()
        repo["commits"][digest] = dict(files)
        repo["refs"][branch] = digest
        return digest

    # --- server ----------------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> "StandInHub":
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def do_HEAD(self):
                hub._handle(self, head=True)

            def do_GET(self):
                hub._handle(self, head=False)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    # --- answers ---------------------------------------------------------------------------------------------
    def _handle(self, h: BaseHTTPRequestHandler, head: bool) -> None:
        path = unquote(urlsplit(h.path).path)
        auth = h.headers.get("Authorization", "")
        self.requests.append({"method": h.command, "path": path, "range": h.headers.get("Range"),
                              "auth": auth})
        if path.startswith("/files/"):
            name = path[len("/files/"):]
            return self._file(h, head, self.plain.get(name), name, {})
        m = API.match(path)
        if m:
            return self._api(h, m.group(1), m.group(2), m.group(3), m.group(4), m.group(5), auth)
        m = RESOLVE.match(path)
        if m:
            kind = "datasets" if m.group(1) else "models"
            repo, commit = self._lookup(h, kind, m.group(2), m.group(3), auth)
            if repo is None:
                return
            data = repo["commits"][commit].get(m.group(4))
            if data is None:
                return self._error(h, 404, "EntryNotFound", f"{m.group(4)} not found")
            etag = hashlib.sha256(data).hexdigest()
            return self._file(h, head, data, m.group(4), {"X-Repo-Commit": commit, "ETag": f'"{etag}"'})
        self._error(h, 404, None, "not found")

    def _lookup(self, h, kind: str, repo_id: str, revision: str, auth: str):
        repo = self.repos.get((kind, repo_id))
        if repo is None:
            self._error(h, 404, "RepoNotFound", f"Repository {repo_id} not found")
            return None, None
        if repo["token"] and auth != f"Bearer {repo['token']}":
            self._error(h, 401, "GatedRepo", f"Access to {repo_id} is restricted")
            return None, None
        commit = repo["refs"].get(revision, revision if revision in repo["commits"] else None)
        if commit is None:
            self._error(h, 404, "RevisionNotFound", f"Invalid rev id: {revision}")
            return None, None
        return repo, commit

    def _api(self, h, kind: str, repo_id: str, what: str | None, revision: str | None, folder: str | None,
             auth: str) -> None:
        repo, commit = self._lookup(h, kind, repo_id, revision or "main", auth)
        if repo is None:
            return
        files = repo["commits"][commit]
        if what == "tree":
            body = [{"type": "file", "path": p, "size": len(d), "oid": hashlib.sha1(d).hexdigest()}
                    for p, d in sorted(files.items()) if not folder or p.startswith(folder.rstrip("/") + "/")]
            if folder and not body:
                return self._error(h, 404, "EntryNotFound", f"{folder} not found")
        else:
            body = {"id": repo_id, "sha": commit, "private": False, "siblings": [{"rfilename": p} for p in files]}
        self._send(h, 200, json.dumps(body).encode(), {"Content-Type": "application/json"})

    def _file(self, h, head: bool, data: bytes | None, name: str, headers: dict) -> None:
        if data is None:
            return self._error(h, 404, "EntryNotFound", f"{name} not found")
        start = 0
        rng = h.headers.get("Range")
        if rng and not head:
            start = int(re.match(r"bytes=(\d+)-", rng).group(1))
        headers = {**headers, "Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}
        if start:
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        body = data[start:]
        cut = self.cut_after.pop(name, None) if not head else None
        h.send_response(206 if start else 200)
        for k, v in {**headers, "Content-Length": str(len(body))}.items():
            h.send_header(k, v)
        h.end_headers()
        if head:
            return
        if cut is not None:  # an interrupted transfer: part of the body, then the connection closes
            h.wfile.write(body[:cut])
            h.wfile.flush()
            h.close_connection = True
            return
        h.wfile.write(body)

    def _error(self, h, status: int, code: str | None, message: str) -> None:
        headers = {"Content-Type": "application/json", **({"X-Error-Code": code} if code else {})}
        self._send(h, status, json.dumps({"error": message}).encode(), headers)

    @staticmethod
    def _send(h, status: int, body: bytes, headers: dict) -> None:
        h.send_response(status)
        for k, v in {**headers, "Content-Length": str(len(body))}.items():
            h.send_header(k, v)
        h.end_headers()
        if h.command != "HEAD":  # a HEAD answer has the headers of the GET answer, no body
            h.wfile.write(body)
