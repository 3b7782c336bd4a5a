"""Hostile and malformed model folders: nothing read outside the folder, every failure one clear error or an
abstention, every parser bounded. Each fixture is written here, from a real tiny-zoo child."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.numpy import load_file, save_file

from hf_probex import infer_card
from hf_probex.errors import BadFileError, BadSafetensorsError
from hf_probex.reading import open_source
from hf_probex.safetensors_format import DTYPES, MAX_HEADER_BYTES, MAX_HEADER_TENSORS, parse_safetensors_header

SECRET = "SECRET-OUTSIDE-THE-MODEL"
ROOT = "probex-zoo-resnet/resnet-root"


@pytest.fixture
def child(tiny_zoo):
    spec = next(s for s in tiny_zoo.specs("resnet") if s.role == "child")
    return tiny_zoo.model_dir("resnet", spec.name)


@pytest.fixture
def model(child, tmp_path):
    """A copy of a tiny-zoo ResNet child with placeholder class names and its card (declaring the root)."""
    folder = tmp_path / "model"
    shutil.copytree(child, folder)
    config = json.loads((folder / "config.json").read_text())
    config["id2label"] = {str(i): f"LABEL_{i}" for i in range(len(config["id2label"]))}
    config["label2id"] = {f"LABEL_{i}": i for i in range(len(config["id2label"]))}
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.fixture
def outside(tmp_path):
    path = tmp_path / "outside.txt"
    path.write_text(SECRET * 3)
    return path


def _header_file(path: Path, header: bytes, data: bytes = b"") -> None:
    path.write_bytes(struct.pack("<Q", len(header)) + header + data)


# ---- links ---------------------------------------------------------------------------------------------------

LINKS = {
    "README.md to a file outside": lambda folder, outside: _relink(folder / "README.md", outside),
    "config.json to a file outside": lambda folder, outside: _relink(folder / "config.json", outside),
    "weights to a file outside": lambda folder, outside: _relink(folder / "model.safetensors", outside),
    "weights to a system file": lambda folder, outside: _relink(folder / "model.safetensors", Path("/etc/hostname")),
    "a broken README.md": lambda folder, outside: _relink(folder / "README.md", folder / "nothing"),
    "looping weights": lambda folder, outside: (_relink(folder / "model.safetensors", folder / "b.safetensors"),
                                                (folder / "b.safetensors").symlink_to(folder / "model.safetensors")),
    "weights through ../": lambda folder, outside: _relink(folder / "model.safetensors",
                                                           Path("..") / outside.name),
}


def _relink(path: Path, target: Path) -> None:
    path.unlink()
    path.symlink_to(target)


@pytest.mark.parametrize("case", LINKS)
def test_links_leaving_the_folder_broken_or_looping_are_refused(model, outside, experts, case):
    LINKS[case](model, outside)
    with pytest.raises(BadFileError, match="link.*refusing to read it; copy the file into the model's folder") as err:
        infer_card(model, experts=experts)
    assert SECRET not in str(err.value) and len(str(err.value).splitlines()) == 1


def test_the_cli_refuses_a_link_in_one_line_and_prints_nothing_from_outside(model, outside, tmp_path):
    _relink(model / "README.md", outside)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_PROBEX_CACHE": str(tmp_path / "cache")}
    result = subprocess.run([str(Path(sys.executable).parent / "hf-probex"), "infer", str(model)], capture_output=True, text=True,
                            timeout=300, env=env)
    assert result.returncode == 2 and SECRET not in result.stdout + result.stderr
    assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr


def test_links_inside_the_folder_and_hub_cache_snapshots_are_read(model, tmp_path, experts):
    (model / "weights").mkdir()
    (model / "model.safetensors").rename(model / "weights" / "real.safetensors")
    (model / "model.safetensors").symlink_to(Path("weights") / "real.safetensors")
    assert infer_card(model, experts=experts).tree is not None
    # huggingface_hub's cache: snapshots/<commit>/<file> links to ../../blobs/<hash>
    repo = tmp_path / "hub" / "models--someone--model"
    snapshot = repo / "snapshots" / "0123abc"
    (repo / "blobs").mkdir(parents=True)
    snapshot.mkdir(parents=True)
    for file in sorted(p for p in model.rglob("*") if p.is_file() and not p.is_symlink()):
        blob = repo / "blobs" / file.name
        shutil.copy(file, blob)
        name = "model.safetensors" if file.name == "real.safetensors" else file.name
        (snapshot / name).symlink_to(Path("..") / ".." / "blobs" / file.name)
    assert infer_card(snapshot, experts=experts).tree is not None


# ---- safetensors headers -------------------------------------------------------------------------------------

def _many_tensors(count: int) -> bytes:
    return json.dumps({f"t{i}": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]} for i in range(count)}).encode()


HEADERS = {
    "nested 3,000 deep": (b'{"a":' * 3000 + b"1" + b"}" * 3000, "nested deeper than"),
    "a duplicate tensor name": (b'{"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, '
                                b'"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}', "'w' appears twice"),
    "more tensors than the bound": (_many_tensors(MAX_HEADER_TENSORS + 2), "more than the 100000"),
    "a string shape": (b'{"w": {"dtype": "F32", "shape": "[1]", "data_offsets": [0, 4]}}', "has shape"),
    "a list dtype": (b'{"w": {"dtype": ["F32"], "shape": [1], "data_offsets": [0, 4]}}', "unknown dtype"),
    "a JSON list": (b"[1, 2]", "not a JSON object"),
    "not UTF-8": (b"\xff\xfe{}", "not valid JSON"),
    "metadata that is not strings": (b'{"__metadata__": {"a": {"b": 1}}}', "__metadata__ must map strings"),
}


@pytest.mark.parametrize("case", HEADERS)
def test_malformed_safetensors_headers_are_one_clear_error(model, case):
    header, message = HEADERS[case]
    _header_file(model / "model.safetensors", header, b"\0" * 4)
    with pytest.raises(BadSafetensorsError, match=message) as err:
        infer_card(model, experts=[])
    assert len(str(err.value).splitlines()) == 1


def test_an_oversized_header_is_refused_before_it_is_read(model):
    with open(model / "model.safetensors", "wb") as handle:  # sparse: the length says 16 MB + 1, nothing is parsed
        handle.write(struct.pack("<Q", MAX_HEADER_BYTES + 1))
        handle.truncate(MAX_HEADER_BYTES + 64)
    source = open_source(model)
    with pytest.raises(BadSafetensorsError, match="more than the 16000000 hf_probex reads"):
        source.checkpoint()
    assert source.bytes_read == 8


def test_a_file_that_is_not_safetensors_does_not_echo_its_first_bytes(model):
    (model / "model.safetensors").write_bytes(SECRET.encode())
    with pytest.raises(BadSafetensorsError) as err:
        infer_card(model, experts=[])
    number = str(int.from_bytes(SECRET.encode()[:8], "little"))
    assert number not in str(err.value) and SECRET[:8] not in str(err.value)


shapes = st.lists(st.integers(0, 4), max_size=3)
entries = st.dictionaries(st.text(min_size=1, max_size=8).filter(lambda n: n != "__metadata__"),
                          st.tuples(st.sampled_from(sorted(d for d, (_, np_dtype) in DTYPES.items() if np_dtype)), shapes),
                          max_size=6)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(entries)
def test_headers_the_safetensors_library_writes_parse_to_the_same_tensors(tmp_path_factory, tensors):
    arrays = {name: np.zeros(shape, dtype=DTYPES[dtype][1]) for name, (dtype, shape) in tensors.items()}
    path = tmp_path_factory.mktemp("st") / "t.safetensors"
    save_file(arrays, path) if arrays else _header_file(path, b"{}")
    data = path.read_bytes()
    header = parse_safetensors_header(data, len(data), "t.safetensors")
    assert {n: (t.dtype, t.shape) for n, t in header.tensors.items()} == \
        {n: (d, tuple(s)) for n, (d, s) in tensors.items()}
    for name, array in (load_file(path) if arrays else {}).items():
        info = header.tensors[name]
        assert info.nbytes == array.nbytes and data[info.start:info.end] == array.tobytes()


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300) | st.builds(lambda body, pad: struct.pack("<Q", len(body)) + body + pad,
                                           st.text(max_size=200).map(str.encode), st.binary(max_size=64)))
def test_any_bytes_parse_or_raise_one_bad_safetensors_error(data):
    try:
        parse_safetensors_header(data, len(data), "x.safetensors")
    except BadSafetensorsError as err:
        assert len(str(err).splitlines()) == 1


# ---- config.json ---------------------------------------------------------------------------------------------

CONFIGS = {
    "torch_dtype as a list": ({"torch_dtype": ["float32"]}, "torch_dtype as a list where a string is expected"),
    "dtype as a list": ({"dtype": ["float32"]}, "dtype as a list"),
    "id2label as a list": ({"id2label": ["a", "b"]}, "id2label as a list where an object is expected"),
    "id2label with a word key": ({"id2label": {"x": "a"}}, "keys must be class indices"),
    "id2label with an object value": ({"id2label": {"0": {"a": 1}}}, "keys must be class indices"),
    "model_type as an object": ({"model_type": {"a": 1}}, "model_type as an object"),
    "architectures as a string": ({"architectures": "ResNet"}, "architectures as a string"),
    "architectures of numbers": ({"architectures": [1]}, "architectures that are not all strings"),
    "label2id as a list": ({"label2id": [1]}, "label2id as a list"),
}


@pytest.mark.parametrize("case", CONFIGS)
def test_config_keys_of_the_wrong_type_are_one_clear_error(model, case):
    change, message = CONFIGS[case]
    config = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**config, **change}))
    with pytest.raises(BadFileError, match=message) as err:
        infer_card(model, experts=[])
    assert len(str(err.value).splitlines()) == 1 and str(err.value).endswith("would not load it either)")


@pytest.mark.parametrize("value", [float("nan"), True, 1.5])
def test_class_names_that_are_not_names_are_not_proposed(model, value):
    config = json.loads((model / "config.json").read_text())
    config["id2label"] = {key: value for key in config["id2label"]}
    (model / "config.json").write_text(json.dumps(config))
    result = infer_card(model, experts=[])
    assert "trained_on" not in result.fields  # not ['nan'] at 1.0 from config.json


@pytest.mark.parametrize("text, message", [('{"a":' * 5000 + "1" + "}" * 5000, "nested deeper than"),
                                           ("[1, 2]", "not a JSON object"), ("\udcff garbage", "not valid JSON")])
def test_deep_or_broken_config_files_are_one_clear_error(model, text, message):
    (model / "config.json").write_text(text, errors="surrogateescape")
    with pytest.raises(BadFileError, match=message):
        infer_card(model, experts=[])


# ---- weights that are numbers no model holds ------------------------------------------------------------------

@pytest.mark.filterwarnings("error::RuntimeWarning")  # a numpy warning would be a computation on the bad values
@pytest.mark.parametrize("fill", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("card", [True, False])
def test_non_finite_layers_are_abstained_on(model, experts, fill, card):
    tensors = load_file(model / "model.safetensors")
    save_file({k: np.full_like(v, fill) if v.ndim >= 2 else v for k, v in tensors.items()}, model / "model.safetensors")
    root = next(e.root for e in experts.entries if e.tree == "resnet")
    (model / "README.md").write_text(f"---\nbase_model: {root}\n---\n" if card else "")
    result = infer_card(model, experts=experts)
    assert "trained_on" not in result.fields and "NaN or inf" in result.abstained["trained_on"]
    if card:  # the declared base stands, unconfirmed
        assert result.fields["base_model"].confidence < 1.0 and "NaN or inf" in result.fields["base_model"].evidence
    else:
        assert "base_model" not in result.fields and "NaN or inf" in result.abstained["base_model"]


@pytest.fixture
def victim_folder(model, tmp_path, monkeypatch):
    """A working directory holding `victim/secret`: a model folder whose card declares the tiny ResNet root, named
    like a repo id a stranger's file may declare."""
    secret = tmp_path / "cwd" / "victim" / "secret"
    shutil.copytree(model, secret)
    (secret / "README.md").write_text(f"---\nbase_model: {ROOT}\n---\n{SECRET}\n")
    monkeypatch.chdir(tmp_path / "cwd")
    return secret


def test_a_declared_base_named_like_a_folder_here_is_asked_of_the_hub_not_read_from_the_folder(model, victim_folder,
                                                                                             experts):
    """A card's `base_model: victim/secret` where ./victim/secret exists: the lineage walk asks the Hub (offline here:
    the walk stops), never reads the folder's card."""
    from hf_probex.routing import walk_lineage

    assert walk_lineage("victim/secret", {ROOT}, local=True) == ["victim/secret"]
    (model / "README.md").write_text("---\nbase_model: victim/secret\n---\n")
    result = infer_card(model, experts=experts)
    assert "victim/secret ->" not in result.to_json() and SECRET not in result.to_json()


def test_repo_ids_from_the_network_are_never_read_from_a_folder_of_that_name(victim_folder, tiny_zoo):
    """The bot and train --from-table (`infer_card(hub_only=True)`), tree tables' members (`recover_lineage(from_hub=)`)
    read a listed repo id from the Hub only; the same id typed by the user is the folder they meant."""
    from hf_probex.errors import ProbexError
    from hf_probex.lineage import LineageCalibration, recover_lineage

    with pytest.raises(ProbexError):
        infer_card("victim/secret", experts=[], hub_only=True)
    assert infer_card("victim/secret", experts=[]).family == "resnet"
    calibration, lines = LineageCalibration(0.2, 0.9, 0.9, 10), []
    root = tiny_zoo.model_dir("resnet", "root")
    assert recover_lineage(root, ["victim/secret"], calibration, from_hub={"victim/secret"}, progress=lines.append) == []
    assert lines and lines[0].startswith("left out victim/secret")
    assert [e.child for e in recover_lineage(root, ["victim/secret"], calibration)] == ["victim/secret"]


def test_text_that_is_not_utf8_and_lists_over_the_bounds_are_one_line(tmp_path):
    """A shell passes an undecodable byte as a lone surrogate, which no tokenizer takes: the query, a candidate name
    or example is refused in one line before any encoder runs; the Space ranks at most 1,000 candidates."""
    from hf_probex.errors import BadTextError
    from hf_probex.head_naming import parse_candidates, read_candidates
    from hf_probex.search import SearchError, checked_query
    from hf_probex.space import SpaceInputError
    from hf_probex.space.infer_tab import _candidates
    from hf_probex.text import check_texts

    with pytest.raises(BadTextError, match="not UTF-8 text"):
        check_texts(["fine", "caf\udce9"])
    assert check_texts(["café", "犬"]) == ["café", "犬"]
    with pytest.raises(SearchError, match="not UTF-8 text"):
        checked_query("caf\udce9")
    for text in ("caf\udce9\nrotated seven", "law\tcaf\udce9"):
        with pytest.raises(ValueError, match="not UTF-8 text"):
            parse_candidates(text)
    with pytest.raises(SpaceInputError, match="at most 1,000"):
        _candidates("\n".join(f"concept {i}" for i in range(1_001)))
    assert len(_candidates("\n".join(f"concept {i}" for i in range(1_000)))) == 1_000
    fifo = tmp_path / "candidates.fifo"
    os.mkfifo(fifo)  # nothing ever writes to it: reading it would wait forever
    with pytest.raises(ValueError, match="not a regular file"):
        read_candidates(fifo)
    done = subprocess.run([str(Path(sys.executable).parent / "hf-probex"), "search", b"caf\xe9", "--tree", "a/b"],
                          capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1",
                                                               "HF_PROBEX_CACHE": str(tmp_path)}, timeout=300)
    assert done.returncode != 0 and "not UTF-8 text" in done.stderr and len(done.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("revision", ["../main", "main/../../x", "a b", "x\ny", "/etc/passwd"])
def test_a_revision_that_is_no_ref_name_is_one_line_before_the_hub_is_asked(revision):
    from hf_probex.errors import RevisionNotFoundError

    with pytest.raises(RevisionNotFoundError, match="is not a branch, tag or commit name"):
        open_source("acme/model", revision=revision)  # offline: asking the Hub would say it cannot reach it
