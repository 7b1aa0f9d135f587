"""A TCP relay between the stores under test and a real server, to cut connections.

Cutting the client's side of a connection is what a network failure, a restarted
proxy or a load balancer's timeout does: the server does not hear of it until it next
writes, so a COMMIT it already received still completes. ``pg_terminate_backend``
is the other kind of death (the server's side); the tests use both.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
import time
from urllib.parse import urlsplit, urlunsplit


class Relay:
    """Listens on a free local port and relays every connection to ``server_url``'s host and port."""

    def __init__(self, server_url: str, *, idle_timeout: float | None = None) -> None:
        parts = urlsplit(server_url)
        self.idle_timeout = idle_timeout  # drop a connection silent this long, as proxies and NATs do
        self.dropped_idle = 0
        self._target = (parts.hostname or "127.0.0.1", parts.port or 5432)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self.url = urlunsplit(
            (parts.scheme, f"{parts.username or 'postgres'}@127.0.0.1:{self.port}", parts.path, "", "")
        )
        self.refusing = False
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.refusing:
                client.close()
                continue
            try:
                server = socket.create_connection(self._target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._pairs.append((client, server))
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()

    def _pump(self, client: socket.socket, server: socket.socket) -> None:
        sel = selectors.DefaultSelector()
        sel.register(client, selectors.EVENT_READ, server)
        sel.register(server, selectors.EVENT_READ, client)
        last = time.monotonic()
        try:
            while True:
                events = sel.select(timeout=0.05)
                if not events and self.idle_timeout and time.monotonic() - last > self.idle_timeout:
                    self.dropped_idle += 1
                    return
                for key, _ in events:
                    data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                    if not data:
                        return
                    key.data.sendall(data)
                    last = time.monotonic()
        except OSError:
            return
        finally:
            sel.close()
            self._drop(client, server)

    def _drop(self, client: socket.socket, server: socket.socket) -> None:
        with self._lock:
            if (client, server) in self._pairs:
                self._pairs.remove((client, server))
        for s in (client, server):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def cut_clients(self) -> int:
        """Close the client side of every open connection; the server side stays open. Returns how many."""
        with self._lock:
            pairs = list(self._pairs)
        for client, _ in pairs:
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_RDWR)
        return len(pairs)

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        with self._lock:
            pairs = list(self._pairs)
        for client, server in pairs:
            self._drop(client, server)
