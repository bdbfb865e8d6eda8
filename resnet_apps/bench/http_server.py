"""A loopback HTTP file server with Range requests, byte counting and a connection-dropping mode.

For ``bench predict --remote`` and the remote-COG / STAC tests: it serves one folder on ``127.0.0.1``
(an ephemeral port) from a daemon thread, answers ``HEAD``, ``GET`` and single ``Range: bytes=a-b``
requests (206 with ``Content-Range``; 416 outside the file), and counts the body bytes it sends, so a
test or benchmark can compare what the client read with the file's size. ``drop_from`` cuts responses
that reach that byte offset of a file (every one, or the first ``drops``): the headers promise the full
range, the body stops at the offset and the connection is closed, as a dropped connection looks to the
client.

Usage::

    with RangeServer(folder) as server:
        url = server.url("scene.tif")        # http://127.0.0.1:PORT/scene.tif
        ...
        server.bytes_served                   # body bytes sent so far
"""

from __future__ import annotations

import re
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote, unquote, urlsplit

_RANGE = re.compile(r"bytes=(\d*)-(\d*)$")
CHUNK = 1 << 16


class _Handler(SimpleHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"  # keep-alive, as GDAL's curl expects of a real server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        return None  # quiet: tests and benchmarks read figures, not access logs

    def _file(self) -> Path | None:
        relative = unquote(urlsplit(self.path).path).lstrip("/")
        path = (self.server.root / relative).resolve()
        if self.server.root not in path.parents or not path.is_file():
            return None
        return path

    def do_HEAD(self) -> None:  # noqa: N802 - http.server's naming
        self._respond(body=False)

    def do_GET(self) -> None:  # noqa: N802
        self._respond(body=True)

    def _respond(self, body: bool) -> None:
        path = self._file()
        if path is None:
            self.send_error(404, "not found")
            return
        size = path.stat().st_size
        start, end, status = 0, size - 1, 200
        header = self.headers.get("Range")
        if header:
            match = _RANGE.match(header.strip())
            if match is None or (not match.group(1) and not match.group(2)):
                self.send_error(416, "only one bytes=a-b range is served")
                return
            if match.group(1):
                start = int(match.group(1))
                end = min(int(match.group(2)), size - 1) if match.group(2) else size - 1
            else:  # bytes=-n: the last n bytes
                start = max(size - int(match.group(2)), 0)
            if start >= size or end < start:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(end - start + 1))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        if not body:
            return
        self.server.count_request()
        stop = end + 1
        dropped = (
            self.server.drop_from is not None and stop > self.server.drop_from and self.server.take_drop()
        )
        if dropped:
            stop = max(start, self.server.drop_from or 0)
        with path.open("rb") as handle:
            handle.seek(start)
            at = start
            while at < stop:
                data = handle.read(min(CHUNK, stop - at))
                if not data:
                    break
                self.wfile.write(data)
                self.server.count(len(data))
                at += len(data)
        if dropped:  # the promised Content-Length is never reached: the client sees a cut connection
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(2)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root: Path, drop_from: int | None, drops: int | None) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.root = root
        self.drop_from = drop_from
        self.drops_left = drops
        self.dropped = 0
        self.lock = threading.Lock()
        self.bytes_served = 0
        self.requests = 0

    def count(self, n: int) -> None:
        with self.lock:
            self.bytes_served += n

    def take_drop(self) -> bool:
        """Whether to cut this response (counts it): always, or while ``drops`` remain."""
        with self.lock:
            if self.drops_left is not None:
                if self.drops_left <= 0:
                    return False
                self.drops_left -= 1
            self.dropped += 1
            return True

    def count_request(self) -> None:
        with self.lock:
            self.requests += 1


class RangeServer:
    """A threaded loopback server of ``root`` (see the module docstring); a context manager.

    Args:
        root: folder whose files are served (nothing outside it).
        drop_from: byte offset at which a response is cut and its connection closed (None: never).
        drops: how many responses to cut (None: every one that reaches ``drop_from``).
    """

    def __init__(self, root: str | Path, drop_from: int | None = None, drops: int | None = None) -> None:
        self._server = _Server(Path(root).resolve(), drop_from, drops)
        self._thread = threading.Thread(target=self._server.serve_forever, name="range-server", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def bytes_served(self) -> int:
        """Body bytes sent so far (headers not counted)."""
        return self._server.bytes_served

    @property
    def dropped(self) -> int:
        """Responses cut so far."""
        return self._server.dropped

    @property
    def requests(self) -> int:
        """GET requests answered so far."""
        return self._server.requests

    def reset(self) -> None:
        """Zero the byte and request counters."""
        with self._server.lock:
            self._server.bytes_served = 0
            self._server.requests = 0

    def url(self, relative: str) -> str:
        """``http://127.0.0.1:PORT/<relative>`` for a file under ``root``."""
        return f"http://127.0.0.1:{self.port}/{quote(relative)}"

    def __enter__(self) -> RangeServer:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
