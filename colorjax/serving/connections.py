"""The upload server's connections: a thread per connection, capped overall and per remote
address; a connection over a cap gets a 503 from the accepting thread, without a thread or a
queue.
"""

from __future__ import annotations

import collections
import json
import socket
import sys
import threading
import time
from http.server import ThreadingHTTPServer
from typing import TYPE_CHECKING

from colorjax.serving.requests import RETRY_AFTER_S

if TYPE_CHECKING:
    from colorjax.serving.service import ColorizeService

# Connections one client (remote address) may hold at once (--max_connections_per_client):
# a browser opens at most 6 to a server, so one address cannot take every slot.
MAX_CONNECTIONS_PER_CLIENT = 8
# A refused connection stays open this long after its 503 (half-closed), so the answer is
# read before the close; closing with the request unread would reset it away.
_LINGER_S = 1.0
_MAX_LINGERING = 256


class Server(ThreadingHTTPServer):
    """A thread per connection, at most `max_connections` of them and at most
    `max_per_client` from one remote address: the others get a 503 with Retry-After from
    the accepting thread and are closed (no thread, no queue)."""

    daemon_threads = True
    request_queue_size = 64  # the kernel's accept queue: a burst is accepted and answered

    def __init__(self, address, handler, *, max_connections: int = 32,
                 max_per_client: int = MAX_CONNECTIONS_PER_CLIENT):
        self.max_connections = max(1, int(max_connections))
        self.max_per_client = max(1, int(max_per_client))
        self._open = 0
        self._per_client: collections.Counter = collections.Counter()  # address -> open
        self._open_lock = threading.Lock()
        self._lingering: collections.deque = collections.deque()  # (time, refused socket)
        super().__init__(address, handler)

    @property
    def open_connections(self) -> int:
        return self._open

    def attach(self, service: ColorizeService) -> None:
        self.RequestHandlerClass.service = service

    def process_request(self, request, client_address):
        client = client_address[0] if isinstance(client_address, tuple) else client_address
        with self._open_lock:
            if self._open >= self.max_connections:
                why = (f"too many connections (the limit is {self.max_connections}, "
                       "--max_connections)")
            elif self._per_client[client] >= self.max_per_client:
                why = (f"too many connections from {client} (the limit is "
                       f"{self.max_per_client} a client, --max_connections_per_client)")
            else:
                why = None
                self._open += 1
                self._per_client[client] += 1
        if why:
            return self._refuse(request, why)
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._closed_one(client)
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._closed_one(client_address[0] if isinstance(client_address, tuple)
                             else client_address)

    def _closed_one(self, client):
        with self._open_lock:
            self._open -= 1
            self._per_client[client] -= 1
            if self._per_client[client] <= 0:
                del self._per_client[client]

    def _refuse(self, sock: socket.socket, why: str) -> None:
        """503 without reading the request (never blocks the accepting thread)."""
        body = json.dumps({"status": 503, "error": f"{why}; retry in "
                           f"{RETRY_AFTER_S} s"}).encode()
        head = (f"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nRetry-After: {RETRY_AFTER_S}\r\n"
                "Connection: close\r\n\r\n").encode()
        try:
            sock.setblocking(False)
            sock.send(head + body)  # a few hundred bytes: fits any empty send buffer
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            sock.close()
            return
        self._lingering.append((time.monotonic(), sock))
        if len(self._lingering) > _MAX_LINGERING:
            self._close_refused(self._lingering.popleft()[1])

    @staticmethod
    def _close_refused(sock: socket.socket) -> None:
        try:  # discard what the client sent, so the close is a FIN and not a reset
            for _ in range(64):
                if not sock.recv(1 << 16):
                    break
        except OSError:  # BlockingIOError: nothing more to read now
            pass
        sock.close()

    def service_actions(self):
        """Called by `serve_forever` between accepts (at least every poll interval)."""
        now = time.monotonic()
        while self._lingering and now - self._lingering[0][0] > _LINGER_S:
            self._close_refused(self._lingering.popleft()[1])

    def server_close(self):
        while self._lingering:
            self._lingering.popleft()[1].close()
        super().server_close()

    def handle_error(self, request, client_address):
        """A client that went away is one line, not a traceback."""
        err = sys.exc_info()[1]
        if isinstance(err, OSError):
            print(f"{client_address[0]}: connection lost: {type(err).__name__}: {err}",
                  file=sys.stderr)
        else:
            super().handle_error(request, client_address)
