"""Running the local hub: uvicorn in a background thread, log redaction, and pointing the client at it.

`huggingface_hub` reads `HF_ENDPOINT` and `HF_HUB_OFFLINE` once, at import, into
`huggingface_hub.constants` (ENDPOINT, the resolve-URL template, the trusted hosts, the offline flag),
and builds the module-level `HfApi()` behind `upload_file`, `create_commit`... (used by
`ModelCard.push_to_hub`) with that endpoint. The mixins and `ModelCard.validate` accept no per-call
endpoint, so they follow those values only. `use_endpoint` patches exactly those (and the environment,
for subprocesses) for the duration of a `with` block, then restores them, which also works when
huggingface_hub was imported earlier with HF_HUB_OFFLINE=1. The `datasets` library copies the same two
settings into `datasets.config` at its import; when it is already imported, those copies are patched too,
so `load_dataset` reads the local hub's dataset repos.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

from .server import DEFAULT_MAX_UPLOAD_BYTES, create_app

# A bearer credential, a `token=` / `access_token=` query value, or a Hub-shaped token (hf_ + 30 or more
# letters and digits, as real tokens are; shorter `hf_` names such as repo ids stay readable).
_SECRET = re.compile(r"(?i)(bearer\s+|\btoken=|\baccess_token=|\b(?=hf_[A-Za-z0-9]{30,}))[^\s&\"']+")
_LOGGERS = ("uvicorn", "uvicorn.access", "uvicorn.error", "hf_probex.hub")


class RedactTokens(logging.Filter):
    """Masks anything that looks like a token in a log record (its message and its arguments).

    uvicorn's access log never prints headers, but it prints the request line; a token passed in a
    query string, or quoted in an error, must still not reach the logs.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = _SECRET.sub(r"\1***", str(record.msg))
        if record.args:
            args = record.args if isinstance(record.args, tuple) else (record.args,)
            record.args = tuple(_SECRET.sub(r"\1***", a) if isinstance(a, str) else a for a in args)
        return True


def install_redaction() -> None:
    """Attach RedactTokens to the uvicorn loggers (idempotent)."""
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactTokens) for f in logger.filters):
            logger.addFilter(RedactTokens())


def uvicorn_log_config() -> dict:
    """uvicorn's default logging configuration with RedactTokens on every logger it sets up, the hub's own
    warnings (a users file that broke, a repo listed without its derived fields) included."""
    from uvicorn.config import LOGGING_CONFIG

    config = {**LOGGING_CONFIG, "filters": {"redact": {"()": RedactTokens}}}
    config["handlers"] = {name: {**handler, "filters": ["redact"]} for name, handler in LOGGING_CONFIG["handlers"].items()}
    config["loggers"] = {**LOGGING_CONFIG["loggers"],
                         "hf_probex.hub": {"handlers": ["default"], "level": "INFO", "propagate": False}}
    return config


class LocalHub:
    """A hub served by uvicorn on 127.0.0.1 in a daemon thread; `with LocalHub(root) as hub: hub.endpoint`."""

    def __init__(self, root: str | os.PathLike, *, users_file: str | os.PathLike | None = None,
                 host: str = "127.0.0.1", port: int = 0, max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES) -> None:
        self.root = Path(root)
        self.users_file = users_file
        self.host, self.port = host, port
        self.max_upload_bytes = max_upload_bytes
        self._server = None
        self._thread: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> "LocalHub":
        import uvicorn

        app = create_app(self.root, users_file=self.users_file, max_upload_bytes=self.max_upload_bytes)
        # Bind first, then hand the socket to uvicorn: the port is known before the thread starts and
        # no other process can take it in between.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        install_redaction()
        # log_config=None leaves logging to the host application (and lets pytest capture it).
        config = uvicorn.Config(app, log_config=None, access_log=True, lifespan="off", timeout_keep_alive=30)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True,
                                        name=f"local-hub-{self.port}")
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the local hub did not start on {self.endpoint}")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
            self._server = self._thread = None

    def __enter__(self) -> "LocalHub":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _module_patches(endpoint: str) -> list[tuple[object, dict[str, object]]]:
    """(module, {attribute: value}) for each already-imported module holding a copy of the endpoint settings."""
    from huggingface_hub import constants

    hub = {
        "ENDPOINT": endpoint,
        "HUGGINGFACE_CO_URL_TEMPLATE": endpoint + "/{repo_id}/resolve/{revision}/{filename}",
        "HF_HUB_OFFLINE": False,
    }
    if hasattr(constants, "HF_URL_HOSTS"):  # huggingface_hub 2.x: hosts whose URLs and redirects are trusted
        hub["HF_URL_HOSTS"] = constants.HF_URL_HOSTS | {urlsplit(endpoint).hostname}
    patches: list[tuple[object, dict[str, object]]] = [(constants, hub)]
    datasets_config = sys.modules.get("datasets.config")
    if datasets_config is not None:
        wanted = {"HF_ENDPOINT": endpoint, "HUB_DATASETS_URL": endpoint + "/datasets/{repo_id}/resolve/{revision}/{path}",
                  "HF_HUB_OFFLINE": False, "HF_DATASETS_OFFLINE": False}
        patches.append((datasets_config, {k: v for k, v in wanted.items() if hasattr(datasets_config, k)}))
    return patches


@contextlib.contextmanager
def use_endpoint(endpoint: str) -> Iterator[None]:
    """Point huggingface_hub (already imported or not), and `datasets` if imported, at `endpoint`, online, inside
    the block."""
    from huggingface_hub import hf_api

    endpoint = endpoint.rstrip("/")
    patches = _module_patches(endpoint)
    saved = [(module, {name: getattr(module, name) for name in values}) for module, values in patches]
    saved_env = {name: os.environ.get(name) for name in ("HF_ENDPOINT", "HF_HUB_OFFLINE")}
    saved_api_endpoint = hf_api.api.endpoint
    try:
        for module, values in patches:
            for name, value in values.items():
                setattr(module, name, value)
        hf_api.api.endpoint = endpoint
        os.environ["HF_ENDPOINT"] = endpoint
        os.environ["HF_HUB_OFFLINE"] = "0"
        yield
    finally:
        hf_api.api.endpoint = saved_api_endpoint
        for module, values in saved:
            for name, value in values.items():
                setattr(module, name, value)
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
