"""Finding experts by tree: a local registry file, discovery on the Hub by tag, and a load cache.

An `ExpertEntry` is what routing needs to know about an expert before loading it: where it lives (a
local folder or a Hub repo id), its tree and root, task, layer and layer shape, adapter and method,
all read from its config.json. `ExpertRegistry` holds entries from

- a local registry file (JSON, default `<cache>/experts.json`; `hf-probex train --register` and
  `ExpertRegistry.add` write it), and
- the Hub: models tagged `probex-expert` (every expert's card carries it, plus
  `hf-probex-tree-<tree>` and `base_model: <root>`), found with `HfApi.list_models`, from trusted
  authors only (`trusted_authors`): an expert decides what the bot proposes on strangers' repos, so
  anyone's upload must not become one.

Every expert config is validated before use (`hub.check_config`: known task and method, bounded shapes
and sizes); an expert found on the Hub that fails is skipped with a warning, never breaking the others.

Loaded experts are kept in memory (one load per location per process); Hub downloads are cached on
disk by huggingface_hub as usual.
"""

from __future__ import annotations

import functools
import json
import os
import warnings
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from ..bounded import load_json
from ..errors import ProbexError
from .hub import Expert, check_config

EXPERT_TAG = "probex-expert"
#: Comma-separated Hub namespaces whose experts are used; replaces the default (`trusted_authors`).
TRUSTED_AUTHORS_ENV = "HF_PROBEX_TRUSTED_AUTHORS"
#: The organisation that publishes hf_probex's own experts: trusted by default.
DEFAULT_TRUSTED_ORG = "hf-probex"
#: An expert's config.json is a few KB (a long vocabulary: a few hundred KB).
MAX_CONFIG_BYTES = 5_000_000


class ExpertRegistryError(ProbexError):
    """A registry file or an expert's config that cannot be read."""


@dataclass(frozen=True)
class ExpertEntry:
    """One expert, as its config.json describes it (see the module docstring)."""

    location: str  # a local folder or a Hub repo id
    tree: str
    root: str | None
    task: str
    layer: str  # its name for people ("a + b" when stacked)
    adapter: str | None
    method: str
    inputs: tuple[tuple[str, tuple[int, ...]], ...]  # every layer it reads (several: stacked), with stored shapes
    routing_layers: tuple[tuple[str, tuple[int, ...]], ...] = ()  # the layers routing compares with the root
    modules: tuple[tuple[str, tuple[int, ...]], ...] = ()  # a LoRA tree's base modules and shapes (routes.fit_lora_modules)
    fused: bool = False  # reads each of `inputs` by its own network, and a model with only some of them (Expert.fused)

    @property
    def public_name(self) -> str:
        """How text that others read names it: its Hub repo id, or "the <tree> tree's expert" for a local folder
        (whose path is nobody's business on a pull request or a public page)."""
        from ..reading import looks_like_repo_id

        return self.location if looks_like_repo_id(self.location) and not Path(self.location).exists() \
            else f"the {self.tree} tree's expert"

    @classmethod
    def from_config(cls, location: str, config: dict) -> ExpertEntry:
        # configs written before stacked experts name one layer and no inputs
        stored = config.get("inputs") or [[config["layer"], config.get("layer_shape") or config["input_shape"]]]
        routing = config.get("routing") or {}
        return cls(location, config.get("tree", ""), config.get("root"), config["task"], config["layer"],
                   config.get("adapter"), config["method"], _pairs(stored), _pairs(routing.get("layers") or []),
                   _pairs(routing.get("modules") or []), config.get("fusion") == "modules")


def default_registry_path() -> Path:
    """The local registry file: `<cache>/experts.json` (cache = $HF_PROBEX_CACHE or the user cache dir)."""
    from ..settings import default_cache_dir

    return default_cache_dir() / "experts.json"


@functools.lru_cache(maxsize=64)
def load_expert(location: str) -> Expert:
    """An expert from a local folder or a Hub repo id, loaded once per process."""
    return Expert.from_pretrained(location)


class ExpertRegistry:
    """The experts hf_probex can use, by tree root (see the module docstring)."""

    def __init__(self, entries: Iterable[ExpertEntry] = ()):
        self.entries: list[ExpertEntry] = list(dict.fromkeys(entries))

    def __len__(self) -> int:
        return len(self.entries)

    def __repr__(self) -> str:
        return f"ExpertRegistry({len(self.entries)} experts: {', '.join(sorted({e.tree for e in self.entries}))})"

    @classmethod
    def from_locations(cls, locations: Iterable[str | os.PathLike]) -> ExpertRegistry:
        """Entries for expert folders or Hub repo ids (each config.json is read; the weights are not)."""
        return cls(ExpertEntry.from_config(str(loc), _read_config(str(loc))) for loc in locations)

    @classmethod
    def from_file(cls, path: str | os.PathLike | None = None) -> ExpertRegistry:
        """The entries of a registry file (default `default_registry_path()`); empty if there is none."""
        path = Path(path) if path else default_registry_path()
        if not path.is_file():
            return cls()
        try:
            rows = json.loads(path.read_text())["experts"]
            return cls(ExpertEntry(**{**row, "inputs": _pairs(row["inputs"]),
                                      "routing_layers": _pairs(row.get("routing_layers", [])),
                                      "modules": _pairs(row.get("modules", []))}) for row in rows)
        except (ValueError, KeyError, TypeError) as err:
            raise ExpertRegistryError(f"the expert registry {path} is damaged ({err}); delete it and register "
                                      f"the experts again with `hf-probex train --register`") from None

    @classmethod
    def from_hub(cls, *, token: str | bool | None = None, authors: Iterable[str] | None = None,
                 limit: int = 1000) -> ExpertRegistry:
        """The models on the Hub (HF_ENDPOINT) tagged `probex-expert` whose author is trusted (`authors`, default
        `trusted_authors(token)`). One that cannot be read or fails validation is skipped with a warning."""
        from huggingface_hub import HfApi

        api = HfApi(token=token)
        entries = []
        for author in authors if authors is not None else trusted_authors(token):
            for model in api.list_models(filter=EXPERT_TAG, author=author, limit=limit):
                try:
                    entries.append(ExpertEntry.from_config(model.id, _read_config(model.id)))
                except ExpertRegistryError as err:
                    warnings.warn(f"skipping the expert {model.id}: {err}", stacklevel=2)
        return cls(entries)

    @classmethod
    def default(cls, *, token: str | bool | None = None) -> ExpertRegistry:
        """The local registry file, plus the Hub's experts unless HF_HUB_OFFLINE is set."""
        from huggingface_hub import constants

        registry = cls.from_file()
        if not constants.HF_HUB_OFFLINE:
            try:
                registry = registry + cls.from_hub(token=token)
            except Exception as err:  # an unreachable Hub or a broken expert there must not hide the local experts
                warnings.warn(f"could not list experts on the Hub ({type(err).__name__}); using local ones only",
                              stacklevel=2)
        return registry

    def __add__(self, other: ExpertRegistry) -> ExpertRegistry:
        return ExpertRegistry([*self.entries, *other.entries])

    def add(self, location: str | os.PathLike) -> ExpertEntry:
        """Add (or refresh) the expert at `location`; returns its entry."""
        entry = ExpertEntry.from_config(str(location), _read_config(str(location)))
        self.entries = [e for e in self.entries if e.location != entry.location] + [entry]
        return entry

    def save(self, path: str | os.PathLike | None = None) -> Path:
        """Write the entries to a registry file atomically (default `default_registry_path()`)."""
        path = Path(path) if path else default_registry_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"experts": [asdict(e) for e in self.entries]}, indent=2))
        tmp.replace(path)
        return path

    def for_root(self, root: str, task: str | None = None) -> list[ExpertEntry]:
        """Entries whose tree root is `root` (and of `task`, when given)."""
        return [e for e in self.entries if e.root == root and task in (None, e.task)]

    @property
    def roots(self) -> list[str]:
        """The tree roots that have an expert."""
        return sorted({e.root for e in self.entries if e.root})


def _pairs(rows: list) -> tuple[tuple[str, tuple[int, ...]], ...]:
    return tuple((name, tuple(dims)) for name, dims in rows)


def trusted_authors(token: str | bool | None = None) -> list[str]:
    """The Hub namespaces whose experts `from_hub` uses: $HF_PROBEX_TRUSTED_AUTHORS (comma-separated) when set;
    else `DEFAULT_TRUSTED_ORG` plus the namespaces of the token's user (their name and organisations)."""
    configured = os.environ.get(TRUSTED_AUTHORS_ENV)
    if configured is not None:
        return [name.strip() for name in configured.split(",") if name.strip()]
    authors = [DEFAULT_TRUSTED_ORG]
    if token is not False:
        from huggingface_hub import HfApi

        try:
            me = HfApi(token=token).whoami()
        except Exception:  # anonymous, or a Hub that cannot say: only the default org
            return authors
        authors += [me["name"], *(org["name"] for org in me.get("orgs") or [])]
    return list(dict.fromkeys(authors))


def _read_config(location: str) -> dict:
    """An expert's config.json, from its folder or its Hub repo, parsed within bounds and validated."""
    from huggingface_hub import constants
    from huggingface_hub.errors import (EntryNotFoundError, HFValidationError, LocalEntryNotFoundError,
                                        RepositoryNotFoundError)

    folder = Path(location)
    try:
        if folder.is_dir():
            path = folder / "config.json"
        else:
            from huggingface_hub import hf_hub_download

            path = Path(hf_hub_download(location, "config.json"))
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise ValueError(f"config.json has {path.stat().st_size} bytes, more than an expert's {MAX_CONFIG_BYTES}")
        config = load_json(path.read_bytes())
        check_config(config)
        return config
    except HFValidationError:
        raise ExpertRegistryError(f"{location} is neither an expert folder nor a Hub repo id (namespace/name): pass "
                                  "the folder `hf-probex train --out` wrote, or an expert's repo id") from None
    except LocalEntryNotFoundError:
        raise ExpertRegistryError(f"{location} is not an expert folder here, and the Hub cache does not hold it (offline "
                                  "or the Hub cannot be reached): pass a folder, or unset HF_HUB_OFFLINE") from None
    except RepositoryNotFoundError:
        raise ExpertRegistryError(f"{location} is neither an expert folder here nor a repo on {constants.ENDPOINT}: "
                                  "check the name (a private expert needs a token that can read it)") from None
    except EntryNotFoundError:
        raise ExpertRegistryError(f"{location} has no config.json: is it an hf_probex expert (`hf-probex train "
                                  "--out`)?") from None
    except (OSError, ValueError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ExpertRegistryError(f"{location} holds no readable expert config.json ({reason}); is it an hf_probex "
                                  f"expert (`hf-probex train --out`)?") from None
    except Exception as err:  # huggingface_hub's many HTTP errors: one message
        raise ExpertRegistryError(f"cannot read the expert config.json of {location} ({type(err).__name__}: "
                                  f"{str(err).splitlines()[0] if str(err) else ''})") from None
