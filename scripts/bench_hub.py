"""Measure the local hub through the real huggingface_hub client.

Prints commits/s (`upload_file` of a small file), downloads/s (`hf_hub_download` with force_download,
so every call does HEAD + GET), and the bytes a one-tensor range read transfers against the file size.
Everything runs against a temporary root on 127.0.0.1; nothing is left behind.

    python scripts/bench_hub.py [--seconds 3]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np


def _rate(seconds: float, action) -> tuple[float, int]:
    """Calls per second of `action(i)` over about `seconds` (at least 3 calls)."""
    count, start = 0, time.perf_counter()
    while count < 3 or time.perf_counter() - start < seconds:
        action(count)
        count += 1
    return count / (time.perf_counter() - start), count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="time spent on each rate (default: 3)")
    args = parser.parse_args()

    from huggingface_hub import HfApi, get_session, hf_hub_download, hf_hub_url
    from safetensors.numpy import save

    from hf_probex.hub import LocalHub, use_endpoint

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "users.yaml").write_text("users:\n  bench: {tokens: [hf_bench_token]}\n")
        with LocalHub(tmp / "root", users_file=tmp / "users.yaml") as hub, use_endpoint(hub.endpoint):
            api = HfApi(token="hf_bench_token")
            api.create_repo("bench/model")
            commits, n_commits = _rate(args.seconds, lambda i: api.upload_file(
                path_or_fileobj=f"{i}\n".encode(), path_in_repo="counter.txt", repo_id="bench/model",
                commit_message=f"commit {i}"))

            # A weights file of 64 tensors of 64x64 float32 (1 MiB); read one tensor by range.
            tensors = {f"layer.{i}.weight": np.full((64, 64), i, dtype=np.float32) for i in range(64)}
            api.upload_file(path_or_fileobj=save(tensors), path_in_repo="model.safetensors", repo_id="bench/model")
            downloads, n_downloads = _rate(args.seconds, lambda i: hf_hub_download(
                "bench/model", "counter.txt", cache_dir=tmp / "cache", force_download=True))

            # The least a reader transfers: the 8-byte length, the JSON header, the tensor's bytes.
            url, session = hf_hub_url("bench/model", "model.safetensors"), get_session()

            def read(first: int, last: int) -> bytes:
                response = session.get(url, headers={"Range": f"bytes={first}-{last}"})
                assert response.status_code == 206
                return response.content

            length = read(0, 7)
            header_len = int.from_bytes(length, "little")
            header = read(8, 8 + header_len - 1)
            begin, end = json.loads(header)["layer.7.weight"]["data_offsets"]
            tensor = read(8 + header_len + begin, 8 + header_len + end - 1)
            assert np.all(np.frombuffer(tensor, dtype=np.float32) == 7)
            transferred = len(length) + len(header) + len(tensor)
            info = api.model_info("bench/model", files_metadata=True)
            file_size = next(s.size for s in info.siblings if s.rfilename == "model.safetensors")

    print(f"commits/s   {commits:7.1f}  ({n_commits} upload_file calls)")
    print(f"downloads/s {downloads:7.1f}  ({n_downloads} hf_hub_download calls, force_download: HEAD + GET)")
    print(f"one-tensor range read: {transferred} bytes ({header_len + 8} of them header) of a "
          f"{file_size}-byte file ({100 * transferred / file_size:.2f}%)")


if __name__ == "__main__":
    main()
