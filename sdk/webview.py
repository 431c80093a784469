"""``WebViewer``: watch a stream's overlay in a browser, for headless boxes reached over SSH.

Serves the newest published frame as MJPEG over HTTP (stdlib ``http.server``, one thread per
viewer). Bound to 127.0.0.1 unless told otherwise: reach it with ``ssh -L 8080:127.0.0.1:8080``.

>>> viewer = WebViewer(port=8080)            # doctest: +SKIP
>>> viewer.publish(frame)                    # doctest: +SKIP  BGR uint8, e.g. each overlay frame
>>> print(viewer.url)                        # doctest: +SKIP  http://127.0.0.1:8080/
>>> viewer.close()                           # doctest: +SKIP

Paths: ``/`` a page showing the video, ``/stream.mjpg`` the MJPEG stream
(``multipart/x-mixed-replace``), ``/frame.jpg`` the newest frame alone.
JPEG encoding happens only when someone watches, once per frame however many watch.
"""
from __future__ import annotations

import html
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np

from .errors import ConfigError

_BOUNDARY = "gi-sdk-frame"
_WAIT_S = 0.5            # viewer threads look at the closed flag this often

_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>
  html, body {{ margin: 0; background: #111; color: #ddd; font: 14px sans-serif; }}
  header {{ padding: 6px 10px; }}
  img {{ display: block; max-width: 100vw; max-height: calc(100vh - 32px); margin: 0 auto; }}
</style></head>
<body><header>{title}</header><img id="video" src="stream.mjpg" alt="live overlay"></body></html>
"""


class WebViewer:
    """An MJPEG server showing the newest frame given to ``publish``.

    host: address to bind; 127.0.0.1 keeps the video on this machine (use ``"0.0.0.0"`` only on
        a network you trust: there is no authentication). port: 0 picks a free port (see ``url``).
    quality: JPEG quality 1-100. title: shown on the page.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 8080, quality: int = 80, title: str = "gi_sdk live overlay"):
        self.quality, self.title = int(quality), title
        self._cond = threading.Condition()
        self._frame: np.ndarray | None = None
        self._seq = 0                         # number of the newest published frame
        self._jpeg: tuple[int, bytes] | None = None   # (seq, bytes) of the last encoded frame
        self._encode_lock = threading.Lock()
        self._closed = False
        try:
            self._server = ThreadingHTTPServer((host, int(port)), self._handler_class())
        except OSError as exc:
            raise ConfigError(f"cannot serve the web viewer on {host}:{port} ({exc}); choose another --port") from None
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="gi_sdk-webview", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/"

    def publish(self, frame: np.ndarray) -> None:
        """Show ``frame`` (BGR uint8) to every viewer; cheap: encoding waits for a viewer."""
        with self._cond:
            self._frame, self._seq = frame, self._seq + 1
            self._cond.notify_all()

    def jpeg(self, after: int = 0, timeout: float | None = None) -> tuple[int, bytes] | None:
        """(seq, JPEG bytes) of the newest frame whose seq > ``after``, waiting up to ``timeout``
        seconds for one; None if none came or the viewer is closed."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._closed or self._seq > after, timeout):
                return None
            if self._closed:
                return None
            seq, frame = self._seq, self._frame
        with self._encode_lock:   # viewers of the same frame share one encoding
            if self._jpeg is None or self._jpeg[0] != seq:
                ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
                if not ok:
                    return None
                self._jpeg = (seq, buf.tobytes())
            return self._jpeg

    def close(self) -> None:
        """Stop serving; viewer connections end within half a second."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _handler_class(self):
        viewer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                path = self.path.split("?", 1)[0]
                if path in ("/", "/index.html"):
                    self._send(200, "text/html; charset=utf-8", _PAGE.format(title=html.escape(viewer.title)).encode())
                elif path == "/frame.jpg":
                    got = viewer.jpeg(after=0, timeout=2.0)
                    if got is None:
                        self._send(503, "text/plain", b"no frame yet")
                    else:
                        self._send(200, "image/jpeg", got[1])
                elif path == "/stream.mjpg":
                    self._mjpeg()
                else:
                    self._send(404, "text/plain", b"not found; try / or /stream.mjpg")

            def _send(self, code: int, kind: str, body: bytes):
                self.send_response(code)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def _mjpeg(self):
                self.send_response(200)
                self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={_BOUNDARY}")
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                seq = 0
                try:
                    while not viewer._closed:
                        got = viewer.jpeg(after=seq, timeout=_WAIT_S)
                        if got is None:
                            continue
                        seq, data = got
                        self.wfile.write(f"--{_BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                                         f"Content-Length: {len(data)}\r\n\r\n".encode() + data + b"\r\n")
                        self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    pass   # the viewer closed the tab

            def log_message(self, *args):   # keep the demo's terminal for the demo
                pass

        return Handler
