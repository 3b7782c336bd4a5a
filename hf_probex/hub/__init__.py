"""A local, Hub-API-compatible server for tests and offline use (`hf-probex hub serve`).

`create_app` builds the FastAPI app over a root folder (`storage.Storage`); `LocalHub` runs it on
127.0.0.1 in a thread and `use_endpoint` points `huggingface_hub` at it; `import_zoo` publishes a zoo.
See docs/local-hub.md for the supported client calls.
"""

from .errors import HubError
from .runner import LocalHub, use_endpoint
from .server import create_app
from .storage import Storage

__all__ = ["HubError", "LocalHub", "Storage", "create_app", "use_endpoint"]
