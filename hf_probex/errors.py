"""The public exceptions of hf_probex, and the one place that maps huggingface_hub's errors onto them.

Every error a user can cause (a wrong repo id, a missing token, a pickled checkpoint, a corrupt
safetensors file, a model of a family we do not know) is a `ProbexError` whose message is one line:
what happened and what to try. Code that talks to the Hub wraps its calls in `hub_errors`, so no raw
huggingface_hub / httpx traceback reaches the user.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")


class ProbexError(Exception):
    """Base of every hf_probex error; `str(error)` is one line saying what happened and what to try."""


class RepoNotFoundError(ProbexError):
    """The source is neither an existing local path nor a Hub repo that the caller can see."""


class AccessDeniedError(ProbexError):
    """The Hub refused access (401/403): a gated or private repo, or a token without the rights."""


class RepoNotVisibleError(RepoNotFoundError, AccessDeniedError):
    """An anonymous request found no repo: the Hub answers the same for a missing and a private repo.

    It is both a `RepoNotFoundError` and an `AccessDeniedError`, since nobody can tell which without
    a token.
    """


class RevisionNotFoundError(ProbexError):
    """The repo exists but the branch, tag or commit asked for does not."""


class MissingFileError(ProbexError):
    """A file the repo listed (or an index named) cannot be fetched."""


class HubConnectionError(ProbexError):
    """The Hub could not be reached, answered with a server error, or offline mode is on."""


class NoSafetensorsError(ProbexError):
    """The model has no .safetensors weights (only pickled ones, which hf_probex never unpickles)."""

    def __init__(self, source: str, pickled: Sequence[str] = ()) -> None:
        self.source, self.pickled = source, list(pickled)
        if self.pickled:
            shown = ", ".join(self.pickled[:5]) + (f" (+{len(self.pickled) - 5} more)" if len(self.pickled) > 5 else "")
            what = f"{source} has only pickled weights ({shown}), which hf_probex never unpickles (unpickling runs code)"
        else:
            what = f"{source} has no .safetensors weights"
        super().__init__(
            f"{what}: convert them to safetensors (the Hub's 'safetensors/convert' Space opens a pull request with "
            f"model.safetensors) and point hf_probex at that revision"
        )


class BadFileError(ProbexError):
    """A file of the model (a JSON config, an index, a weights file) is malformed."""


class BadSafetensorsError(BadFileError):
    """A safetensors file breaks the format: truncated header, bad lengths or offsets, unknown dtype, bad JSON."""


class UnknownArchitectureError(ProbexError):
    """No adapter recognises the model's files."""

    def __init__(self, source: str, known: Sequence[str], seen: str = "") -> None:
        self.source, self.known = source, list(known)
        super().__init__(
            f"no adapter recognises {source}{f' ({seen})' if seen else ''}; hf_probex knows these families: "
            f"{', '.join(known)}: pass a model of one of them, or add an adapter in hf_probex/adapters/"
        )


class NotAClassifierError(UnknownArchitectureError):
    """A model with no classification head to run (a plain encoder, a sentence-transformers model)."""

    def __init__(self, source: str, seen: str) -> None:
        ProbexError.__init__(self, f"{source} has no classification head to run ({seen}); pass a transformers sequence "
                                   f"classifier, a SetFit model or a peft adapter of a sequence classifier")
        self.source, self.known = source, []


class LayerMismatchError(ProbexError):
    """The model lacks the layer an expert reads, or stores it in another shape."""


class BaseModelError(ProbexError):
    """A peft adapter's base cannot be read: none declared, a path hf_probex does not follow, not reachable, no access,
    or not a full model (`hf_probex.adapters.peft_model`)."""


class BadTextError(ProbexError):
    """A text given to encode (a query, a candidate) is not text: undecodable bytes (lone surrogates), or not a str."""


class TooLargeError(ProbexError):
    """A model is larger than the caller allows hf_probex to download or load (`text_classifiers.MAX_BYTES`)."""


class BotStopped(RuntimeError):
    """There is no token, or the Hub refused the bot's token or permissions (401/403): the run stops, with
    this message.

    Raised by `hf_probex.bot.HubClient`, which the bot, scans and tree tables all call the Hub through (so it lives
    here, below them all; `hf_probex.bot` re-exports it). Not a `ProbexError`: a refused token ends a whole run rather
    than one repo's answer.
    """


def _status(error: BaseException) -> int | None:
    response = getattr(error, "response", None)
    return getattr(response, "status_code", None)


@contextmanager
def hub_errors(repo_id: str, revision: str | None, *, authenticated: bool, endpoint: str) -> Iterator[None]:
    """Turn the huggingface_hub / httpx errors raised inside the block into `ProbexError`s about `repo_id`.

    `authenticated` says whether a token was sent: without one, the Hub answers a private repo exactly as
    a missing one, so the message must say both.
    """
    import httpx2
    from huggingface_hub import errors as hf

    where = f"{repo_id}@{revision}" if revision else repo_id
    try:
        yield
    except ProbexError:
        raise
    except hf.GatedRepoError:
        raise AccessDeniedError(
            f"{repo_id} is gated: accept its conditions at {endpoint}/{repo_id} and pass a token of that account "
            f"(token=... or `hf auth login`)"
        ) from None
    except hf.RepositoryNotFoundError:
        if not authenticated:
            raise RepoNotVisibleError(
                f"{repo_id} was not found on {endpoint}: it does not exist, or it is private or gated; check the "
                f"name, or pass a token that can read it (token=... or `hf auth login`)"
            ) from None
        raise RepoNotFoundError(
            f"{repo_id} was not found on {endpoint}, or your token cannot see it: check the name and the token's "
            f"access"
        ) from None
    except hf.RevisionNotFoundError:
        raise RevisionNotFoundError(
            f"{repo_id} has no revision {revision!r}: pass an existing branch, tag or commit id (see the repo's "
            f"'Files and versions' tab, or HfApi().list_repo_refs)"
        ) from None
    except hf.EntryNotFoundError as err:
        raise MissingFileError(
            f"a file of {where} could not be fetched ({err.__class__.__name__}): the repo may have changed "
            f"meanwhile; retry, or pin a commit with revision=..."
        ) from None
    except hf.OfflineModeIsEnabled:
        raise HubConnectionError(
            f"cannot read {repo_id}: HF_HUB_OFFLINE is set; unset it, or pass a local folder or .safetensors file"
        ) from None
    except hf.HfHubHTTPError as err:
        status = _status(err)
        if status in (401, 403):
            raise AccessDeniedError(
                f"the Hub refused access to {where} (HTTP {status}): pass a token with read access to it "
                f"(token=... or `hf auth login`), or accept its conditions on its page if it is gated"
            ) from None
        if status == 404:
            raise RepoNotFoundError(
                f"{endpoint} has nothing at {where} (HTTP 404): check the name (namespace/name) and HF_ENDPOINT"
            ) from None
        raise HubConnectionError(
            f"the Hub answered HTTP {status} for {where}: retry later, or check HF_ENDPOINT ({endpoint})"
        ) from None
    except hf.HFValidationError:
        raise RepoNotFoundError(
            f"{repo_id!r} is neither an existing local path nor a valid Hub repo id (namespace/name)"
        ) from None
    except httpx2.HTTPError as err:
        raise HubConnectionError(
            f"could not reach {endpoint} for {where} ({err.__class__.__name__}): check the network and HF_ENDPOINT"
        ) from None
