"""The `ray` engine: Ray tasks over repo ids, on a local Ray cluster or a real one (`--ray-address`).

Ray is imported only when this engine runs (`pip install "hf_probex[ray]"`). With no address and no Ray
already running in this process, it starts a local cluster (`start_local_cluster`: `num_cpus` = workers,
every server on 127.0.0.1, token authentication with a token kept in this process's environment, no
dashboard, Ray's own log lines and worker logs kept off the console) and shuts it down at the end; with an
address it connects to that cluster and leaves it running; a Ray already initialised (a notebook, a test
session) is used as it is.

Each read is one task (`member.read_member`, one CPU). Tasks are submitted in a sliding window (a few per
CPU) so 10^5 repos never sit in the object store at once, and rows come back as they complete. The scan
settings travel once (`ray.put`); the Hub endpoint and offline mode travel as the tasks' environment
(`runtime_env`), so a worker on another machine talks to the Hub the driver talks to. Ray retries a task
whose worker died; `read_member` itself never raises.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from .base import Engine, ScanEngineError, register_engine

#: Tasks in flight per CPU of the cluster.
TASKS_PER_CPU = 4


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ScanEngineError('the ray engine needs Ray, which is not installed: pip install "hf_probex[ray]" '
                              "(or use --engine local)") from None
    return ray


def start_local_cluster(ray, workers: int) -> None:
    """Start a Ray cluster of `workers` CPUs that only this machine can reach.

    Ray binds its servers (GCS, raylet, workers, agents) to 127.0.0.1 only when the node's own address is the
    loopback one, which it picks on machines it does not treat as cluster nodes (`ENABLE_RAY_CLUSTER` off,
    as on macOS and Windows); elsewhere they listen on every interface. The switch is read while the node
    starts and restored at once: the address is then fixed for the node's life. Ray turns token
    authentication on for a new local cluster; the token is a fresh one in this process's environment (its
    workers inherit it) instead of one Ray would write to ~/.ray, unless the user chose a mode
    (`RAY_AUTH_MODE`) or a token themselves.
    """
    from ray._private import ray_constants

    if not {"RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"} & set(os.environ):
        os.environ["RAY_AUTH_TOKEN"] = secrets.token_urlsafe(32)
    as_cluster_node = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = as_cluster_node


def hub_environment() -> dict[str, str]:
    """The environment a worker needs to reach the Hub this process reaches (endpoint, offline mode); tokens are
    not in it (they travel with the scan settings)."""
    from huggingface_hub import constants

    return {"HF_ENDPOINT": constants.ENDPOINT, "HF_HUB_OFFLINE": "1" if constants.HF_HUB_OFFLINE else "0"}


if TYPE_CHECKING:
    from ..member import MemberJob, ScanSettings
    from ..table import ScanRow


@register_engine
class RayEngine(Engine):
    name = "ray"
    description = "Ray tasks: a local cluster of --workers CPUs, or the cluster at --ray-address"

    def __init__(self, workers: int = 2, address: str | None = None) -> None:
        super().__init__(workers, address)
        self._ray = _import_ray()
        self._started = False

    def __enter__(self) -> RayEngine:
        ray = self._ray
        if not ray.is_initialized():
            try:
                if self.address:
                    ray.init(address=self.address, log_to_driver=False, logging_level=logging.ERROR)
                else:
                    start_local_cluster(ray, self.workers)
            except (ConnectionError, RuntimeError, ValueError) as err:
                where = self.address or "a local cluster"
                raise ScanEngineError(f"cannot start Ray on {where}: {str(err).splitlines()[0] if str(err) else err}")\
                    from None
            self._started = True
        return self

    def close(self) -> None:
        if self._started:
            self._ray.shutdown()
            self._started = False

    def map(self, jobs: Sequence[MemberJob], settings: ScanSettings) -> Iterator[ScanRow]:
        from ..member import read_member

        ray = self._ray
        if not ray.is_initialized():
            raise ScanEngineError("the ray engine maps inside its `with` block")
        task = ray.remote(read_member).options(num_cpus=1, runtime_env={"env_vars": hub_environment()})
        shared = ray.put(settings)
        window = max(1, int(ray.cluster_resources().get("CPU", self.workers))) * TASKS_PER_CPU
        queue, pending = iter(jobs), []
        try:
            while True:
                while len(pending) < window and (job := next(queue, None)) is not None:
                    pending.append(task.remote(job, shared))
                if not pending:
                    return
                done, pending = ray.wait(pending, num_returns=1)
                yield ray.get(done[0])
        finally:
            for ref in pending:  # stopped early: what is still queued is not needed
                ray.cancel(ref)
