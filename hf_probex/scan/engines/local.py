"""The `local` engine: a pool of threads in this process (the default).

Reads wait on the network far more than they compute (a header, a few layers per repo), so threads
overlap them well; torch and numpy release the GIL for the little arithmetic there is.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import TYPE_CHECKING

from .base import Engine, ScanEngineError, register_engine

if TYPE_CHECKING:
    from ..member import MemberJob, ScanSettings
    from ..table import ScanRow


@register_engine
class LocalEngine(Engine):
    name = "local"
    description = "threads in this process (default)"

    def __init__(self, workers: int = 2, address: str | None = None) -> None:
        if address:
            raise ScanEngineError("--ray-address needs --engine ray")
        super().__init__(workers)

    def map(self, jobs: Sequence[MemberJob], settings: ScanSettings) -> Iterator[ScanRow]:
        from ..member import read_member

        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="scan") as pool:
            futures = [pool.submit(read_member, job, settings) for job in jobs]
            try:
                for future in as_completed(futures):
                    yield future.result()
            finally:  # stopped early (an error in the consumer, Ctrl-C): no new reads start
                for future in futures:
                    future.cancel()
