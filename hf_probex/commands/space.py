"""`hf-probex space`: serve the Gradio Space (the same app as spaces/app.py) on this machine."""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

from .common import UserError


def _space(args: argparse.Namespace) -> int:
    if not 0 <= args.port <= 65535:
        raise UserError(f"--port must be between 0 and 65535, not {args.port}")
    if args.max_upload_mb <= 0 or args.workers < 1:
        raise UserError("--max-upload-mb and --workers must be positive")
    if args.hub_root and args.endpoint:
        raise UserError("give --hub-root (serve a local hub here) or --endpoint (use a running one), not both")
    if args.hub_root and not Path(args.hub_root).is_dir():
        raise UserError(f"--hub-root {args.hub_root} is not a folder (make one with `hf-probex hub import ZOO --root DIR`)")

    from ..hub import LocalHub, use_endpoint

    with contextlib.ExitStack() as stack:
        if args.hub_root:
            root = Path(args.hub_root)
            users = args.hub_users or (root / "users.yaml" if (root / "users.yaml").is_file() else None)
            hub = stack.enter_context(LocalHub(root, users_file=users))
            args.endpoint = hub.endpoint
            print(f"local hub on {hub.endpoint} (root {args.hub_root})")
        if args.endpoint:
            stack.enter_context(use_endpoint(args.endpoint))
        from ..space.app import create_app  # gradio and torch: only once the arguments are known to be good

        app = create_app(args.expert, max_upload_bytes=int(args.max_upload_mb * 2**20), concurrency=args.workers)
        app.launch(server_name=args.host, server_port=args.port, share=False)
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    """Add `hf-probex space` to the `hf-probex` parser."""
    space = commands.add_parser(
        "space", help="serve the Gradio Space locally (infer a card, browse a tree, search LoRAs, experts)",
        description="Serve the hf-probex Gradio Space (the app of spaces/app.py) on this machine, against the Hub "
                    "huggingface_hub is configured for (HF_ENDPOINT), or a local hub. See docs/space.md.",
    )
    space.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: 127.0.0.1; 0.0.0.0 for all)")
    space.add_argument("--port", type=int, default=7860, help="port (default: 7860)")
    space.add_argument("--endpoint", help="the Hub to use, e.g. http://127.0.0.1:8000 (default: HF_ENDPOINT or the Hub)")
    space.add_argument("--hub-root", help="serve a local hub from this root (`hf-probex hub import`) and use it")
    space.add_argument("--hub-users", help="the local hub's users file (default: HUB_ROOT/users.yaml if present)")
    space.add_argument("--expert", action="append", metavar="LOCATION",
                       help="an expert folder or Hub repo id (repeatable; default: the local registry file and the "
                            "Hub's experts tagged probex-expert)")
    space.add_argument("--max-upload-mb", type=float, default=512, help="largest .safetensors upload, in MiB (default: 512)")
    space.add_argument("--workers", type=int, default=2, help="requests worked on at once per action (default: 2)")
    space.set_defaults(func=_space)
