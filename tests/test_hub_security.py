"""The local hub under hostile and malformed input: what an attacker, or one careless writer, can and cannot do.

Each test writes its own hostile input. Through the real huggingface_hub client where it can send it, raw
HTTP (or a raw socket) where it cannot.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import select
import socket
import struct
import time
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest
import yaml
from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, ModelCard, get_session
from huggingface_hub.errors import HfHubHTTPError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.numpy import save as save_safetensors

from hf_probex.hub import LocalHub, Storage, create_app, use_endpoint
from hf_probex.hub.auth import UsersFileError
from hf_probex.hub.catalog import Catalog, card_data, card_problems, front_matter
from hf_probex.hub.errors import BadRequest
from hf_probex.hub.licenses import LICENSES
from hf_probex.hub.storage import Put

ALICE, BOB, CAROL = "hf_alice_write_token", "hf_bob_write_token", "hf_carol_read_token"  # tests/conftest.py
GOOD_CARD = "---\nlicense: apache-2.0\nbase_model: acme/base-root\ntags: [digits]\n---\n# Good\n"
EXPAND = ["safetensors", "cardData", "config", "tags", "baseModels", "childrenModelCount", "siblings"]


def alias_bomb_yaml(levels: int = 8, width: int = 9) -> str:
    """The reviewer's front matter: 350 bytes whose YAML aliases expand to width**levels (43 million) scalars."""
    lines = [f"a0: &a0 [{','.join(['x'] * width)}]"]
    lines += [f"a{i}: &a{i} [{','.join([f'*a{i - 1}'] * width)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def alias_bomb() -> str:
    return "---\n" + alias_bomb_yaml() + "---\n# bomb\n"


def _safetensors(header: dict | list | str | bytes | None, data: bytes = b"\0" * 4, length: int | None = None) -> bytes:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(raw) if length is None else length) + raw + data


def _tensor(shape: object = (1,), dtype: object = "F32", offsets: object = (0, 4)) -> dict:
    return {"dtype": dtype, "shape": list(shape) if isinstance(shape, tuple) else shape,
            "data_offsets": list(offsets) if isinstance(offsets, tuple) else offsets}


def _deep(levels: int) -> bytes:
    return b"[" * levels + b"]" * levels


def _raw(header: str) -> bytes:
    return _safetensors(header.encode())


BROKEN_SAFETENSORS = {
    "string shape": _safetensors({"w": _tensor(shape="abc")}),
    "negative dimension": _safetensors({"w": _tensor(shape=(-1, 4))}),
    "float dimension": _safetensors({"w": _tensor(shape=(1.5,))}),
    "boolean dimension": _safetensors({"w": _tensor(shape=[True])}),
    "NaN dimension": _raw('{"w": {"dtype": "F32", "shape": [NaN], "data_offsets": [0, 4]}}'),
    "Infinity dimension": _raw('{"w": {"dtype": "F32", "shape": [Infinity], "data_offsets": [0, 4]}}'),
    "5000-digit dimension": _raw('{"w": {"dtype": "F32", "shape": [' + "9" * 5000 + '], "data_offsets": [0, 4]}}'),
    "shape product of 2**496": _safetensors({"w": _tensor(shape=(2**62,) * 8)}),
    "unknown dtype": _safetensors({"w": _tensor(dtype="X99")}),
    "dtype not a string": _safetensors({"w": _tensor(dtype=5)}),
    "dtype a list": _safetensors({"w": _tensor(dtype=[])}),
    "offsets past the end": _safetensors({"w": _tensor(offsets=(0, 10**6))}),
    "offsets not a list": _safetensors({"w": _tensor(offsets="0-4")}),
    "offsets reversed": _safetensors({"w": _tensor(offsets=(4, 0))}),
    "offsets not matching the shape": _safetensors({"w": _tensor(shape=(2,))}),
    "overlapping tensors": _safetensors({"w": _tensor(), "v": _tensor()}),
    "tensor entry not an object": _safetensors({"w": 3}),
    "metadata not strings": _safetensors({"__metadata__": {"a": 1}, "w": _tensor()}),
    "metadata 100,000 levels deep": _safetensors(b'{"__metadata__": ' + _deep(100_000) + b"}"),
    "header an array": _safetensors([1, 2]),
    "header a string": _safetensors("x"),
    "header null": _safetensors(None),
    "header not JSON": _safetensors(b"{not json"),
    "header not UTF-8": _safetensors(b'{"\xff\xfe": 1}'),
    "tensor name twice": _raw('{"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, '
                              '"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}'),
    "declared length past the end": _safetensors({"w": _tensor()}, length=10**6),
    "declared length 0": _safetensors({"w": _tensor()}, length=0),
    "declared length 2**64-1": _safetensors({"w": _tensor()}, length=2**64 - 1),
    "shorter than 8 bytes": b"\x01\x02\x03",
    "empty file": b"",
}

BROKEN_CONFIGS = {
    "an array": b"[1, 2]",
    "a string": b'"vit"',
    "a number": b"3",
    "null": b"null",
    "empty": b"",
    "truncated": b'{"model_type": "vit"',
    "100,000 levels deep": b'{"model_type": "vit", "x": ' + _deep(100_000) + b"}",
    "not UTF-8": b'{"model_type": "\xff\xfe"}',
    "over 5 MB": b'{"model_type": "vit", "pad": "' + b"x" * 5_100_000 + b'"}',
    "NaN and Infinity": b'{"model_type": NaN, "architectures": [Infinity, -Infinity], "quantization_config": NaN}',
    "fields of the wrong types": b'{"model_type": {"a": 1}, "architectures": "x", "quantization_config": [1]}',
    "5000-digit number": b'{"model_type": ' + b"9" * 5000 + b"}",
}

BROKEN_READMES = {
    "alias bomb": alias_bomb(),
    "1000 levels deep": "---\nx: " + "[" * 1000 + "]" * 1000 + "\n---\n",
    "invalid YAML": "---\nfoo: [\n---\n",
    "a list": "---\n- a\n- b\n---\n",
    "a scalar": "---\njust text\n---\n",
    "keys not strings": "---\n1: a\ntrue: b\n---\n",
    "keys huggingface_hub reserves": "---\nself: a\nignore_metadata_errors: b\n---\n",
    "dates, binary, sets, NaN": "---\nd: 2024-01-01\nt: 2024-01-01 10:00:00\nb: !!binary aGk=\ns: !!set {a, b}\n"
                                "n: .nan\ni: -.inf\nnested: {2024-01-02: x}\n---\n",
    "fields of the wrong types": "---\ntags: 3\nlicense: [1, {a: b}]\nbase_model: {x: y}\nbase_model_relation: [a]\n"
                                 "library_name: 5\npipeline_tag: [x]\ndatasets: {a: 1}\nlanguage: 7\n---\n",
    "undefined alias": "---\na: *nowhere\n---\n",
    "recursive alias": "---\na: &a [*a]\n---\n",
    "python tag": "---\na: !!python/object/apply:os.system ['true']\n---\n",
    "not UTF-8": b"---\nlicense: \xff\xfe\n---\n",
    "front matter over 1 MB": "---\nx: '" + "y" * 1_100_000 + "'\n---\n",
    "model-index nonsense": "---\nmodel-index: [{results: 3}, 5, {name: [1]}]\n---\n",
    "NUL and control characters": '---\nlicense: mit\nx: "\\0\\x01\\x1b"\n---\n',
    "unterminated front matter": "---\nlicense: mit\n",
    "license not on the Hub's list": "---\nlicense: my-own-license\n---\n",
}

BROKEN_FILES = ([("model.safetensors", name, data) for name, data in BROKEN_SAFETENSORS.items()]
                + [("config.json", name, data) for name, data in BROKEN_CONFIGS.items()]
                + [("README.md", name, data if isinstance(data, bytes) else data.encode())
                   for name, data in BROKEN_READMES.items()])


def _commit_lines(files: dict[str, bytes], summary: str = "add") -> bytes:
    lines = [{"key": "header", "value": {"summary": summary}}]
    lines += [{"key": "file", "value": {"path": path, "content": base64.b64encode(data).decode(), "encoding": "base64"}}
              for path, data in files.items()]
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


def _post_commit(endpoint: str, repo_id: str, files: dict[str, bytes], token: str):
    return get_session().post(f"{endpoint}/api/models/{repo_id}/commit/main", content=_commit_lines(files),
                              headers={"Authorization": f"Bearer {token}", "Content-Type": "application/x-ndjson"})


def _commit_around_the_api(root, repo_id: str, files: dict[str, bytes]) -> None:
    """Write a commit straight into the hub's storage, as an import or an older hub could have."""
    storage = Storage(root)
    with storage.lock(repo_id):
        storage.commit_operations(repo_id, "refs/heads/main", [Put(p, storage.put_blob(d)) for p, d in files.items()],
                                  summary="around the API", description="", author="alice")


@pytest.fixture(scope="module")
def good_repo(hub_server, tmp_path_factory):
    """A repo of alice with a valid card, config and weights: its derived fields must survive its neighbours."""
    folder = tmp_path_factory.mktemp("good")
    tensors = {"a.weight": np.arange(12, dtype=np.float32).reshape(3, 4), "b.bias": np.arange(5, dtype=np.float16)}
    (folder / "model.safetensors").write_bytes(save_safetensors(tensors))
    (folder / "config.json").write_text(json.dumps({"model_type": "vit", "architectures": ["ViT"]}))
    (folder / "README.md").write_text(GOOD_CARD)
    with use_endpoint(hub_server.endpoint):  # the suite runs with HF_HUB_OFFLINE=1 (conftest.py)
        api = HfApi(token=ALICE)
        repo_id = api.create_repo("alice/security-good").repo_id
        api.upload_folder(folder_path=folder, repo_id=repo_id)
    return repo_id


def _strict_json(response) -> object:
    """The answer's JSON, refusing NaN and Infinity, which no JSON parser but Python's accepts."""
    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} in a JSON answer")

    return json.loads(response.text, parse_constant=refuse)


def _assert_good_repo_intact(models: dict, safetensors: bool = True) -> None:
    good = models["alice/security-good"]
    if safetensors:
        assert good.safetensors.total == 17 and good.safetensors.parameters == {"F32": 12, "F16": 5}
    assert good.card_data["license"] == "apache-2.0"
    assert "base_model:acme/base-root" in good.tags and "vit" in good.tags


# ---- one repo must not break everyone ------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "content"), [(path, data) for path, _, data in BROKEN_FILES],
                         ids=[f"{path}: {name}" for path, name, _ in BROKEN_FILES])
def test_a_broken_file_never_breaks_a_listing(hub, good_repo, caplog, path, content):
    caplog.set_level(logging.WARNING, logger="hf_probex.hub")
    api, anonymous = HfApi(token=hub.alice), HfApi(token=False)
    repo_id = api.create_repo(hub.repo_id()).repo_id
    response = _post_commit(hub.endpoint, repo_id, {path: content}, hub.alice)
    if path == "README.md" and response.status_code == 400:  # refused at commit; it can still be in storage
        assert "Invalid metadata" in response.json()["error"]
        _commit_around_the_api(hub.root, repo_id, {path: content})
    else:
        assert response.status_code == 200, response.text
    refused = response.status_code == 400
    started = time.monotonic()
    everyone = {m.id: m for m in anonymous.list_models()}
    assert repo_id in everyone and good_repo in everyone
    for listing, safetensors in ((anonymous.list_models(author="alice", cardData=True, full=True), False),
                                 (anonymous.list_models(author="alice", expand=EXPAND), True)):
        models = {m.id: m for m in listing}
        assert repo_id in models
        _assert_good_repo_intact(models, safetensors)
    info = anonymous.model_info(repo_id, expand=EXPAND)
    session = get_session()
    for url in (f"/api/models/{repo_id}", "/api/models?author=alice&full=1&cardData=1&config=1",
                "/api/models?author=alice&expand=safetensors&expand=cardData&expand=config"):
        answer = session.get(hub.endpoint + url)
        assert answer.status_code == 200 and _strict_json(answer)
    assert len(session.get(f"{hub.endpoint}/api/models/{repo_id}").content) < 10_000  # an alias bomb: 100s of MB
    assert time.monotonic() - started < 20
    if path == "model.safetensors":
        assert info.safetensors is None
    if refused:  # a card the Hub refuses shows as no card, wherever it came from
        assert info.card_data is None
    # The parsers caught it themselves; the catalog's last-resort isolation was not needed.
    assert not [r for r in caplog.records if "without its card" in r.getMessage()]


def test_a_repo_that_fails_unforeseen_is_listed_without_derived_fields(hub, good_repo, caplog):
    caplog.set_level(logging.WARNING, logger="hf_probex.hub")
    api = HfApi(token=hub.alice)
    repo_id = api.create_repo(hub.repo_id()).repo_id
    weights = b"\0" * 8 + b"unique %d" % time.monotonic_ns()
    api.upload_file(path_or_fileobj=weights, path_in_repo="model.safetensors", repo_id=repo_id)
    blob = Storage(hub.root).put_blob(weights).sha256
    os.remove(Storage(hub.root).blob_path(blob))  # storage damaged under the server: reading it raises OSError
    models = {m.id: m for m in HfApi(token=False).list_models(author="alice", cardData=True, full=True)}
    assert repo_id in models and models[repo_id].tags == []
    _assert_good_repo_intact(models, safetensors=False)
    warnings = [r.getMessage() for r in caplog.records if "without its card" in r.getMessage()]
    assert len(warnings) == 1 and repo_id in warnings[0] and "FileNotFoundError" in warnings[0]


def test_alias_bomb_card_costs_milliseconds(hub):
    bomb = alias_bomb()
    assert len(bomb) < 400
    api = HfApi(token=hub.alice)
    repo_id = api.create_repo(hub.repo_id()).repo_id
    started = time.monotonic()
    with pytest.raises(ValueError, match="Invalid metadata"):  # the client's validate-yaml call refuses it
        api.upload_file(path_or_fileobj=bomb.encode(), path_in_repo="README.md", repo_id=repo_id)
    with pytest.raises(ValueError, match="aliases are expanded"):
        ModelCard(bomb).validate()  # PyYAML shares aliased nodes, so the client holds the bomb unexpanded
    _commit_around_the_api(hub.root, repo_id, {"README.md": bomb.encode()})
    info = HfApi().model_info(repo_id)
    assert info.card_data is None and "README.md" in [s.rfilename for s in info.siblings]
    assert time.monotonic() - started < 5


HOSTILE_GITATTRIBUTES = {
    "5,000 long wildcard patterns": "\n".join("[a]*" * 60 + f"b{i} filter=lfs" for i in range(5000)),
    "deep ** patterns": "\n".join("/".join(["*a*"] * 7) + "/**/" + "/".join(["*a*"] * 7) + f"/b{i} filter=lfs"
                                   for i in range(5000)),
    "macro expansions": "[attr]m " + "filter=lfs " * 500 + "\n" + ("*a* " + "m " * 500 + "\n") * 200,
    "a 2 MB line": "*" * 2_000_000 + " filter=lfs",
}


@pytest.mark.parametrize("attributes", list(HOSTILE_GITATTRIBUTES.values()), ids=list(HOSTILE_GITATTRIBUTES))
def test_a_hostile_gitattributes_costs_its_repo_little(hub, attributes):
    """Every file listed is matched against its commit's .gitattributes (is it an LFS file?): bounded work."""
    api = HfApi(token=hub.alice)
    repo_id = api.create_repo(hub.repo_id()).repo_id
    files = {".gitattributes": attributes.encode()}
    files.update({f"{'a/' * 200}{'a' * 200}{i}": b"x" for i in range(300)})  # deep paths, long names
    assert _post_commit(hub.endpoint, repo_id, files, hub.alice).status_code == 200
    started = time.monotonic()
    listed = [f for f in HfApi().list_repo_tree(repo_id, recursive=True) if f.path != ".gitattributes"
              and hasattr(f, "lfs")]
    assert len(listed) == 300 and time.monotonic() - started < 10  # under a second here


# ---- bodies: nothing is read before the caller is known to be allowed ------------------------------------------


def _stream_until_answered(endpoint: str, method: str, path: str, headers: dict[str, str], total: int,
                           chunked: bool = False) -> tuple[int, int, dict]:
    """Send a `total`-byte body, stop sending once the server answers: (status, body bytes sent, JSON answer).

    A raw socket: huggingface_hub's HTTP client sends a whole body before it reads any answer.
    """
    parts = urlsplit(endpoint)
    headers = {"Content-Type": "application/json", **headers}
    head = [f"{method} {path} HTTP/1.1", f"Host: {parts.netloc}", *(f"{key}: {value}" for key, value in headers.items()),
            "Transfer-Encoding: chunked" if chunked else f"Content-Length: {total}"]
    chunk = b" " * (1 << 16)
    frame = b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        sock.setblocking(False)
        sent, pending = 0, b""
        while sent < total:
            readable, writable, _ = select.select([sock], [sock], [], 30)
            if readable:
                break
            assert writable, "the server neither read the body nor answered within 30 s"
            pending = pending or frame
            try:
                count = sock.send(pending)
            except BlockingIOError:
                continue
            sent, pending = sent + count, pending[count:]
        sock.setblocking(True)
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += sock.recv(65536)
        head_text, _, body = answer.partition(b"\r\n\r\n")
        length = int(next(line.split(b":")[1] for line in head_text.split(b"\r\n")
                          if line.lower().startswith(b"content-length")))
        while len(body) < length:
            body += sock.recv(65536)
    return int(head_text.split()[1]), sent, json.loads(body)


GIB = 1 << 30
EARLY_ANSWERS = {
    "anonymous commit to a missing repo": ("POST", "/api/models/alice/no-such-repo/commit/main", {}, 404),
    "anonymous commit": ("POST", "/api/models/{repo}/commit/main", {}, 401),
    "commit with a read token": ("POST", "/api/models/{repo}/commit/main", {"Authorization": f"Bearer {CAROL}"}, 403),
    "commit with an unknown token": ("POST", "/api/models/{repo}/commit/main", {"Authorization": "Bearer hf_nope"}, 401),
    "anonymous preupload": ("POST", "/api/models/{repo}/preupload/main", {}, 401),
    "anonymous repo creation": ("POST", "/api/repos/create", {}, 401),
    "repo creation with a read token": ("POST", "/api/repos/create", {"Authorization": f"Bearer {CAROL}"}, 403),
    "settings of another's repo": ("PUT", "/api/models/{repo}/settings", {"Authorization": f"Bearer {BOB}"}, 403),
    "anonymous discussion": ("POST", "/api/models/{repo}/discussions", {}, 401),
    "comment with a read token": ("POST", "/api/models/{repo}/discussions/1/comment",
                                  {"Authorization": f"Bearer {CAROL}"}, 403),
    "comment on a missing thread": ("POST", "/api/models/{repo}/discussions/999/comment",
                                    {"Authorization": f"Bearer {ALICE}"}, 404),
    "anonymous paths-info of a missing repo": ("POST", "/api/models/alice/no-such-repo/paths-info/main",
                                               {"Content-Type": "application/x-www-form-urlencoded"}, 404),
    "validate-yaml over 10 MB": ("POST", "/api/validate-yaml", {}, 413),
    "discussion over 10 MB": ("POST", "/api/models/{repo}/discussions", {"Authorization": f"Bearer {ALICE}"}, 413),
    "paths-info over 10 MB": ("POST", "/api/models/{repo}/paths-info/main",
                              {"Content-Type": "application/x-www-form-urlencoded"}, (413, 400)),  # 400: a field over 1 MB
    "commit to a dataset with a model's id": ("POST", "/api/datasets/{repo}/commit/main",
                                              {"Authorization": f"Bearer {ALICE}"}, 404),
    "branch with a read token": ("POST", "/api/models/{repo}/branch/b", {"Authorization": f"Bearer {CAROL}"}, 403),
    "tag by a stranger": ("POST", "/api/models/{repo}/tag/main", {"Authorization": f"Bearer {BOB}"}, 403),
}


@pytest.mark.parametrize("chunked", [False, True], ids=["declared length", "chunked"])
@pytest.mark.parametrize(("method", "path", "headers", "status"), list(EARLY_ANSWERS.values()), ids=list(EARLY_ANSWERS))
def test_a_1_gib_body_is_answered_before_it_is_read(hub, method, path, headers, status, chunked):
    api = HfApi(token=hub.alice)
    repo_id = api.create_repo(hub.repo_id()).repo_id
    api.create_discussion(repo_id, title="a thread")
    path = path.replace("{repo}", repo_id)
    answered, sent, answer = _stream_until_answered(hub.endpoint, method, path, headers, GIB, chunked=chunked)
    assert answered in (status if isinstance(status, tuple) else (status,)) and answer["error"], answer
    assert sent < 64 << 20  # of 1 GiB: the server stopped at its 10 MB JSON bound, or never read at all


# ---- malformed requests are 4xx, in the Hub's error shape --------------------------------------------------------


DEEP_JSON = b'{"a": ' + _deep(100_000) + b"}"
JSON_ROUTES = [("post", "/api/repos/create"), ("delete", "/api/repos/delete"), ("put", "/api/models/{repo}/settings"),
               ("post", "/api/models/{repo}/preupload/main"), ("post", "/api/models/{repo}/discussions"),
               ("post", "/api/models/{repo}/discussions/1/comment"), ("post", "/api/models/{repo}/discussions/1/status"),
               ("post", "/api/models/{repo}/discussions/1/title"), ("post", "/api/validate-yaml"),
               ("post", "/api/models/{repo}/commit/main"), ("post", "/api/models/{repo}/branch/fuzzed"),
               ("post", "/api/models/{repo}/tag/main")]
MALFORMED_BODIES = {"100,000 levels deep": DEEP_JSON, "not UTF-8": b'{"name": "\xff"}', "not JSON": b"{oops",
                    "an array": b"[1]", "NUL bytes": b"\0\0\0", "a 5000-digit number": b'{"name": ' + b"9" * 5000 + b"}"}


@pytest.fixture
def thread_repo(hub):
    api = HfApi(token=hub.alice)
    repo_id = api.create_repo(hub.repo_id()).repo_id
    api.create_discussion(repo_id, title="a thread")
    return repo_id


@pytest.mark.parametrize("body", list(MALFORMED_BODIES.values()), ids=list(MALFORMED_BODIES))
@pytest.mark.parametrize(("method", "route"), JSON_ROUTES, ids=[r.rsplit("}", 1)[-1] for _, r in JSON_ROUTES])
def test_malformed_bodies_are_400(hub, thread_repo, method, route, body):
    response = get_session().request(method.upper(), hub.endpoint + route.replace("{repo}", thread_repo), content=body,
                                     headers={"Authorization": f"Bearer {hub.alice}"})
    assert response.status_code == 400, response.text
    assert response.json()["error"] and "\n" not in response.json()["error"]
    assert response.headers["X-Error-Message"]


MALFORMED_PATHS = ["/{repo}/resolve/main/a%00b", "/{repo}/resolve/ma%00in/x", "/alice/x%00y/resolve/main/x",
                   "/{repo}/resolve/main/%ff%fe", "/{repo}/resolve/main/%zz", "/{repo}/resolve/main/a%0d%0aSet-Cookie:x",
                   "/api/models/{repo}/tree/main/a%00b", "/api/models/{repo}/revision/%00",
                   "/api/models/{repo}/commits/%0a", "/api/models/al%00ice/x", "/api/models/{repo}/tree/main/" + "a/" * 2000,
                   "/api/models/{repo}/discussions/99999999999999999999999", "/api/no-such-route", "/%00",
                   "/datasets/{repo}/resolve/main/a%00b", "/api/datasets/{repo}/tree/main/%ff", "/api/spaces/{repo}",
                   "/api/models/{repo}/branch/%00"]


@pytest.mark.parametrize("path", MALFORMED_PATHS)
def test_malformed_paths_are_answered_4xx(hub, thread_repo, path):
    response = get_session().get(hub.endpoint + path.replace("{repo}", thread_repo))
    assert 400 <= response.status_code < 500 and response.json()["error"]
    assert all(ord(c) >= 32 for c in response.headers["X-Error-Message"])
    assert "set-cookie" not in response.headers


def test_wrong_method_and_malformed_form_are_4xx_in_the_hub_shape(hub, thread_repo):
    session = get_session()
    response = session.delete(f"{hub.endpoint}/api/whoami-v2")
    assert response.status_code == 405 and response.json()["error"]
    form = b'--x\r\nContent-Disposition: form-data\r\n\r\nREADME.md\r\n--x--\r\n'  # a part without a name
    response = session.post(f"{hub.endpoint}/api/models/{thread_repo}/paths-info/main", content=form,
                            headers={"Content-Type": "multipart/form-data; boundary=x"})
    assert response.status_code == 400 and response.json()["error"]


# ---- Hub rules: read tokens write nothing, cards follow the Hub's metadata rules ----------------------------------


READ_TOKEN_WRITES = {
    "create repo": lambda api, repo, pr: api.create_repo("carol/new-repo"),
    "delete repo": lambda api, repo, pr: api.delete_repo(repo),
    "settings": lambda api, repo, pr: api.update_repo_settings(repo, private=True),
    "commit": lambda api, repo, pr: api.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=repo),
    "commit as a PR": lambda api, repo, pr: api.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=repo,
                                                            create_pr=True),
    "commit to a PR": lambda api, repo, pr: api.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=repo,
                                                            revision=f"refs/pr/{pr}"),
    "open a discussion": lambda api, repo, pr: api.create_discussion(repo, title="hi"),
    "open a pull request": lambda api, repo, pr: api.create_pull_request(repo, title="hi"),
    "comment": lambda api, repo, pr: api.comment_discussion(repo, pr, "hi"),
    "close": lambda api, repo, pr: api.change_discussion_status(repo, pr, "closed"),
    "rename": lambda api, repo, pr: api.rename_discussion(repo, pr, "new title"),
    "merge": lambda api, repo, pr: api.merge_pull_request(repo, pr),
    "create a dataset": lambda api, repo, pr: api.create_repo("carol/new-dataset", repo_type="dataset"),
    "create a branch": lambda api, repo, pr: api.create_branch(repo, branch="b"),
    "delete a branch": lambda api, repo, pr: api.delete_branch(repo, branch="main"),
    "create a tag": lambda api, repo, pr: api.create_tag(repo, tag="t"),
    "delete a tag": lambda api, repo, pr: api.delete_tag(repo, tag="t"),
}


@pytest.mark.parametrize("action", list(READ_TOKEN_WRITES.values()), ids=list(READ_TOKEN_WRITES))
def test_read_tokens_write_nothing(hub, action):
    alice = HfApi(token=hub.alice)
    repo_id = alice.create_repo(hub.repo_id()).repo_id
    pr = alice.upload_file(path_or_fileobj=b"v2", path_in_repo="f.txt", repo_id=repo_id, create_pr=True).pr_num
    before = (alice.model_info(repo_id).sha, len(alice.get_discussion_details(repo_id, pr).events))
    with pytest.raises(HfHubHTTPError) as err:
        action(HfApi(token=hub.carol), repo_id, pr)
    assert err.value.response.status_code == 403 and "read-only" in err.value.response.json()["error"]
    assert (alice.model_info(repo_id).sha, len(alice.get_discussion_details(repo_id, pr).events)) == before


REFUSED_CARDS = {
    "tags a number": "tags: 3",
    "a tag a list": "tags: [a, [b]]",
    "license in capitals": "license: MIT",
    "license with a space": "license: apache 2.0",
    "SPDX -or-later license": "license: gpl-2.0-or-later",
    "license a number": "license: 3",
    "license a mapping": "license: {name: mit}",
    "one license of a list unknown": "license: [mit, my-own]",
    "a key not a string": "1: one",
    "a key huggingface_hub reserves": "self: me",
    "invalid YAML": "tags: [",
    "alias bomb": alias_bomb_yaml(),
    "1000 levels deep": "x: " + "[" * 1000 + "]" * 1000,
}


@pytest.mark.parametrize("metadata", list(REFUSED_CARDS.values()), ids=list(REFUSED_CARDS))
def test_cards_the_hub_refuses_are_refused_everywhere(hub, metadata):
    card = f"---\n{metadata}\n---\n# Card\n"
    response = get_session().post(f"{hub.endpoint}/api/validate-yaml", json={"content": card, "repoType": "model"})
    assert response.status_code == 400 and response.json()["errors"][0]["message"]
    assert "\n" not in response.json()["error"]
    api = HfApi(token=hub.alice)
    repo_id = api.create_repo(hub.repo_id()).repo_id
    with pytest.raises(ValueError, match="Invalid metadata in README.md"):  # upload_file asks validate-yaml first
        api.upload_file(path_or_fileobj=card.encode(), path_in_repo="README.md", repo_id=repo_id)
    response = _post_commit(hub.endpoint, repo_id, {"README.md": card.encode()}, hub.alice)  # and /commit checks too
    assert response.status_code == 400 and "Invalid metadata in README.md" in response.json()["error"]
    assert api.list_repo_files(repo_id) == [".gitattributes"]


def test_a_refused_commit_leaves_nothing_in_the_object_store(hub):
    """Refused for its card, its parent or a delete of nothing: none of its files is stored (a writer cannot fill the
    disk with commits that never land)."""
    api = HfApi(token=hub.alice)
    repo_id = api.create_repo(hub.repo_id()).repo_id
    head = api.model_info(repo_id).sha
    api.upload_file(path_or_fileobj=b"moved", path_in_repo="moved.txt", repo_id=repo_id)

    def stored() -> set[str]:
        return {p.name for p in (hub.root / "objects" / "blobs").rglob("*") if p.is_file()}

    before = stored()
    weights = os.urandom(4096)
    refused = _post_commit(hub.endpoint, repo_id, {"model.safetensors": weights, "README.md": b"---\nlicense: no\n---\n"},
                           hub.alice)
    assert refused.status_code == 400
    with pytest.raises(HfHubHTTPError) as stale:
        api.create_commit(repo_id, [CommitOperationAdd("late.bin", os.urandom(4096))], commit_message="late",
                          parent_commit=head)
    with pytest.raises(HfHubHTTPError) as absent:
        api.create_commit(repo_id, [CommitOperationAdd("more.bin", os.urandom(4096)),
                                    CommitOperationDelete("no-such-file.txt")], commit_message="delete nothing")
    assert (stale.value.response.status_code, absent.value.response.status_code) == (412, 404)
    assert stored() == before
    api.upload_file(path_or_fileobj=weights, path_in_repo="model.safetensors", repo_id=repo_id)  # one that lands: stored
    assert len(stored() - before) == 1


@pytest.mark.parametrize("metadata", ["license: mit", "license: [mit, apache-2.0]", "license: llama3.1",
                                      "license: other\nlicense_name: acme-1.0\nlicense_link: LICENSE", "tags: digits",
                                      "tags: [a, b]", "license:", "d: 2024-01-01"])
def test_cards_the_hub_accepts_are_accepted(hub, metadata):
    card = f"---\n{metadata}\n---\n# Card\n"
    response = get_session().post(f"{hub.endpoint}/api/validate-yaml", json={"content": card})
    assert response.status_code == 200 and response.json() == {"errors": [], "warnings": []}
    ModelCard(card).validate()


def test_model_card_validate_follows_the_license_list(hub):
    with pytest.raises(ValueError, match=r'license.{0,2} must be one of \[apache-2.0, mit, '):
        ModelCard("---\nlicense: MIT\n---\n").validate()
    ModelCard("---\nlicense: mit\n---\n").validate()


def test_license_other_without_a_name_is_a_warning(hub):
    card = "---\nlicense: other\n---\n# Card\n"
    response = get_session().post(f"{hub.endpoint}/api/validate-yaml", json={"content": card})
    assert response.status_code == 200 and "license_name" in response.json()["warnings"][0]["message"]
    api = HfApi(token=hub.alice)
    repo_id = api.create_repo(hub.repo_id()).repo_id
    with pytest.warns(UserWarning, match="license_name"):  # upload_folder's validation turns warnings into these
        api.upload_folder(folder_path=_folder_with(hub, card), repo_id=repo_id)
    assert HfApi().model_info(repo_id).card_data["license"] == "other"


def _folder_with(hub, card: str):
    folder = hub.cache.parent / "card-folder"
    folder.mkdir(exist_ok=True)
    (folder / "README.md").write_text(card)
    return folder


def test_every_license_of_the_hub_list_is_accepted():
    assert len(LICENSES) == len(set(LICENSES)) == 82
    assert all(card_problems({"license": license_id, "license_name": "x"}) == ([], []) for license_id in LICENSES)


# ---- the users file ------------------------------------------------------------------------------------------------


USERS = "users:\n  dana: {tokens: [hf_dana_secret_token_0123456789abcdef]}\n"
BROKEN_USERS_FILES = {
    "invalid YAML": "users: [\n  hf_dana_secret_token_0123456789abcdef",
    "alias bomb": alias_bomb_yaml(),
    "1000 levels deep": "users: " + "[" * 1000 + "]" * 1000,
    "a list": "- hf_dana_secret_token_0123456789abcdef\n",
    "users a list": "users: [dana]\n",
    "a user a list": "users:\n  dana: [hf_dana_secret_token_0123456789abcdef]\n",
    "tokens a string": "users:\n  dana: {tokens: hf_dana_secret_token_0123456789abcdef}\n",
    "a token a number": "users:\n  dana: {tokens: [3]}\n",
    "a token with an unknown role": "users:\n  dana: {tokens: [{token: hf_dana_secret_token_0123456789abcdef, role: admin}]}\n",
    "a token twice": "users:\n  dana: {tokens: [hf_dana_secret_token_0123456789abcdef]}\n"
                     "  erin: {tokens: [hf_dana_secret_token_0123456789abcdef]}\n",
    "org members a string": USERS + "orgs:\n  acme: dana\n",
    "not UTF-8": b"users:\n  dana: {tokens: [\xff\xfe]}\n",
    "deleted": None,
}


def _write_users(path, content) -> None:
    if content is None:
        path.unlink()
        return
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    stamp = time.time() + 5  # a new modification time even on coarse-grained filesystems
    os.utime(path, (stamp, stamp))


@pytest.mark.parametrize("content", list(BROKEN_USERS_FILES.values()), ids=list(BROKEN_USERS_FILES))
def test_a_broken_users_file_keeps_the_last_good_one(tmp_path, caplog, content):
    caplog.set_level(logging.WARNING, logger="hf_probex.hub")
    users = tmp_path / "users.yaml"
    users.write_text(USERS)
    dana = "hf_dana_secret_token_0123456789abcdef"
    with LocalHub(tmp_path / "root", users_file=users) as server, use_endpoint(server.endpoint):
        api = HfApi(token=dana)
        repo_id = api.create_repo("dana/kept").repo_id
        _write_users(users, content)
        for _ in range(3):
            assert api.whoami()["name"] == "dana"
            assert HfApi(token=False).model_info(repo_id).id == repo_id
        _write_users(users, USERS.replace("dana", "erin").replace("hf_dana", "hf_erin"))
        assert HfApi(token="hf_erin_secret_token_0123456789abcdef").whoami()["name"] == "erin"
        with pytest.raises(HfHubHTTPError) as err:
            api.whoami()
        assert err.value.response.status_code == 401
    warnings = [r.getMessage() for r in caplog.records if r.name == "hf_probex.hub"]
    assert len(warnings) == 1 and "last valid version" in warnings[0] and "\n" not in warnings[0]
    assert dana not in warnings[0] and "0123456789abcdef" not in warnings[0]


@pytest.mark.parametrize("content", [c for c in BROKEN_USERS_FILES.values() if c is not None],
                         ids=[n for n, c in BROKEN_USERS_FILES.items() if c is not None])
def test_a_broken_users_file_stops_the_start(tmp_path, content):
    users = tmp_path / "users.yaml"
    _write_users(users, content)
    with pytest.raises(UsersFileError) as err:
        create_app(tmp_path / "root", users_file=users)
    message = str(err.value)
    assert str(users) in message and "\n" not in message and "0123456789abcdef" not in message


def test_tokens_never_reach_error_answers(hub):
    secret = "hf_" + "Zx9" * 12
    for headers in ({"Authorization": f"Bearer {secret}"}, {"Authorization": secret}):
        response = get_session().get(f"{hub.endpoint}/api/whoami-v2", headers=headers)
        assert response.status_code == 401 and secret not in response.text and secret not in str(response.headers)


# ---- property-based: any input, never a 5xx --------------------------------------------------------------------------


hub_settings = settings(max_examples=20, deadline=None, derandomize=True,
                        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture(scope="module")
def fuzz_repo(hub_server):
    with use_endpoint(hub_server.endpoint):
        api = HfApi(token=ALICE)
        repo_id = api.create_repo("alice/security-fuzz").repo_id
        api.create_discussion(repo_id, title="a thread")
    return repo_id


@pytest.fixture(scope="module")
def http():
    """A plain HTTP client: huggingface_hub's session refuses requests while HF_HUB_OFFLINE=1 outside `hub`."""
    with httpx.Client(timeout=60) as client:
        yield client


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                                        max_size=4), max_leaves=20)


@hub_settings
@given(body=st.binary(max_size=300) | st.text(max_size=300).map(str.encode) | json_values.map(lambda v: json.dumps(v).encode()))
def test_any_body_on_any_route_is_never_a_5xx(hub_server, fuzz_repo, http, body):
    for method, route in JSON_ROUTES + [("post", "/api/models/{repo}/paths-info/main")]:
        url = hub_server.endpoint + route.replace("{repo}", fuzz_repo)
        for headers in ({"Authorization": f"Bearer {ALICE}"}, {}):
            response = http.request(method.upper(), url, content=body, headers=headers)
            assert response.status_code < 500, (route, response.text)
            if response.status_code >= 400:
                assert response.json()["error"]


yaml_scalars = (st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20) | st.dates()
                | st.datetimes() | st.binary(max_size=10))
yaml_values = st.recursive(yaml_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=10) | st.integers(), inner, max_size=4), max_leaves=20)
front_matters = st.dictionaries(st.sampled_from(["license", "tags", "base_model", "model-index", "library_name",
                                                 "license_name", "datasets", "x"]) | st.text(max_size=10), yaml_values,
                                max_size=6).map(lambda d: "---\n" + yaml.safe_dump(d, allow_unicode=True) + "---\n")


@settings(max_examples=500, deadline=None, derandomize=True)
@given(text=st.text(max_size=400) | st.text(max_size=400).map(lambda t: "---\n" + t + "\n---\n") | front_matters)
def test_any_card_text_is_a_card_or_a_bad_request(text):
    try:
        metadata = front_matter(text)
    except BadRequest as err:
        assert err.message.startswith("Invalid metadata in README.md") and "\n" not in err.message
        metadata = None
    if metadata is not None:
        card_problems(metadata)
    json.dumps(card_data(text), allow_nan=False)  # what the listing serves is always valid JSON


@hub_settings
@given(text=st.text(max_size=300) | front_matters)
def test_any_card_on_validate_yaml_is_200_or_400(hub_server, http, text):
    card = text if text.startswith("---") else "---\n" + text + "\n---\n"
    response = http.post(f"{hub_server.endpoint}/api/validate-yaml", json={"content": card})
    assert response.status_code in (200, 400), response.text
    assert isinstance(response.json()["errors"], list)


safetensors_files = (st.binary(max_size=200)
                     | st.binary(max_size=100).map(lambda b: struct.pack("<Q", len(b)) + b)
                     | st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                                    lambda inner: st.lists(inner, max_size=4)
                                    | st.dictionaries(st.sampled_from(["dtype", "shape", "data_offsets", "w",
                                                                       "__metadata__"]), inner, max_size=4),
                                    max_leaves=20).map(lambda v: _safetensors(json.dumps(v).encode(), b"\0" * 16)))


@settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(weights=safetensors_files, config=st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()),
       readme=st.binary(max_size=200) | front_matters.map(str.encode))
def test_any_files_summarize_without_raising(tmp_path, weights, config, readme):
    storage = Storage(tmp_path / "store")
    repo_id = f"alice/r{time.monotonic_ns()}"
    storage.create_repo(repo_id, private=False, author="alice")
    files = {"model.safetensors": weights, "config.json": config, "README.md": readme}
    with storage.lock(repo_id):
        commit = storage.commit_operations(repo_id, "refs/heads/main",
                                           [Put(p, storage.put_blob(d)) for p, d in files.items()],
                                           summary="s", description="", author="alice")
    summary = Catalog(storage)._summary(repo_id, commit.id)  # not the guarded one: it must not need the guard
    json.dumps([summary.card, summary.config, summary.safetensors, summary.tags], allow_nan=False)
