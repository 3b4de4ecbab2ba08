"""An RTSP camera stand-in for the reconnect tests: GStreamer's RTSP server serving a live
test pattern. Run with the system Python, which has PyGObject (the venv has not):

    /usr/bin/python3 tests/servers/rtsp_server.py --port 8554 [--codec h264|jpeg]

Needs the Debian packages python3-gi, gir1.2-gst-rtsp-server-1.0 and
gstreamer1.0-plugins-base/-good/-ugly (x264enc is in -ugly; `make system-deps` installs
them). Prints ``serving rtsp://127.0.0.1:PORT/stream`` once listening. Killed with SIGKILL
and started again on the same port by the tests: a camera server that restarts.
"""

import argparse
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

# is-live: frames come at the camera's pace, not as fast as the encoder can go.
SOURCE = "videotestsrc is-live=true pattern=ball ! video/x-raw,width=160,height=120,framerate=10/1"
ENCODERS = {
    # key-int-max=10: a client joining (or re-joining) decodes within a second
    "h264": "x264enc tune=zerolatency speed-preset=ultrafast key-int-max=10 ! rtph264pay name=pay0 pt=96",
    "jpeg": "jpegenc ! rtpjpegpay name=pay0 pt=26",
}


def main() -> int:
    parser = argparse.ArgumentParser(description="RTSP test-pattern server")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--codec", choices=sorted(ENCODERS), default="h264")
    args = parser.parse_args()
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(f"( {SOURCE} ! {ENCODERS[args.codec]} )")
    factory.set_shared(True)  # one pipeline for all clients: a camera, not a file per client
    server.get_mount_points().add_factory("/stream", factory)
    if server.attach(None) == 0:
        print(f"error: cannot listen on 127.0.0.1:{args.port}", file=sys.stderr)
        return 1
    print(f"serving rtsp://127.0.0.1:{args.port}/stream ({args.codec})", flush=True)
    GLib.MainLoop().run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
