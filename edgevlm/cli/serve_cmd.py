"""``edgevlm serve``: the HTTP API and the accessible page, locally or on Ray Serve."""

from __future__ import annotations

import socket

import click

from edgevlm.cli.options import backend_option, engine_option, provider_option, rebuild_option, threads_option
from edgevlm.errors import EdgeVLMError


def _check_port_free(host: str, port: int) -> None:
    """A port already taken is one line now, not uvicorn's log after the engines loaded."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise EdgeVLMError(f"cannot listen on {host}:{port} ({exc.strerror}); choose another --port, or stop "
                               "what uses it") from None


@click.command("serve")
@click.argument("sources", nargs=-1)
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Anything but loopback needs --token.")
@click.option("--port", type=click.IntRange(1, 65535), default=8080, show_default=True)
@engine_option
@provider_option
@backend_option
@rebuild_option
@threads_option
@click.option("--token", envvar="EDGEVLM_TOKEN", default=None,
              help="Required on every request (Authorization: Bearer TOKEN); env EDGEVLM_TOKEN.")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Engines answering caption/ask/chat requests, one thread each.")
@click.option("--queue-size", type=click.IntRange(1, 10_000), default=8, show_default=True,
              help="Requests that may wait per worker; beyond it: 503 with Retry-After.")
@click.option("--max-upload-mb", type=click.FloatRange(0.1, 1024), default=10.0, show_default=True,
              help="Largest request body; beyond it: 413.")
@click.option("--max-megapixels", type=click.FloatRange(0.01, 1000), default=40.0, show_default=True,
              help="Largest image (width x height); beyond it: 413.")
@click.option("--max-streams", type=click.IntRange(1, 256), default=8, show_default=True,
              help="Streams narrated at once (each has its own engine and thread).")
@click.option("--ray", "use_ray", is_flag=True, help="Run the engines as Ray Serve deployments (the `ray` extra).")
@click.option("--replicas", type=click.IntRange(1, 1024), default=2, show_default=True,
              help="With --ray: engine replicas (each owns one engine).")
@click.option("--address", default=None,
              help="With --ray: the Ray cluster to join (e.g. auto after `ray start --head`); default: start a local Ray.")
def command(sources, host, port, engine_dir, provider, backend, rebuild, threads, token, workers, queue_size, max_upload_mb,
            max_megapixels, max_streams, use_ray, replicas, address):
    """Serve the HTTP API and the page at http://HOST:PORT/, narrating each SOURCE (video file,
    camera index, /dev/videoN, RTSP URL) as a stream; more streams can be added over the API.

    \b
      edgevlm serve                         # the page and API on http://127.0.0.1:8080/
      edgevlm serve 0                       # and narrate camera 0
      EDGEVLM_TOKEN=secret edgevlm serve --host 0.0.0.0 rtsp://cam/stream
      edgevlm serve --ray --replicas 2      # engines on Ray Serve
    """
    try:
        import uvicorn  # noqa: F401  (the serve extra)
        import starlette  # noqa: F401
    except ModuleNotFoundError as exc:
        raise EdgeVLMError(f"edgevlm serve needs the serve extra (missing {exc.name}): pip install 'edgevlm[serve]'") from None
    from edgevlm.runtime.serve.app import create_app
    from edgevlm.runtime.serve.settings import ServeSettings

    if (replicas != 2 or address) and not use_ray:
        raise EdgeVLMError("--replicas and --address are for --ray; add --ray, or use --workers for local engines")
    settings = ServeSettings(host=host, port=port, engine_dir=engine_dir, provider=provider, backend=backend, rebuild=rebuild, threads=threads,
                             token=token or None, workers=workers, queue_size=queue_size,
                             max_upload_bytes=int(max_upload_mb * 1024 * 1024), max_pixels=int(max_megapixels * 1e6),
                             max_streams=max_streams)
    settings.check()
    _check_port_free(host, port)
    from edgevlm.runtime.serve.service import LocalService

    if use_ray:
        try:
            from edgevlm.runtime.serve.ray_service import RayService
        except ModuleNotFoundError as exc:
            raise EdgeVLMError(f"--ray needs the ray extra (missing {exc.name}): pip install 'edgevlm[ray]'") from None
        service = RayService(settings, replicas, address)
    else:
        service = LocalService(settings)
    app = create_app(settings, list(sources), service)
    click.echo(f"edgevlm serve: http://{host}:{port}/ ({'Ray Serve, ' + str(replicas) + ' replicas' if use_ray else str(workers) + ' worker(s)'}"
               f"{', token required' if token else ''})", err=True)
    server = _Server(app, host, port)
    try:
        server.run()
    finally:  # the app's shutdown closed it, unless a second ctrl-C forced the exit: then here
        service.close()
    if server.stopped_by:  # ctrl-C / SIGTERM: streams and engines were closed by the app's shutdown
        click.echo(f"stopped: {server.stopped_by}; streams and engines closed", err=True)


def _Server(app, host: str, port: int):
    """uvicorn's server, except that a ctrl-C or SIGTERM ends it after its graceful shutdown
    instead of being raised again inside the event loop (uvicorn re-raises it there, which our
    command's own handler turns into a traceback while the app's shutdown is still logged)."""
    import contextlib
    import signal
    import threading

    import uvicorn

    class Server(uvicorn.Server):
        stopped_by: str | None = None

        @contextlib.contextmanager
        def capture_signals(self):
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)
            if self._captured_signals:
                self.stopped_by = "SIGTERM" if signal.SIGTERM in self._captured_signals else "interrupted (Ctrl-C)"

    # timeout_graceful_shutdown: open event streams (the page) must not hold up ctrl-C
    return Server(uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                                 timeout_graceful_shutdown=3))
