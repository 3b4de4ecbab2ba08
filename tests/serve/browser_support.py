"""Helpers for the page's real-browser test: the real ``edgevlm serve`` app in a uvicorn thread,
Debian's headless Chromium driven by Playwright, and a screenshot of the page for notes.

Playwright's own browser download cannot be fetched here, so the browser is the ``chromium``
package's (``make system-deps`` installs it) through ``executable_path``.

A screenshot of the page narrating the shipped street clip, for a release note or a PR::

    .venv/bin/python -m tests.serve.browser_support page.png            # starts its own server
    .venv/bin/python -m tests.serve.browser_support page.png --url http://127.0.0.1:8080/?token=T
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import socket
import sys
import threading
from contextlib import contextmanager

from tests.serve.live_server import ServerThread

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STREET_CLIP = os.path.join(REPO_ROOT, "edgevlm", "assets", "samples", "street.mp4")
POLITE = "#live-polite"
# Lines the page announces about the connection rather than about the scene.
CONNECTION_LINES = ("Connection to the stream", "Connection restored", "The stream has ended",
                    "The stream was removed", "Added and following", "Following ")

# Installed before the page's own script: records what the page hands to speechSynthesis
# (headless Chromium has no voice to hear) and every line added to the two live regions (the
# page keeps only the last few in the DOM), so a test can wait for what comes after an action.
PAGE_SPY = """
window.__spoken = [];
if (window.speechSynthesis) {
  const speak = window.speechSynthesis.speak.bind(window.speechSynthesis);
  window.speechSynthesis.speak = (utterance) => {
    window.__spoken.push(utterance.text);
    try { speak(utterance); } catch (error) { /* no voice: what was asked is what counts */ }
  };
}
window.__announced = { 'live-polite': [], 'live-assertive': [] };
new MutationObserver((records) => {
  for (const record of records) {
    const log = window.__announced[record.target.id];
    if (log) record.addedNodes.forEach((node) => log.push(node.textContent));
  }
}).observe(document, { childList: true, subtree: true });
"""


def missing_for_browser_test() -> str | None:
    """Why the browser test cannot run here (naming the package to install), or None."""
    missing = []
    if shutil.which("chromium") is None:
        missing.append("Debian's chromium package (sudo apt-get install chromium; `make system-deps` does it)")
    # python-multipart is imported as python_multipart (newer) or multipart (older releases).
    for modules, package in ((("playwright",), "playwright"), (("uvicorn",), "uvicorn"),
                             (("starlette",), "starlette"), (("python_multipart", "multipart"), "python-multipart")):
        if all(importlib.util.find_spec(module) is None for module in modules):
            missing.append(f"the {package} Python package (pip install -e '.[dev]')")
    return "the page's browser test needs " + " and ".join(missing) if missing else None


def street_clip(path: str, seconds: float) -> str:
    """The shipped street clip cut or looped to ``seconds``, as an .mp4 at ``path``: a stream
    that stays live for the tests that need one running (the shipped clip lasts 10 s when
    paced like a camera), or one that ends soon for the test of a stream's end."""
    import cv2

    from edgevlm.scripts.mjpeg_server import video_frames

    frames, fps = video_frames(STREET_CLIP)
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    for index in range(int(seconds * fps)):
        writer.write(frames[index % len(frames)])
    writer.release()
    return path


def launch_chromium(playwright):
    """Headless Debian Chromium (no sandbox: it runs as root in containers and CI)."""
    return playwright.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])


class CuttableProxy:
    """A TCP proxy in front of a server whose connections the test can cut, like a Wi-Fi link
    dropping: ``cut()`` closes every open connection (the page's event stream included) and
    refuses new ones until ``restore()``. A real dropped socket, not a mocked EventSource."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.up = True
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, name="proxy-accept", daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:  # closed
                return
            if not self.up:
                client.close()  # the link is down: the browser sees the connection fail
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open.update((client, upstream))
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(src, dst), name="proxy-pipe", daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            self._close(src, dst)

    def _close(self, *socks: socket.socket) -> None:
        for sock in socks:
            with self._lock:
                self._open.discard(sock)
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def cut(self) -> None:
        self.up = False
        with self._lock:
            open_now = list(self._open)
        self._close(*open_now)

    def restore(self) -> None:
        self.up = True

    def close(self) -> None:
        self.cut()
        self.listener.close()


@contextmanager
def serve_app(sources=(STREET_CLIP,), **settings):
    """The real app (the shipped default engine, realtime-paced files) with ``sources`` as
    streams, served in a thread; yields the ServerThread."""
    from edgevlm.runtime.serve.app import create_app
    from edgevlm.runtime.serve.settings import ServeSettings

    server = ServerThread(create_app(ServeSettings(port=0, **settings), sources=list(sources))).start()
    try:
        yield server
    finally:
        server.stop()


def first_caption_line(page, timeout_ms: float = 60_000) -> str:
    """Wait until the polite live region holds a caption (not a connection notice); its text."""
    page.wait_for_function(
        """([selector, notices]) => [...document.querySelector(selector).children]
             .some((line) => !notices.some((n) => line.textContent.startsWith(n)))""",
        arg=[POLITE, list(CONNECTION_LINES)], timeout=timeout_ms)
    return page.evaluate(
        """([selector, notices]) => [...document.querySelector(selector).children]
             .map((line) => line.textContent).filter((t) => !notices.some((n) => t.startsWith(n))).pop()""",
        [POLITE, list(CONNECTION_LINES)])


def capture_screenshot(url: str, path: str, timeout_ms: float = 60_000) -> str:
    """Open the page at ``url`` in headless Chromium, wait for its first caption and picture,
    and save a full-page PNG to ``path``."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 900})
            page.goto(url)
            first_caption_line(page, timeout_ms)
            page.wait_for_selector("#frame:not([hidden])", timeout=timeout_ms)
            page.screenshot(path=path, full_page=True)
        finally:
            browser.close()
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="A screenshot of the edgevlm serve page.")
    parser.add_argument("out", help="PNG file to write")
    parser.add_argument("--url", help="a running server's page (default: start one on the street clip)")
    args = parser.parse_args(argv)
    reason = missing_for_browser_test()
    if reason:
        print(reason, file=sys.stderr)
        return 1
    if args.url:
        capture_screenshot(args.url, args.out)
    else:
        with serve_app() as server:
            capture_screenshot(server.url + "/", args.out)
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
