"""A TCP proxy in front of a real server that can fail on demand (for S3 failure tests).

Modes: ``pass`` forwards everything; ``refuse`` resets every new connection at once (the
server is unreachable); ``cut_large`` forwards, but resets any connection that has carried
more than ``cut_after`` bytes towards the server (large uploads die mid-way while small
requests, such as an AbortMultipartUpload, still get through).
"""

from __future__ import annotations

import socket
import struct
import threading
from dataclasses import dataclass, field


def _reset(sock: socket.socket) -> None:
    # SO_LINGER 0: close() sends RST, as a crashed peer or a dropped route would.
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    # The other direction's thread may be blocked in recv() on this socket, which keeps it
    # open past close(); SHUT_RD wakes it (no FIN is sent), so the RST really goes out.
    try:
        sock.shutdown(socket.SHUT_RD)
    except OSError:
        pass
    sock.close()


@dataclass
class FaultProxy:
    target_port: int
    target_host: str = "127.0.0.1"
    mode: str = "pass"
    cut_after: int = 1 << 20
    port: int = 0
    cuts: int = 0
    _listener: socket.socket | None = None
    _stopping: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> FaultProxy:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stopping = True
        if self._listener is not None:
            self._listener.close()

    def _accept(self) -> None:
        assert self._listener is not None
        while not self._stopping:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.mode == "refuse":
                _reset(client)
                continue
            try:
                upstream = socket.create_connection((self.target_host, self.target_port), timeout=5)
            except OSError:
                _reset(client)
                continue
            upstream.settimeout(None)
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, upstream: bool) -> None:
        sent = 0
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                sent += len(data)
                if upstream and self.mode == "cut_large" and sent > self.cut_after:
                    with self._lock:
                        self.cuts += 1
                    break
                if upstream and self.mode == "refuse":
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            _reset(src)
            _reset(dst)
