"""`hf-probex hub`: serve a local Hub-compatible server and import zoos into it."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import UserError


def _hub_serve(args: argparse.Namespace) -> int:
    import socket

    import uvicorn

    from ..hub.auth import UsersFileError
    from ..hub.runner import uvicorn_log_config
    from ..hub.server import create_app

    root = Path(args.root)
    users = Path(args.users) if args.users else (root / "users.yaml" if (root / "users.yaml").is_file() else None)
    try:
        app = create_app(root, users_file=users, max_upload_bytes=int(args.max_upload_mb * 1024**2))
    except UsersFileError as err:
        raise UserError(str(err)) from None
    except OSError as err:
        raise UserError(f"cannot use {root} as the hub root ({err.strerror})") from None
    sock = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((args.host, args.port))
    except OSError as err:
        raise UserError(f"cannot listen on {args.host}:{args.port} ({err.strerror})") from None
    sock.listen(2048)  # listening before the line below: clients that read it may connect at once
    port = sock.getsockname()[1]
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"serving {root} at http://{host}:{port} (users: {users or 'none, read-only'})", flush=True)
    uvicorn.Server(uvicorn.Config(app, log_config=uvicorn_log_config(), lifespan="off")).run(sockets=[sock])
    return 0


def _hub_import(args: argparse.Namespace) -> int:
    from ..hub.importer import import_zoo

    report = import_zoo(args.zoo, args.root, progress=None if args.quiet else print)
    print(report)
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    """Add this group's commands to the `hf-probex` parser."""
    hub = commands.add_parser("hub", help="a local Hub-API-compatible server (for tests and offline use)",
                              description="A local server speaking the Hugging Face Hub API that huggingface_hub "
                                          "uses: model and dataset repos, downloads with ranges and ETags, commits, branches and "
                                          "tags, pull requests, discussions. "
                                          "See docs/local-hub.md.")
    hub_commands = hub.add_subparsers(dest="hub_command", metavar="SUBCOMMAND", required=True)
    serve = hub_commands.add_parser(
        "serve", help="serve a hub root over HTTP",
        description="Serve the repos under --root (created if missing). Point clients at it with "
                    "HF_ENDPOINT=http://HOST:PORT. Writing needs a token from the users file.",
    )
    serve.add_argument("--root", required=True, help="folder holding the hub's repos and objects")
    serve.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port (default: 8000; 0 picks a free one)")
    serve.add_argument("--users", help="users file, YAML or JSON: users, their tokens, org members "
                                       "(default: ROOT/users.yaml if present, else nobody can write)")
    serve.add_argument("--max-upload-mb", type=float, default=2048,
                       help="largest request body accepted, in MiB; larger uploads get 413 (default: 2048)")
    serve.set_defaults(func=_hub_serve)
    hub_import = hub_commands.add_parser(
        "import", help="publish a zoo into a hub root (one repo per model, one org per tree)",
        description="Publish every finished model of a zoo into the hub root: one public repo per model, named "
                    "as in the zoo plan (an org per tree), files and cards as the zoo wrote them. Writes to the "
                    "root directly, so it works whether or not a server is running on it; reruns commit only "
                    "what changed.",
    )
    hub_import.add_argument("zoo", help="zoo folder (from `hf-probex zoo build`)")
    hub_import.add_argument("--root", required=True, help="hub root folder (as given to `hub serve --root`)")
    hub_import.add_argument("--quiet", action="store_true", help="print only the summary line")
    hub_import.set_defaults(func=_hub_import)
