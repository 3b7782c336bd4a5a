"""Shared fixtures: the zoos and their experts, built for real once per test run (`make test` runs two pytest-xdist
workers, a test file each at a time, `--dist loadfile`; they share what `_built_once` builds), a local hub, Ray."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

os.environ.setdefault("HF_HUB_OFFLINE", "1")

# Property tests try the same inputs on every run (a red CI run is reproducible, never luck); search further
# locally with HYPOTHESIS_PROFILE=explore, which draws new inputs each time.
settings.register_profile("hf_probex", derandomize=True, deadline=None)
settings.register_profile("explore", max_examples=5_000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "hf_probex"))


@contextlib.contextmanager
def _built_once(tmp_path_factory, name: str) -> Iterator[Path]:
    """A folder `name` that every pytest-xdist worker of this run shares, held under a file lock: the first worker
    to need a zoo or an expert builds it there, the others wait for it and then read it back (the zoo builder and the
    demo's experts reuse what is finished), so a minute of training is spent once per run, not once per worker."""
    from filelock import FileLock

    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    with FileLock(str(shared / f"{name}.lock")):
        yield shared / name


#: Test files that take a minute or more of their own work (beside the shared fixtures), longest first: collected
#: before the rest, because `make test` hands files to its two workers in collection order (`--dist loadfile
#: --no-loadscope-reorder`), and a long file left for the end keeps one worker busy alone after the other has finished.
LONG_FILES = ("test_docs_flows.py", "test_hub_security.py", "test_scan.py", "test_space_browser.py", "test_zoo_cli.py",
              "test_bot.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    first = {name: rank for rank, name in enumerate(LONG_FILES)}
    items.sort(key=lambda item: first.get(item.path.name, len(first)))  # a stable sort: the rest keep their order


@pytest.fixture(scope="session", autouse=True)
def probex_cache(tmp_path_factory):
    """hf_probex's cache (expert registry file, scan folders, search indexes) in a folder of this session, so that a
    developer's own registry or scans never reach a test; tests that need an empty one set HF_PROBEX_CACHE again."""
    patch = pytest.MonkeyPatch()
    patch.setenv("HF_PROBEX_CACHE", str(tmp_path_factory.mktemp("probex-cache")))
    yield
    patch.undo()


@pytest.fixture(autouse=True)
def leaves_offline_mode_as_it_was():
    """Every test leaves huggingface_hub's offline mode as it found it (offline, unless a module's own hub serves it):
    a test that went online (`use_endpoint`, a patched constant undone in the wrong order) and did not come back
    would let later tests in its worker reach the network, and fail or pass by the order tests happen to run in."""
    from huggingface_hub import constants

    before = constants.HF_HUB_OFFLINE
    yield
    assert constants.HF_HUB_OFFLINE == before, "this test changed huggingface_hub.constants.HF_HUB_OFFLINE for good"


@pytest.fixture(scope="session")
def tiny_zoo(tmp_path_factory):
    """The `tiny` zoo (a few models per tree, every family), built once per test run."""
    from hf_probex.zoo import build_zoo

    with _built_once(tmp_path_factory, "zoo-tiny") as folder:
        return build_zoo(folder, "tiny", seed=0, workers=1, progress=False)


@pytest.fixture(scope="session")
def small_zoo(tmp_path_factory):
    """The `small` zoo (one ResNet tree, 128 children from five recipe families): the experts' signal tests and
    the demo. About two minutes on 2 cores, built once per test run."""
    from hf_probex.zoo import build_zoo

    with _built_once(tmp_path_factory, "zoo-small") as folder:
        return build_zoo(folder, "small", seed=0, workers=2, progress=False)


@pytest.fixture(scope="session")
def text_small_zoo(tmp_path_factory):
    """The `text-small` zoo: the real all-MiniLM-L6-v2 and its children of five recipe families (every layout: a
    transformers classifier, a peft adapter folder and a merged one, sentence-transformers, SetFit). About a minute
    and a half on 2 cores, built once per test run; it reads Debian's fortunes, fetched once into a folder the
    workers share."""
    from hf_probex.zoo import build_zoo

    with _built_once(tmp_path_factory, "zoo-text-small") as folder:
        patch = pytest.MonkeyPatch()
        patch.setenv("HF_PROBEX_FORTUNES", str(_fortunes(tmp_path_factory)))
        try:
            return build_zoo(folder, "text-small", seed=0, workers=2, progress=False)
        finally:
            patch.undo()


@pytest.fixture(scope="session")
def fortunes_folder(tmp_path_factory) -> Path:
    """Debian's fortunes category files, fetched once per test run (what HF_PROBEX_FORTUNES may point at)."""
    return _fortunes(tmp_path_factory)


def _fortunes(tmp_path_factory) -> Path:
    """Debian's fortunes category files, fetched once per test run into a folder the workers share."""
    from hf_probex.zoo.fortunes import fortunes_dir

    with _built_once(tmp_path_factory, "fortunes-cache") as cache:
        patch = pytest.MonkeyPatch()
        patch.setenv("HF_PROBEX_CACHE", str(cache))
        patch.delenv("HF_PROBEX_FORTUNES", raising=False)
        try:
            return fortunes_dir()
        finally:
            patch.undo()


def _demo_experts(tmp_path_factory, zoo):
    """A zoo's experts trained as `hf-probex demo` trains them (train and val splits; layers chosen and calibrated
    leave-one-recipe-family-out), in the demo's cache layout (`demo_cache`), once per test run."""
    from hf_probex.demo import demo_experts

    preset = zoo.plan["preset"]
    with _built_once(tmp_path_factory, f"demo-cache-{preset}") as cache:
        (cache / "zoos").mkdir(parents=True, exist_ok=True)
        if not (cache / "zoos" / f"{preset}-seed0").exists():
            (cache / "zoos" / f"{preset}-seed0").symlink_to(zoo.root)
        return demo_experts(zoo, cache / "demo" / "experts" / preset, progress=lambda line: None)


@pytest.fixture(scope="session")
def small_experts(small_zoo, tmp_path_factory):
    """The small zoo's expert, as the demo trains it, as a registry."""
    return _demo_experts(tmp_path_factory, small_zoo)


@pytest.fixture(scope="session")
def text_experts(text_small_zoo, tmp_path_factory):
    """The text-small zoo's expert (the real all-MiniLM-L6-v2's tree), as the demo trains it, as a registry."""
    return _demo_experts(tmp_path_factory, text_small_zoo)


@pytest.fixture(scope="session")
def demo_cache(small_experts, text_experts, tmp_path_factory):
    """A cache folder as `hf-probex demo` leaves it: the session's small and text-small zoos and their experts."""
    with _built_once(tmp_path_factory, "demo-cache") as cache:
        for preset in ("small", "text-small"):
            built = cache.parent / f"demo-cache-{preset}"
            for part in (Path("zoos") / f"{preset}-seed0", Path("demo") / "experts" / preset):
                (cache / part).parent.mkdir(parents=True, exist_ok=True)
                if not (cache / part).exists():
                    (cache / part).symlink_to((built / part).resolve())
    return cache


@pytest.fixture(scope="session")
def experts(tiny_zoo, tmp_path_factory):
    """One calibrated expert per tree of the tiny zoo, trained on its train and val splits as the demo trains."""
    from hf_probex.demo import demo_experts

    with _built_once(tmp_path_factory, "experts-tiny") as folder:
        return demo_experts(tiny_zoo, folder, progress=lambda line: None)


@pytest.fixture(scope="session")
def ray_cluster():
    """One real local Ray cluster for the whole session (starting one takes seconds), started as the ray engine starts
    its own: 2 CPUs, loopback only, token authentication. Code under test finds it with `ray.is_initialized()` and
    leaves it running."""
    import ray

    from hf_probex.scan.engines.ray import start_local_cluster

    start_local_cluster(ray, workers=2)
    yield ray
    ray.shutdown()


# ---- the local hub (tests/test_hub*.py) ----------------------------------------------------------------

HUB_USERS_YAML = """\
users:
  alice: {tokens: [hf_alice_write_token]}
  bob: {tokens: [hf_bob_write_token]}
  carol: {tokens: [{token: hf_carol_read_token, role: read}]}
  dave: {tokens: [hf_dave_write_token]}
orgs:
  acme: [alice]
  quiet-lab: [dave]     # tests/test_bot_etiquette.py: opts out of the bot for all its repos
  tuning-lab: [dave]    # tests/test_bot_etiquette.py: answers a digest
"""


@pytest.fixture(scope="session")
def hub_server(tmp_path_factory):
    """One local hub for the whole session: uvicorn on 127.0.0.1 (a free port), a temporary root.

    Users: alice (write token, member of org `acme`), bob (write token), carol (read-only token), dave (write
    token, member of `quiet-lab` and `tuning-lab`, which the bot's etiquette tests use alone).
    Tests share it, so each test names its repos uniquely (see `hub.repo_id`).
    """
    from hf_probex.hub import LocalHub

    folder = tmp_path_factory.mktemp("hub")
    (folder / "users.yaml").write_text(HUB_USERS_YAML)
    with LocalHub(folder / "root", users_file=folder / "users.yaml") as server:
        yield server


@pytest.fixture
def hub(hub_server, tmp_path, monkeypatch):
    """The session hub, with the real huggingface_hub client pointed at it for one test.

    huggingface_hub copies HF_ENDPOINT and HF_HUB_OFFLINE into `huggingface_hub.constants` at import,
    and this conftest sets HF_HUB_OFFLINE=1 before that import (as CI does), so setting the
    environment is not enough: `use_endpoint` patches those constants (and the environment) for the
    test and restores them after, which also covers the mixins and `ModelCard.validate`, which take no
    per-call endpoint. The client's cache and token file go to tmp_path and HF_TOKEN is cleared, so a
    test touches neither the user's cache nor their token: only tokens passed explicitly authenticate.
    """
    import uuid
    from types import SimpleNamespace

    from huggingface_hub import constants

    from hf_probex.hub import use_endpoint

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    with use_endpoint(hub_server.endpoint):
        yield SimpleNamespace(
            server=hub_server, endpoint=hub_server.endpoint, root=hub_server.root, cache=tmp_path / "hf-cache",
            alice="hf_alice_write_token", bob="hf_bob_write_token", carol="hf_carol_read_token",
            dave="hf_dave_write_token",
            repo_id=lambda namespace="alice": f"{namespace}/m-{uuid.uuid4().hex[:10]}",
        )


@pytest.fixture
def zoo_hub(hub, tiny_zoo):
    """`hub` with the tiny zoo imported: one public repo per model, cards (or none) as the zoo wrote them."""
    from hf_probex.hub.importer import import_zoo

    import_zoo(tiny_zoo.root, hub.root)
    return hub
