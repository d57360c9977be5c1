"""A real HTTP server on 127.0.0.1 (port 0) for the hub's tests: plain files
and the Hugging Face ``/{repo}/resolve/{revision}/{file}`` protocol, with
scripted misbehaviour per request (drop the connection, corrupt a byte,
lie about Content-Length, fail with a status, stall)."""
import hashlib
import http.server
import socket
import threading
import time


class HubServer:
    """``files``: URL path -> bytes; ``plans``: URL path -> list of actions,
    one taken per GET (the last repeats): ``ok``, ``drop:N`` (N bytes then
    close), ``corrupt``, ``short`` (Content-Length too small), ``long``
    (Content-Length too large), ``status:CODE``, ``sleep:SECONDS``.
    ``hf``: repo -> {"commit": hex, "revisions": [names], "files": {path: bytes},
    "lfs": {paths}}.  ``requests``: (method, path, headers) of each request."""

    def __init__(self):
        self.files, self.plans, self.hf, self.requests = {}, {}, {}, []
        self.lock = threading.Lock()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_HEAD(self):
                server._handle(self, head=True)

            def do_GET(self):
                server._handle(self, head=False)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def gets(self, path=None):
        return [r for r in self.requests if r[0] == "GET" and (path is None or r[1] == path)]

    # -- serving -------------------------------------------------------------

    def _handle(self, handler, head):
        with self.lock:
            self.requests.append((handler.command, handler.path, dict(handler.headers)))
        resolved = self._resolve_hf(handler)
        if resolved is False:
            return
        path, extra_headers = resolved or (handler.path, {})
        body = self.files.get(path)
        if body is None:
            return self._status(handler, 404)
        action = "ok"
        if not head:
            with self.lock:
                plan = self.plans.get(path) or ["ok"]
                action = plan.pop(0) if len(plan) > 1 else plan[0]
        if action.startswith("status:"):
            return self._status(handler, int(action.split(":")[1]))
        if action.startswith("sleep:"):
            time.sleep(float(action.split(":")[1]))
            action = "ok"
        start = 0
        wanted = handler.headers.get("Range", "")
        if wanted.startswith("bytes=") and not head:
            start = int(wanted[len("bytes="):].split("-")[0])
            if start >= len(body):
                return self._status(handler, 416)
        part = body[start:]
        if action == "corrupt":
            part = part[:len(part) // 2] + bytes([part[len(part) // 2] ^ 1]) + part[len(part) // 2 + 1:]
        length = len(part) - 10 if action == "short" else len(part) + 10 if action == "long" \
            else len(part)
        handler.send_response(206 if start else 200)
        if start:
            handler.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        handler.send_header("Content-Length", str(length))
        handler.send_header("Content-Disposition", 'attachment; filename="../../evil.sh"')
        for name, value in extra_headers.items():
            handler.send_header(name, value)
        handler.end_headers()
        if head:
            return
        if action.startswith("drop:"):
            handler.wfile.write(part[:int(action.split(":")[1])])
            handler.wfile.flush()
            handler.close_connection = True
            handler.connection.shutdown(socket.SHUT_RDWR)
            return
        handler.wfile.write(part)

    @staticmethod
    def _status(handler, code):
        handler.send_response(code)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    def _resolve_hf(self, handler):
        """(file path, headers) for a /{org}/{name}/resolve/{rev}/{file}."""
        parts = handler.path.split("/")
        if len(parts) < 6 or parts[3] != "resolve":
            return None
        repo = self.hf.get(f"{parts[1]}/{parts[2]}")
        if repo is None:
            self._status(handler, 404)
            return False
        revision, path = parts[4], "/".join(parts[5:])
        if revision not in repo["revisions"] and revision != repo["commit"]:
            self._status(handler, 404)
            return False
        body = repo["files"].get(path)
        if body is None:
            self._status(handler, 404)
            return False
        key = f"/hf/{parts[1]}/{parts[2]}/{path}"
        self.files[key] = body
        if path in repo.get("lfs", ()):
            etag = hashlib.sha256(body).hexdigest()
        else:
            etag = hashlib.sha1(f"blob {len(body)}\0".encode() + body).hexdigest()
        headers = {"X-Repo-Commit": repo["commit"], "ETag": f'"{etag}"',
                   "X-Linked-Etag": f'"{etag}"', "X-Linked-Size": str(len(body))}
        return key, headers

