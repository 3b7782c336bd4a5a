"""What every command group shares: the bad-input error, the cache folder, common options."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator


class UserError(Exception):
    """A bad input: printed as one `error:` line, exit status 2."""


@contextlib.contextmanager
def hub_errors_as_user_errors(offline_hint: str = "") -> Iterator[None]:
    """What the Hub says (unreachable, offline mode, an HTTP error, the bot's stop) as one `UserError` line;
    `offline_hint` adds what else to try when the Hub cannot be reached."""
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    from ..errors import BotStopped

    try:
        yield
    except BotStopped as err:
        raise UserError(str(err)) from None
    except (OfflineModeIsEnabled, httpx2.HTTPError) as err:
        raise UserError(f"cannot reach the Hub ({type(err).__name__}): check the network and HF_ENDPOINT, and unset "
                        f"HF_HUB_OFFLINE{offline_hint}") from None
    except HfHubHTTPError as err:
        status = err.response.status_code if err.response is not None else "?"
        raise UserError(f"the Hub answered HTTP {status}: {err.server_message or str(err).splitlines()[0]}") from None


def probability(text: str) -> float:
    """An argparse type for options that are a share or a confidence: a number from 0 to 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number (give one from 0 to 1)") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and 1")
    return value


def add_cv_options(sub: argparse.ArgumentParser, *, training: bool) -> None:
    """Options shared by every cross-validated command: folds and seed (and, for experts, training)."""
    sub.add_argument("--folds", type=int, default=5, help="cross-validation folds (default: 5)")
    sub.add_argument("--seed", type=int, default=0, help="seed of the folds, the label shuffles and training")
    if training:
        sub.add_argument("--epochs", type=int, default=None, help="training epochs (default: 100, or 500 with --paper)")
        sub.add_argument("--paper", action="store_true", help="the papers' sizes and training recipe (slow on CPU)")
