"""Weight reading on real safetensors files: local (memory map) and through the real client on the local Hub."""

from __future__ import annotations

import json
import struct

import httpx2
import numpy as np
import pytest
import torch
from huggingface_hub import HfApi
from huggingface_hub import errors as hf
from safetensors.numpy import save_file
from safetensors.torch import save_file as save_torch_file

from hf_probex.errors import (AccessDeniedError, BadFileError, BadSafetensorsError, HubConnectionError,
                              LayerMismatchError, NoSafetensorsError, ProbexError, RepoNotFoundError,
                              RepoNotVisibleError, RevisionNotFoundError, hub_errors)
from hf_probex.reading import WeightSource, looks_like_repo_id, open_source, safe_relpath
from hf_probex.safetensors_format import TensorInfo, decode_tensor, header_length, parse_safetensors_header


def _tensors() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "big.weight": rng.standard_normal((128, 96)).astype(np.float32),
        "half.weight": rng.standard_normal((16, 8)).astype(np.float16),
        "ints": np.arange(10, dtype=np.int64),
        "bytes": np.arange(6, dtype=np.int8),
        "mask": np.array([True, False, True]),
        "empty": np.zeros((0, 4), dtype=np.float32),
    }


@pytest.fixture
def weights_file(tmp_path):
    path = tmp_path / "model.safetensors"
    save_file(_tensors(), str(path), metadata={"tree": "vit"})
    return path


def _raw(header: dict, data: bytes, length: int | None = None) -> bytes:
    body = json.dumps(header).encode()
    return struct.pack("<Q", len(body) if length is None else length) + body + data


# ---- local files -----------------------------------------------------------------------------------------


def test_local_file_reads_every_dtype_exactly(weights_file):
    source = open_source(weights_file)
    checkpoint = source.checkpoint()
    assert checkpoint.names == sorted(_tensors())
    assert checkpoint.metadata == {"tree": "vit"}
    for name, expected in _tensors().items():
        got = checkpoint.read(name)
        assert got.dtype == np.float32 and got.shape == expected.shape
        np.testing.assert_array_equal(got, expected.astype(np.float32))
    assert checkpoint.shape("big.weight") == (128, 96)
    assert "big.weight" in checkpoint and "nope" not in checkpoint


def test_bf16_is_widened_exactly(tmp_path):
    values = torch.randn(7, 5).to(torch.bfloat16)
    save_torch_file({"w": values}, str(tmp_path / "w.safetensors"))
    got = open_source(tmp_path / "w.safetensors").checkpoint().read("w")
    np.testing.assert_array_equal(got, values.float().numpy())


def test_local_read_touches_header_and_one_tensor_only(weights_file):
    source = open_source(weights_file)
    checkpoint = source.checkpoint()
    info = checkpoint.info("half.weight")
    checkpoint.read("half.weight")
    assert source.bytes_read == source.header("model.safetensors").nbytes + info.nbytes
    assert source.size == weights_file.stat().st_size
    assert source.files == ["model.safetensors"] and source.file_size("model.safetensors") == source.size


def test_a_tensor_read_again_is_shared_and_the_kept_ones_stay_under_their_bound(tmp_path, weights_file, monkeypatch):
    """Routing and the expert read the same layer: the second read reads no bytes. Reading many models whole (lineage
    reads hundreds) keeps at most the bound of tensors, however many sources are alive."""
    from hf_probex import reading

    source = open_source(weights_file)
    first = source.checkpoint().read("big.weight")
    before = source.bytes_read
    again = source.checkpoint().read("big.weight")
    assert again is first and source.bytes_read == before
    with pytest.raises(ValueError, match="read-only"):
        again[0, 0] = 1.0  # shared with every later reader: nobody may change it

    bound = reading._TensorCache(3 * first.nbytes)
    monkeypatch.setattr(reading, "_TENSORS", bound)
    sources = []
    for index in range(8):
        path = tmp_path / f"m{index}.safetensors"
        save_file(_tensors(), str(path))
        sources.append(open_source(path))
        sources[-1].checkpoint().read("big.weight")
        assert bound.size <= 3 * first.nbytes
    read = sources[-1].bytes_read
    sources[-1].checkpoint().read("big.weight")  # the last read is kept
    assert sources[-1].bytes_read == read
    read = sources[0].bytes_read
    np.testing.assert_array_equal(sources[0].checkpoint().read("big.weight"), first)
    assert sources[0].bytes_read == read + sources[0].checkpoint().info("big.weight").nbytes  # let go: read anew


def test_folder_small_files_and_listing(tmp_path, weights_file):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "vit"}))
    (tmp_path / "README.md").write_text("# card\n")
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "HEAD").write_text("ref")
    source = open_source(tmp_path)
    assert source.files == ["README.md", "bad.json", "config.json", "list.json", "model.safetensors"]
    assert source.read_json("config.json") == {"model_type": "vit"}
    assert source.read_text("README.md") == "# card\n"
    assert source.read_json("adapter_config.json") is None and source.read_text("model_index.json") is None
    for name in ("bad.json", "list.json"):
        with pytest.raises(BadFileError, match="JSON"):
            source.read_json(name)
    before = source.bytes_read
    source.read_json("config.json")  # read once
    assert source.bytes_read == before
    assert source.safetensors_files == ["model.safetensors"] and source.pickled_files == []


def test_sharded_checkpoint_reads_one_shard(tmp_path):
    tensors = _tensors()
    names = sorted(tensors)
    shards = {"model-00001-of-00002.safetensors": names[:3], "model-00002-of-00002.safetensors": names[3:]}
    for shard, keys in shards.items():
        save_file({k: tensors[k] for k in keys}, str(tmp_path / shard))
    index = {"metadata": {"total_size": 1}, "weight_map": {k: s for s, keys in shards.items() for k in keys}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    source = open_source(tmp_path)
    checkpoint = source.checkpoint()
    assert checkpoint.name == "model.safetensors.index.json"
    assert checkpoint.names == names and checkpoint.shards == sorted(shards)
    np.testing.assert_array_equal(checkpoint.read(names[0]), tensors[names[0]].astype(np.float32))
    assert source.bytes_read < source.file_size("model-00002-of-00002.safetensors") + source.file_size(
        "model-00001-of-00002.safetensors")
    assert list(source._headers) == ["model-00001-of-00002.safetensors"]  # the other shard was never opened


def test_checkpoint_choice_prefers_named_files(tmp_path, weights_file):
    save_file({"x": np.zeros(2, np.float32)}, str(tmp_path / "adapter_model.safetensors"))
    source = open_source(tmp_path)
    assert source.checkpoint(("adapter_model.safetensors",)).names == ["x"]
    assert source.checkpoint().name == "adapter_model.safetensors"  # first top-level file by name
    assert source.open_checkpoint("model.safetensors") is source.open_checkpoint("model.safetensors")


@pytest.mark.parametrize("shard", ["../outside.safetensors", "/etc/passwd", "a\\b.safetensors"])
def test_index_cannot_name_files_outside_the_model(tmp_path, weights_file, shard):
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"big.weight": shard}}))
    with pytest.raises(BadFileError, match="path|outside"):
        open_source(tmp_path).checkpoint()


def test_index_without_weight_map_and_wrong_shard(tmp_path, weights_file):
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}}))
    with pytest.raises(BadFileError, match="weight_map"):
        open_source(tmp_path).checkpoint()
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"ghost": "model.safetensors"}}))
    with pytest.raises(BadSafetensorsError, match="lacks it"):
        open_source(tmp_path).checkpoint().read("ghost")


def test_missing_tensor_is_a_layer_mismatch(weights_file):
    with pytest.raises(LayerMismatchError, match="no tensor"):
        open_source(weights_file).checkpoint().read("missing.weight")


def test_safe_relpath():
    assert safe_relpath("unet/./diffusion_pytorch_model.safetensors", "t") == "unet/diffusion_pytorch_model.safetensors"
    for bad in ("", "../x", "a/../../x", "/abs", "C:/x", "a\\b", 3):
        with pytest.raises(BadFileError):
            safe_relpath(bad, "t")


def test_looks_like_repo_id():
    assert looks_like_repo_id("google/vit-base-patch16-224")
    assert looks_like_repo_id("gpt2", namespaced=False) and not looks_like_repo_id("gpt2")
    for bad in ("./out", "/data/model", "~/m", "a/b/c", "has space/x", None, 3):
        assert not looks_like_repo_id(bad)


# ---- bad input: one test each ------------------------------------------------------------------------------


def test_pickled_only_folder_is_never_opened(tmp_path):
    (tmp_path / "pytorch_model.bin").write_bytes(b"\x80\x04 not a real pickle")
    (tmp_path / "config.json").write_text("{}")
    source = open_source(tmp_path)
    assert source.pickled_files == ["pytorch_model.bin"]
    with pytest.raises(NoSafetensorsError, match=r"pytorch_model\.bin.*never unpickles.*convert") as err:
        source.checkpoint()
    assert err.value.pickled == ["pytorch_model.bin"] and "\n" not in str(err.value)
    assert source.bytes_read == 0


@pytest.mark.parametrize("name", ["model.ckpt", "weights.pt", "notes.txt"])
def test_single_non_safetensors_file(tmp_path, name):
    (tmp_path / name).write_bytes(b"x")
    with pytest.raises(NoSafetensorsError):
        open_source(tmp_path / name)


def test_truncated_header(tmp_path):
    (tmp_path / "t.safetensors").write_bytes(b"\x10\x00\x00")
    with pytest.raises(BadSafetensorsError, match="truncated"):
        open_source(tmp_path / "t.safetensors").checkpoint()


def test_header_length_beyond_file(tmp_path):
    (tmp_path / "t.safetensors").write_bytes(_raw({}, b"", length=10_000))
    with pytest.raises(BadSafetensorsError, match="do not give a header length within the file"):
        open_source(tmp_path / "t.safetensors").checkpoint()


def test_offsets_out_of_range(tmp_path):
    header = {"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}
    (tmp_path / "t.safetensors").write_bytes(_raw(header, b"\x00" * 8))
    with pytest.raises(BadSafetensorsError, match="out of range"):
        open_source(tmp_path / "t.safetensors").checkpoint()


def test_offsets_into_the_header(tmp_path):
    header = {"w": {"dtype": "F32", "shape": [2], "data_offsets": [-8, 0]}}
    (tmp_path / "t.safetensors").write_bytes(_raw(header, b"\x00" * 8))
    with pytest.raises(BadSafetensorsError, match="into the header"):
        open_source(tmp_path / "t.safetensors").checkpoint()


def test_unknown_dtype(tmp_path):
    header = {"w": {"dtype": "F42", "shape": [2], "data_offsets": [0, 8]}}
    (tmp_path / "t.safetensors").write_bytes(_raw(header, b"\x00" * 8))
    with pytest.raises(BadSafetensorsError, match="unknown dtype 'F42'"):
        open_source(tmp_path / "t.safetensors").checkpoint()


@pytest.mark.parametrize("header, match", [
    (b"{not json}", "not valid JSON"),
    (b"[1, 2]", "not a JSON object"),
    (json.dumps({"__metadata__": {"a": 1}}).encode(), "__metadata__"),
    (json.dumps({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}).encode(), "needs 8"),
    (json.dumps({"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}).encode(), "shape"),
    (json.dumps({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                 "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}).encode(), "overlap"),
])
def test_malformed_headers(header, match):
    data = struct.pack("<Q", len(header)) + header + b"\x00" * 16
    with pytest.raises(BadSafetensorsError, match=match):
        parse_safetensors_header(data, len(data), "t.safetensors")


def test_header_length_reads_the_first_eight_bytes():
    assert header_length(struct.pack("<Q", 5) + b"{...}", 13, "f") == 5
    with pytest.raises(BadSafetensorsError, match="truncated"):
        header_length(b"\x01", 1, "f")


def test_quantized_tensor_is_not_decoded():
    info = TensorInfo("w", "f", "F8_E4M3", (2,), 0, 2)
    with pytest.raises(LayerMismatchError, match="quantized"):
        decode_tensor(np.zeros(2, np.uint8), info)


def test_nonexistent_local_path_that_is_no_repo_id(tmp_path):
    with pytest.raises(RepoNotFoundError, match="neither an existing local path"):
        open_source(tmp_path / "nowhere" / "deep" / "x")


def test_hub_error_mapping():
    """Errors the local Hub cannot produce (gated repos, 403, 5xx, offline, network) map as well."""
    request = httpx2.Request("GET", "http://hub/x")

    def http(status: int, cls=hf.HfHubHTTPError):
        return cls("boom", response=httpx2.Response(status, request=request))

    cases = [(http(403), AccessDeniedError), (http(401), AccessDeniedError), (http(503), HubConnectionError),
             (http(401, hf.GatedRepoError), AccessDeniedError), (hf.OfflineModeIsEnabled("off"), HubConnectionError),
             (httpx2.ConnectError("down", request=request), HubConnectionError),
             (hf.HFValidationError("bad id"), RepoNotFoundError)]
    for raised, expected in cases:
        with pytest.raises(expected) as err, hub_errors("a/b", None, authenticated=True, endpoint="http://hub"):
            raise raised
        assert "\n" not in str(err.value) and err.value.__cause__ is None


# ---- the local Hub, through the real client ------------------------------------------------------------------


@pytest.fixture
def hub_repo(hub, tmp_path, weights_file):
    """A public repo on the local Hub with a config, a card and model.safetensors."""
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "vit"}))
    (tmp_path / "README.md").write_text("# card\n")
    repo_id = hub.repo_id()
    api = HfApi(endpoint=hub.endpoint, token=hub.alice)
    api.create_repo(repo_id)
    api.upload_folder(folder_path=tmp_path, repo_id=repo_id, commit_message="weights")
    return repo_id


def test_hub_read_one_tensor_costs_header_plus_tensor(hub, hub_repo):
    source = open_source(hub_repo)
    assert isinstance(source, WeightSource) and source.revision and len(source.revision) == 40
    assert {"config.json", "README.md", "model.safetensors"} <= set(source.files)
    checkpoint = source.checkpoint()
    np.testing.assert_array_equal(checkpoint.read("half.weight"), _tensors()["half.weight"].astype(np.float32))
    header, tensor = source.header("model.safetensors").nbytes, checkpoint.info("half.weight").nbytes
    assert source.bytes_read <= (header + tensor) * 1.05
    assert source.bytes_read < source.size / 10  # a 64-byte tensor of a ~50 KB repo
    assert source.read_json("config.json") == {"model_type": "vit"}
    assert source.read_json("adapter_config.json") is None


def test_hub_sharded_checkpoint(hub, tmp_path):
    tensors = _tensors()
    folder = tmp_path / "sharded"
    (folder / "unet").mkdir(parents=True)
    save_file({"big.weight": tensors["big.weight"]}, str(folder / "unet" / "s1.safetensors"))
    save_file({"ints": tensors["ints"]}, str(folder / "unet" / "s2.safetensors"))
    index = {"weight_map": {"big.weight": "s1.safetensors", "ints": "s2.safetensors"}}
    (folder / "unet" / "diffusion_pytorch_model.safetensors.index.json").write_text(json.dumps(index))
    repo_id = hub.repo_id()
    api = HfApi(endpoint=hub.endpoint, token=hub.alice)
    api.create_repo(repo_id)
    api.upload_folder(folder_path=folder, repo_id=repo_id)
    source = open_source(repo_id)
    checkpoint = source.checkpoint()
    assert checkpoint.shards == ["unet/s1.safetensors", "unet/s2.safetensors"]
    np.testing.assert_array_equal(checkpoint.read("ints"), tensors["ints"].astype(np.float32))
    assert source.bytes_read < source.file_size("unet/s1.safetensors")  # the big shard is never read


def test_hub_nonexistent_repo(hub):
    with pytest.raises(RepoNotFoundError) as err:
        open_source(hub.repo_id(), token=hub.alice)
    assert not isinstance(err.value, AccessDeniedError)
    with pytest.raises(RepoNotVisibleError, match="private"):  # anonymous: missing and private look alike
        open_source(hub.repo_id())


def test_hub_private_repo_without_token(hub):
    repo_id = hub.repo_id()
    HfApi(endpoint=hub.endpoint, token=hub.alice).create_repo(repo_id, private=True)
    with pytest.raises(AccessDeniedError, match="pass a token") as err:
        open_source(repo_id)
    assert hub.alice not in str(err.value)
    source = open_source(repo_id, token=hub.alice)
    assert hub.alice not in repr(source) and ".gitattributes" in source.files


def test_hub_bad_revision(hub, hub_repo):
    with pytest.raises(RevisionNotFoundError, match="no-such-branch"):
        open_source(hub_repo, revision="no-such-branch")


def test_hub_pickled_only_repo(hub, tmp_path):
    folder = tmp_path / "bin"
    folder.mkdir()
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04 pretend pickle")
    repo_id = hub.repo_id()
    api = HfApi(endpoint=hub.endpoint, token=hub.alice)
    api.create_repo(repo_id)
    api.upload_folder(folder_path=folder, repo_id=repo_id)
    source = open_source(repo_id)
    with pytest.raises(NoSafetensorsError, match="pytorch_model.bin"):
        source.require_safetensors()
    assert source.bytes_read == 0


def test_every_error_is_a_probex_error():
    for cls in (AccessDeniedError, BadFileError, BadSafetensorsError, HubConnectionError, LayerMismatchError,
                NoSafetensorsError, RepoNotFoundError, RevisionNotFoundError):
        assert issubclass(cls, ProbexError)
