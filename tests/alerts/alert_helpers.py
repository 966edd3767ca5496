"""Helpers for the alert tests. Real notification sinks on loopback (from /work/shared/recipes/notify_sinks.py):
an SMTP server (aiosmtpd) and a JSON webhook receiver (http.server) that can
answer 500 or go down (connection refused) and come back on the same port.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from email.message import Message as EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ID = re.compile(r"id=(\S+)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def text_of(msg: EmailMessage) -> str:
    """apprise sends multipart/alternative (text + html); the text part."""
    part = next((p for p in msg.walk() if p.get_content_type() == "text/plain"), msg)
    return part.get_payload(decode=True).decode(errors="replace")


@dataclass
class SmtpSink:
    port: int = 0
    messages: list[EmailMessage] = field(default_factory=list)

    @property
    def url(self) -> str:
        # With an IP host apprise needs from= (recipes README, section 3).
        return f"mailto://127.0.0.1:{self.port}?from=ci@example.com&to=dev@example.com"

    def ids(self) -> list[str]:
        return [i for m in self.messages for i in ID.findall(text_of(m))]


class _Server(ThreadingHTTPServer):
    allow_reuse_address = True
    daemon_threads = True


@dataclass
class WebhookSink:
    port: int = 0
    status: int = 200  # 500 etc. to test the sender's failure path
    requests: list[dict] = field(default_factory=list)
    delay: float = 0.0  # seconds between recording a POST and answering it
    _server: _Server | None = None
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    arrivals: list[float] = field(default_factory=list)  # time.time() of each POST

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self.port}/hook"

    def up(self) -> None:
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                try:
                    data = json.loads(body or b"null")
                except ValueError:
                    data = None
                status = sink.status
                with sink._lock:
                    sink.arrivals.append(time.time())
                    sink.requests.append({"path": self.path, "status": status, "json": data})
                if sink.delay:  # received (and counted), but the answer is late
                    time.sleep(sink.delay)
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self._server = _Server(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def down(self) -> None:
        """Stop listening: senders get 'connection refused'."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(5)
            self._server = None

    def delivered(self) -> list[dict]:
        """Requests answered with 2xx."""
        with self._lock:
            return [r for r in self.requests if 200 <= r["status"] < 300]

    def ids(self) -> list[str]:
        """Alarm ids in the successfully delivered messages, in order (duplicates kept)."""
        return [i for r in self.delivered() for i in ID.findall((r["json"] or {}).get("message", ""))]


def flat_run(sweep_dir, run_id: str, n: int = 300) -> None:
    """A finished run that memorizes at step 50 and never groks."""
    import numpy as np

    from grokwatch.store import RunWriter

    steps = np.arange(1, n + 1)
    w = RunWriter(f"{sweep_dir}/{run_id}", {"seed": 0, "weight_decay": 1.0, "total_steps": n}).open()
    w.write_shard(
        "scalars",
        {
            "step": steps,
            "train_loss": np.full(n, 0.01),
            "train_acc": np.where(steps >= 50, 1.0, 0.5),
            "val_acc": np.full(n, 0.02),
            "grad_norm": np.full(n, 1.0),
            "weight_norm": np.full(n, 30.0),
        },
    )
    w.close("completed")


def wait_for(pred, timeout: float = 10.0, every: float = 0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(every)
    return pred()
