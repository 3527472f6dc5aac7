"""A real HTTP receiver on 127.0.0.1 (a random port) for the notification tests.

It records every request and answers 200, or 500 for a path containing "refuse"; a path
containing "hold" is answered only once the test releases it (or after 60 s).
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Receiver:
    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.arrived = threading.Condition()
        self.release = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with outer.arrived:
                    outer.requests.append({"path": self.path, "body": body,
                                           "type": self.headers.get("Content-Type", "")})
                    outer.arrived.notify_all()
                if "hold" in self.path:
                    outer.release.wait(60)
                code = 500 if "refuse" in self.path else 200
                answer = b"receiver says no" if code == 500 else b"ok"
                try:
                    self.send_response(code)
                    self.send_header("Content-Length", str(len(answer)))
                    self.end_headers()
                    self.wfile.write(answer)
                except OSError:           # the sender was killed meanwhile
                    pass

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, scheme: str, path: str) -> str:
        return f"{scheme}://127.0.0.1:{self.port}/{path}"

    def paths(self) -> list[str]:
        with self.arrived:
            return [r["path"] for r in self.requests]

    def wait_for(self, cond, timeout: float = 60) -> bool:
        with self.arrived:
            return self.arrived.wait_for(lambda: cond(self.requests), timeout)

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
