"""A camera stand-in: serve a video (or a generated moving pattern) as an HTTP MJPEG stream.

    python -m edgevlm.scripts.mjpeg_server --port 8090 [--video edgevlm/assets/samples/street.mp4] [--fps 10]

Every client gets ``multipart/x-mixed-replace`` JPEG frames at ``--fps`` frames per second
of wall time, looping over the video like a camera that never ends; all clients see the same
"now" (the frame index follows the server's clock, not the client's), as with a real camera.
It prints one line, ``serving http://127.0.0.1:PORT/ ...``, once it is listening, so a test
or the soak run can wait for it. Used by the reconnect tests (killed with SIGKILL and started
again on the same port; SIGSTOP makes it a stalled camera) and by ``edgevlm.scripts.soak``.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np

BOUNDARY = "edgevlmframe"


def pattern_frames(count: int = 50, size: tuple[int, int] = (160, 120)) -> list[np.ndarray]:
    """A textured background with a red block moving across it (BGR, ``size`` = (W, H)):
    something the frame-quality check accepts and the scene gate sees move."""
    w, h = size
    rng = np.random.default_rng(0)
    background = rng.integers(30, 90, size=(h, w, 3), dtype=np.uint8)
    frames = []
    for i in range(count):
        frame = background.copy()
        x = (i * 3) % (w - 24)
        frame[h // 4 : h // 4 + 24, x : x + 24] = (0, 0, 220)
        frames.append(frame)
    return frames


def video_frames(path: str) -> tuple[list[np.ndarray], float]:
    """Every frame of ``path`` and its frame rate (frames per second; 10 if unknown)."""
    capture = cv2.VideoCapture(path)
    fps = capture.get(cv2.CAP_PROP_FPS)
    frames = []
    while True:
        ok, image = capture.read()
        if not ok:
            break
        frames.append(image)
    capture.release()
    if not frames:
        raise SystemExit(f"error: cannot read frames from {path}")
    return frames, fps if 0 < fps < 1000 else 10.0


def make_handler(jpegs: list[bytes], fps: float, started: float):
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            self.send_response(200)
            self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
            self.send_header("Cache-Control", "no-cache")
            self.end_headers()
            try:
                while True:
                    # The frame of "now" on the server's clock: a late client skips frames, as with a camera.
                    index = int((time.monotonic() - started) * fps)
                    jpeg = jpegs[index % len(jpegs)]
                    self.wfile.write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
                                     .encode("ascii") + jpeg + b"\r\n")
                    self.wfile.flush()
                    next_at = started + (index + 1) / fps
                    time.sleep(max(0.0, next_at - time.monotonic()))
            except (BrokenPipeError, ConnectionResetError):  # the client went away
                return

        def log_message(self, *args):  # one line per request would drown the test output
            pass

    return Handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--video", default=None, help="video file to loop (default: a generated moving pattern)")
    parser.add_argument("--fps", type=float, default=None, help="frames per second (default: the video's, or 10)")
    parser.add_argument("--quality", type=int, default=80, help="JPEG quality")
    args = parser.parse_args(argv)
    if args.video:
        frames, fps = video_frames(args.video)
    else:
        frames, fps = pattern_frames(), 10.0
    fps = args.fps or fps
    jpegs = [cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, args.quality])[1].tobytes() for f in frames]
    server = ThreadingHTTPServer((args.host, args.port), make_handler(jpegs, fps, time.monotonic()))
    server.daemon_threads = True  # a client still connected never keeps the server from exiting
    print(f"serving http://{args.host}:{server.server_address[1]}/ ({len(jpegs)} frames at {fps:g} fps)", flush=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        thread.join()
    except KeyboardInterrupt:
        server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
