"""``edgevlm serve``: an HTTP API, an accessible page and many cameras, on the torch-free runtime.

Needs the ``serve`` extra (Starlette, uvicorn); ``--ray`` needs the ``ray`` extra.
"""
