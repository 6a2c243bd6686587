"""A local stand-in for the Hub's upload endpoints (create repo, preupload, commit), so the push path runs to the HTTP
boundary without the network, and a writer of the Hugging Face cache layout for offline loading."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import yaml


class LocalHub:
    """`with LocalHub() as hub:` serves on `hub.endpoint`; `hub.repos[repo_id][path] = bytes` holds what was pushed,
    `hub.requests` the (method, path) of every request."""

    def __init__(self):
        self.repos: dict[str, dict[str, bytes]] = {}
        self.requests: list[tuple[str, str]] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _reply(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                hub.requests.append(("POST", self.path))
                if self.headers.get("Authorization", "") != "Bearer hf_local_test_token":
                    return self._reply(401, {"error": "missing or wrong token"})
                if self.path == "/api/repos/create":
                    payload = json.loads(body)
                    repo = f"{payload['organization']}/{payload['name']}" if payload.get("organization") else payload["name"]
                    hub.repos.setdefault(repo, {})
                    return self._reply(200, {"url": f"{hub.endpoint}/{repo}", "name": repo})
                if self.path == "/api/validate-yaml":  # the model card's metadata block must parse
                    try:
                        content = json.loads(body)["content"]
                        yaml.safe_load(content.split("---")[1] if content.startswith("---") else "")
                    except (yaml.YAMLError, KeyError, IndexError) as error:
                        return self._reply(400, {"error": f"invalid model card metadata: {error}"})
                    return self._reply(200, {"errors": [], "warnings": []})
                parts = self.path.split("?")[0].split("/")  # /api/models/<owner>/<name>/<preupload|commit>/<revision>
                if len(parts) < 7 or parts[:3] != ["", "api", "models"]:
                    return self._reply(404, {"error": f"no endpoint {self.path}"})
                repo = f"{parts[3]}/{parts[4]}"
                if repo not in hub.repos:
                    return self._reply(404, {"error": f"repository {repo} not found"})
                if parts[5] == "preupload":
                    files = json.loads(body)["files"]
                    return self._reply(200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                                                       for f in files]})
                if parts[5] == "commit":
                    for line in body.decode().splitlines():
                        item = json.loads(line)
                        if item["key"] == "file":
                            hub.repos[repo][item["value"]["path"]] = base64.b64decode(item["value"]["content"])
                    oid = hashlib.sha1(json.dumps(sorted(hub.repos[repo])).encode()).hexdigest()
                    return self._reply(200, {"commitUrl": f"{hub.endpoint}/{repo}/commit/{oid}", "commitOid": oid,
                                             "pullRequestUrl": None})
                return self._reply(404, {"error": f"no endpoint {self.path}"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> "LocalHub":
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def place_in_cache(cache_dir: str, repo_id: str, files: dict[str, bytes], commit: str = "0" * 40) -> str:
    """Lay `files` out as huggingface_hub caches a model repo: blobs by hash, a snapshot of links, refs/main."""
    repo_dir = os.path.join(cache_dir, "models--" + repo_id.replace("/", "--"))
    snapshot = os.path.join(repo_dir, "snapshots", commit)
    for path, data in files.items():
        blob = os.path.join(repo_dir, "blobs", hashlib.sha256(data).hexdigest())
        os.makedirs(os.path.dirname(blob), exist_ok=True)
        with open(blob, "wb") as f:
            f.write(data)
        link = os.path.join(snapshot, path)
        os.makedirs(os.path.dirname(link), exist_ok=True)
        os.symlink(os.path.relpath(blob, os.path.dirname(link)), link)
    os.makedirs(os.path.join(repo_dir, "refs"), exist_ok=True)
    with open(os.path.join(repo_dir, "refs", "main"), "w") as f:
        f.write(commit)
    return snapshot
