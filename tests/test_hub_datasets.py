"""Dataset repos, branches and tags, and HTTP caching on the local hub, through the real huggingface_hub client.

What a tree scan needs to publish its table (a dataset repo of parquet files and a card with `configs:`), and
what users of the Hub call besides: the same calls with `repo_type="dataset"`, refs, and 304 answers.
"""

from __future__ import annotations

import hashlib
import io
import json

import httpx
import pytest
from huggingface_hub import (CommitOperationAdd, HfApi, HfFileSystem, get_hf_file_metadata, hf_hub_download, hf_hub_url,
                             snapshot_download)
from huggingface_hub.errors import BadRequestError, HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError
from huggingface_hub.hf_api import RepoFile

from hf_probex.hub import use_endpoint
from hf_probex.hub.lfs import LFS_MIN_SIZE, LfsRules

CARD = """---
license: mit
task_categories: [tabular-classification]
size_categories: [n<1K]
configs:
- config_name: default
  data_files:
  - split: train
    path: data/train-*.parquet
---

# A tree table
"""
#: The hub never parses data files: bytes stand for a parquet shard where no table library is needed.
SHARD = b"PAR1" + bytes(range(256)) * 4 + b"PAR1"


@pytest.fixture
def dataset_repo(hub, tmp_path):
    """A dataset of alice's org with a card and one shard on main."""
    api = HfApi(token=hub.alice)
    repo_id = hub.repo_id("acme")
    api.create_repo(repo_id, repo_type="dataset")
    folder = tmp_path / "table"
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "train-00000-of-00001.parquet").write_bytes(SHARD)
    (folder / "README.md").write_text(CARD)
    api.upload_folder(folder_path=folder, repo_id=repo_id, repo_type="dataset", commit_message="add table")
    return repo_id


def _status(err: pytest.ExceptionInfo) -> int:
    return err.value.response.status_code


# ---- dataset repos ------------------------------------------------------------------------------------------


def test_dataset_repo_lifecycle(hub):
    api = HfApi(token=hub.alice)
    repo_id = hub.repo_id()
    url = api.create_repo(repo_id, repo_type="dataset")
    assert url == f"{hub.endpoint}/datasets/{repo_id}" and url.repo_type == "dataset" and url.repo_id == repo_id
    assert api.create_repo(repo_id, repo_type="dataset", exist_ok=True).repo_type == "dataset"
    with pytest.raises(HfHubHTTPError) as err:
        api.create_repo(repo_id, repo_type="dataset")
    assert _status(err) == 409
    assert api.repo_exists(repo_id, repo_type="dataset") and not api.repo_exists(repo_id)
    assert api.list_repo_files(repo_id, repo_type="dataset") == [".gitattributes"]
    with pytest.raises(BadRequestError):  # a type this hub does not host: one clear line
        api.create_repo(hub.repo_id(), repo_type="space", space_sdk="static")
    api.delete_repo(repo_id, repo_type="dataset")
    assert not api.repo_exists(repo_id, repo_type="dataset")
    with pytest.raises(RepositoryNotFoundError):
        api.delete_repo(repo_id, repo_type="dataset")


def test_a_model_and_a_dataset_may_share_an_id(hub):
    api = HfApi(token=hub.alice)
    repo_id = hub.repo_id()
    api.create_repo(repo_id)
    api.create_repo(repo_id, repo_type="dataset")
    api.upload_file(path_or_fileobj=b"model side", path_in_repo="side.txt", repo_id=repo_id)
    api.upload_file(path_or_fileobj=b"dataset side", path_in_repo="side.txt", repo_id=repo_id, repo_type="dataset")
    model = hf_hub_download(repo_id, "side.txt", cache_dir=hub.cache)
    dataset = hf_hub_download(repo_id, "side.txt", repo_type="dataset", cache_dir=hub.cache)
    assert open(model, "rb").read() == b"model side" and open(dataset, "rb").read() == b"dataset side"
    assert api.model_info(repo_id).sha != api.dataset_info(repo_id).sha
    api.delete_repo(repo_id, repo_type="dataset")
    assert api.repo_exists(repo_id) and not api.repo_exists(repo_id, repo_type="dataset")


def test_dataset_upload_info_and_downloads(hub, dataset_repo, tmp_path):
    repo_id = dataset_repo
    api = HfApi(token=hub.alice)
    extra = api.create_commit(repo_id, [CommitOperationAdd("data/train-00001-of-00002.parquet", SHARD[::-1])],
                              commit_message="second shard", repo_type="dataset")
    assert extra.commit_url == f"{hub.endpoint}/datasets/{repo_id}/commit/{extra.oid}"
    assert sorted(api.list_repo_files(repo_id, repo_type="dataset")) == [
        ".gitattributes", "README.md", "data/train-00000-of-00001.parquet", "data/train-00001-of-00002.parquet"]
    info = api.dataset_info(repo_id, files_metadata=True)
    assert info.id == repo_id and info.sha == extra.oid and info.author == "acme"
    assert info.card_data["configs"][0]["data_files"][0]["path"] == "data/train-*.parquet"
    assert {"license:mit", "task_categories:tabular-classification", "size_categories:n<1K", "format:parquet"} <= set(info.tags)
    shard = {s.rfilename: s for s in info.siblings}["data/train-00000-of-00001.parquet"]
    assert shard.size == len(SHARD) and shard.lfs.sha256 == hashlib.sha256(SHARD).hexdigest()  # *.parquet is LFS
    assert api.repo_info(repo_id, repo_type="dataset").sha == info.sha
    path = hf_hub_download(repo_id, "data/train-00000-of-00001.parquet", repo_type="dataset", cache_dir=hub.cache)
    assert open(path, "rb").read() == SHARD
    folder = snapshot_download(repo_id, repo_type="dataset", local_dir=tmp_path / "snap")
    assert (tmp_path / "snap" / "README.md").read_text() == CARD
    assert (tmp_path / "snap" / "data" / "train-00001-of-00002.parquet").read_bytes() == SHARD[::-1]
    assert folder == str(tmp_path / "snap")
    fs = HfFileSystem(skip_instance_cache=True)
    assert sorted(fs.ls(f"datasets/{repo_id}/data", detail=False)) == [
        f"datasets/{repo_id}/data/train-00000-of-00001.parquet", f"datasets/{repo_id}/data/train-00001-of-00002.parquet"]
    assert fs.cat(f"datasets/{repo_id}/data/train-00000-of-00001.parquet") == SHARD
    paths = api.get_paths_info(repo_id, ["README.md", "data"], repo_type="dataset", expand=True)
    assert [p.path for p in paths] == ["README.md", "data"] and paths[0].last_commit.title == "add table"
    assert [c.title for c in api.list_repo_commits(repo_id, repo_type="dataset")] == [
        "second shard", "add table", "initial commit"]
    with pytest.raises(RepositoryNotFoundError):  # the model namespace has no such repo
        hf_hub_download(repo_id, "README.md", cache_dir=hub.cache)


def test_list_datasets_filters_and_privacy(hub, dataset_repo):
    alice, bob = HfApi(token=hub.alice), HfApi(token=hub.bob)
    hidden = hub.repo_id("acme")
    alice.create_repo(hidden, repo_type="dataset", private=True)
    listed = [d.id for d in alice.list_datasets(author="acme")]
    assert dataset_repo in listed and hidden in listed
    assert dataset_repo not in [m.id for m in alice.list_models(author="acme")]  # models and datasets list apart
    assert [d.id for d in alice.list_datasets(search=dataset_repo.split("/")[1])] == [dataset_repo]
    assert [d.id for d in alice.list_datasets(filter="format:parquet", search=dataset_repo.split("/")[1])] == [dataset_repo]
    assert [d.id for d in alice.list_datasets(dataset_name=dataset_repo.split("/")[1], search="acme")] == [dataset_repo]
    full = next(iter(alice.list_datasets(search=dataset_repo.split("/")[1], full=True)))
    assert full.card_data["license"] == "mit" and full.sha is not None
    for api in (bob, HfApi(token=False)):
        assert hidden not in [d.id for d in api.list_datasets(author="acme")]
        with pytest.raises(RepositoryNotFoundError):
            api.dataset_info(hidden)
        with pytest.raises(RepositoryNotFoundError):
            hf_hub_download(hidden, ".gitattributes", repo_type="dataset", token=api.token, cache_dir=hub.cache)


def test_dataset_writes_need_the_namespace(hub, dataset_repo):
    for token, status in ((hub.bob, 403), (hub.carol, 403)):  # bob is not in acme; carol's token is read-only
        with pytest.raises(HfHubHTTPError) as err:
            HfApi(token=token).upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=dataset_repo,
                                           repo_type="dataset")
        assert _status(err) == status
    with pytest.raises(HfHubHTTPError) as err:
        HfApi(token=hub.bob).delete_repo(dataset_repo, repo_type="dataset")
    assert _status(err) == 403
    pr = HfApi(token=hub.bob).upload_file(path_or_fileobj=b"fix", path_in_repo="fix.txt", repo_id=dataset_repo,
                                          repo_type="dataset", create_pr=True)  # but anyone may propose
    assert pr.pr_url == f"{hub.endpoint}/datasets/{dataset_repo}/discussions/{pr.pr_num}"
    HfApi(token=hub.alice).merge_pull_request(dataset_repo, pr.pr_num, repo_type="dataset")
    assert "fix.txt" in HfApi().list_repo_files(dataset_repo, repo_type="dataset")
    liked = httpx.post(f"{hub.endpoint}/api/datasets/{dataset_repo}/like", headers={"Authorization": f"Bearer {hub.bob}"})
    assert liked.status_code == 200 and [u.username for u in HfApi().list_repo_likers(dataset_repo, repo_type="dataset")] == ["bob"]
    assert HfApi().dataset_info(dataset_repo, expand=["likes"]).likes == 1
    HfApi(token=hub.bob).unlike(dataset_repo, repo_type="dataset")
    assert HfApi().dataset_info(dataset_repo, expand=["likes"]).likes == 0


def test_dataset_names_and_paths_stay_in_bounds(hub, dataset_repo):
    """The checks model repos have: no id in the reserved `datasets` namespace (it would shadow dataset URLs), no
    path leaving the repo, private datasets invisible in every call, refs included."""
    api = HfApi(token=hub.alice)
    with pytest.raises(BadRequestError):
        api.create_repo("datasets/shadow")
    head = api.dataset_info(dataset_repo).sha
    for path in ("../evil", "/etc/passwd", "a/./b", "a\\b"):
        line = {"key": "file", "value": {"path": path, "content": "YQ==", "encoding": "base64"}}
        body = b"".join(json.dumps(item).encode() + b"\n" for item in ({"key": "header", "value": {"summary": "s"}}, line))
        response = httpx.post(f"{hub.endpoint}/api/datasets/{dataset_repo}/commit/main", content=body,
                              headers={"Authorization": f"Bearer {hub.alice}", "Content-Type": "application/x-ndjson"})
        assert response.status_code == 400 and response.json()["error"], path
    assert api.dataset_info(dataset_repo).sha == head
    hidden = api.create_repo(hub.repo_id("acme"), repo_type="dataset", private=True).repo_id
    api.create_branch(hidden, branch="dev", repo_type="dataset")
    for call in (lambda other: other.list_repo_refs(hidden, repo_type="dataset"),
                 lambda other: other.list_repo_files(hidden, repo_type="dataset", revision="dev"),
                 lambda other: other.create_branch(hidden, branch="x", repo_type="dataset")):
        with pytest.raises(RepositoryNotFoundError):
            call(HfApi(token=hub.bob))


# ---- branches and tags ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("repo_type", ["model", "dataset"])
def test_branches_and_tags(hub, repo_type):
    api = HfApi(token=hub.alice)
    repo_id = api.create_repo(hub.repo_id("acme"), repo_type=repo_type).repo_id
    main = api.upload_file(path_or_fileobj=b"v0", path_in_repo="f.txt", repo_id=repo_id, repo_type=repo_type).oid
    api.create_branch(repo_id, branch="dev", repo_type=repo_type)
    v1 = api.upload_file(path_or_fileobj=b"v1", path_in_repo="f.txt", repo_id=repo_id, repo_type=repo_type,
                         revision="dev").oid
    api.create_tag(repo_id, tag="v1.0", revision="dev", tag_message="first table", repo_type=repo_type)
    api.upload_file(path_or_fileobj=b"v2", path_in_repo="f.txt", repo_id=repo_id, repo_type=repo_type, revision="dev")

    def read(revision: str) -> bytes:
        return open(hf_hub_download(repo_id, "f.txt", repo_type=repo_type, revision=revision, cache_dir=hub.cache),
                    "rb").read()

    assert (read("main"), read("v1.0"), read("dev")) == (b"v0", b"v1", b"v2")  # a tag stays where it was put
    refs = api.list_repo_refs(repo_id, repo_type=repo_type)
    assert sorted(b.name for b in refs.branches) == ["dev", "main"] and refs.pull_requests is None
    assert [(t.name, t.ref, t.target_commit) for t in refs.tags] == [("v1.0", "refs/tags/v1.0", v1)]
    assert api.repo_info(repo_id, repo_type=repo_type, revision="v1.0").sha == v1
    assert api.list_repo_files(repo_id, repo_type=repo_type, revision="refs/tags/v1.0") == [".gitattributes", "f.txt"]
    api.create_branch(repo_id, branch="from-tag", revision="v1.0", repo_type=repo_type)
    api.create_branch(repo_id, branch="from-commit", revision=main, repo_type=repo_type)
    assert (read("from-tag"), read("from-commit")) == (b"v1", b"v0")

    for call in (lambda: api.create_branch(repo_id, branch="dev", repo_type=repo_type),
                 lambda: api.create_branch(repo_id, branch="v1.0", repo_type=repo_type),  # a tag has the name
                 lambda: api.create_tag(repo_id, tag="v1.0", repo_type=repo_type),
                 lambda: api.create_tag(repo_id, tag="dev", repo_type=repo_type)):  # a branch has the name
        with pytest.raises(HfHubHTTPError) as err:
            call()
        assert _status(err) == 409
    api.create_branch(repo_id, branch="dev", repo_type=repo_type, exist_ok=True)
    api.create_tag(repo_id, tag="v1.0", repo_type=repo_type, exist_ok=True)
    for bad in ("refs/pr/5", "refs/foo/bar", "a..b", "0" * 40):
        with pytest.raises(BadRequestError):
            api.create_branch(repo_id, branch=bad, repo_type=repo_type)
    with pytest.raises(BadRequestError):  # tags do not move
        api.upload_file(path_or_fileobj=b"x", path_in_repo="f.txt", repo_id=repo_id, repo_type=repo_type, revision="v1.0")
    with pytest.raises(RevisionNotFoundError):
        api.create_tag(repo_id, tag="v9", revision="no-such-branch", repo_type=repo_type)
    with pytest.raises(RevisionNotFoundError):  # upload to a branch that does not exist: create it first
        api.upload_file(path_or_fileobj=b"x", path_in_repo="f.txt", repo_id=repo_id, repo_type=repo_type,
                        revision="nowhere")

    api.delete_tag(repo_id, tag="v1.0", repo_type=repo_type)
    api.delete_branch(repo_id, branch="dev", repo_type=repo_type)
    assert api.list_repo_refs(repo_id, repo_type=repo_type).tags == []
    with pytest.raises(RevisionNotFoundError):
        read("dev")
    with pytest.raises(RevisionNotFoundError):
        api.delete_tag(repo_id, tag="v1.0", repo_type=repo_type)
    with pytest.raises(RevisionNotFoundError):
        api.delete_branch(repo_id, branch="dev", repo_type=repo_type)
    with pytest.raises(HfHubHTTPError) as err:
        api.delete_branch(repo_id, branch="main", repo_type=repo_type)
    assert _status(err) == 403


def test_refs_need_write_access(hub, dataset_repo):
    alice = HfApi(token=hub.alice)
    alice.create_tag(dataset_repo, tag="v1", repo_type="dataset")
    for token in (hub.bob, hub.carol):
        api = HfApi(token=token)
        for call in (lambda: api.create_branch(dataset_repo, branch="b", repo_type="dataset"),
                     lambda: api.create_tag(dataset_repo, tag="t", repo_type="dataset"),
                     lambda: api.delete_tag(dataset_repo, tag="v1", repo_type="dataset")):
            with pytest.raises(HfHubHTTPError) as err:
                call()
            assert _status(err) == 403
    with pytest.raises(HfHubHTTPError) as err:
        HfApi(token=False).create_branch(dataset_repo, branch="b", repo_type="dataset")
    assert _status(err) == 401
    assert [t.name for t in HfApi().list_repo_refs(dataset_repo, repo_type="dataset").tags] == ["v1"]
    pr = HfApi(token=hub.bob).upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=dataset_repo,
                                          repo_type="dataset", create_pr=True)
    refs = alice.list_repo_refs(dataset_repo, repo_type="dataset", include_pull_requests=True)
    assert [r.ref for r in refs.pull_requests] == [pr.pr_revision] and [t.name for t in refs.tags] == ["v1"]


# ---- HTTP caching: ETag, X-Linked-Etag, 304 -------------------------------------------------------------------


def test_etags_follow_the_hub(hub, dataset_repo):
    """An LFS file (tracked by .gitattributes, over 10 MiB, or binary) is named by its sha256, a regular one by its
    git blob id, as the Hub names them; tree listings and resolve agree."""
    big = b"0123456789abcdef\n" * (LFS_MIN_SIZE // 17 + 1)  # text, untracked: LFS by its size alone
    api = HfApi(token=hub.alice)
    api.create_commit(dataset_repo, [CommitOperationAdd("data/big.jsonl", big), CommitOperationAdd("small.jsonl", b"{}\n"),
                                     CommitOperationAdd("blob.dat", b"\0binary")],
                      commit_message="more files", repo_type="dataset")
    files = {f.path: f for f in api.list_repo_tree(dataset_repo, repo_type="dataset", recursive=True)
             if isinstance(f, RepoFile)}
    assert files["small.jsonl"].lfs is None and files["data/big.jsonl"].lfs.sha256 == hashlib.sha256(big).hexdigest()
    assert files["blob.dat"].lfs is not None and files["data/train-00000-of-00001.parquet"].lfs is not None
    big_meta = get_hf_file_metadata(hf_hub_url(dataset_repo, "data/big.jsonl", repo_type="dataset"))
    assert big_meta.etag == hashlib.sha256(big).hexdigest() and big_meta.size == len(big)
    small_meta = get_hf_file_metadata(hf_hub_url(dataset_repo, "small.jsonl", repo_type="dataset"))
    assert small_meta.etag == files["small.jsonl"].blob_id
    with httpx.Client(timeout=30) as http:
        shard = http.head(hf_hub_url(dataset_repo, "data/train-00000-of-00001.parquet", repo_type="dataset")).headers
        small = http.head(hf_hub_url(dataset_repo, "small.jsonl", repo_type="dataset")).headers
    assert shard["ETag"] == shard["X-Linked-Etag"] == f'"{hashlib.sha256(SHARD).hexdigest()}"'
    assert shard["X-Linked-Size"] == str(len(SHARD)) and "X-Linked-Etag" not in small


@pytest.mark.parametrize("repo_type", ["model", "dataset"])
def test_if_none_match_is_304(hub, repo_type):
    api = HfApi(token=hub.alice)
    repo_id = api.create_repo(hub.repo_id(), repo_type=repo_type).repo_id
    api.create_commit(repo_id, [CommitOperationAdd("notes.txt", b"text"), CommitOperationAdd("weights.bin", b"\0" * 64)],
                      commit_message="files", repo_type=repo_type)
    with httpx.Client(timeout=30) as http:
        for path in ("notes.txt", "weights.bin"):  # a regular file and an LFS one
            url = hf_hub_url(repo_id, path, repo_type=repo_type)
            first = http.get(url)
            etag, commit = first.headers["ETag"], first.headers["X-Repo-Commit"]
            for method, match in (("GET", etag), ("HEAD", etag), ("GET", "W/" + etag), ("GET", f'"other", {etag}'),
                                  ("GET", "*")):
                # If-None-Match is decided before Range: a matching one is 304 even for a range request.
                again = http.request(method, url, headers={"If-None-Match": match, "Range": "bytes=0-1"})
                assert again.status_code == 304 and again.content == b"", (path, method, match)
                assert again.headers["ETag"] == etag and again.headers["X-Repo-Commit"] == commit
            changed = http.get(url, headers={"If-None-Match": '"other"'})
            assert changed.status_code == 200 and changed.content == first.content
    downloads = api.repo_info(repo_id, repo_type=repo_type, expand=["downloads"]).downloads
    # Whole-file GETs only, two a file (a 304 is no download): of a dataset every data file counts, of a model
    # without config.json its weights.
    assert downloads == (4 if repo_type == "dataset" else 2)


# ---- parquet read back (needs pyarrow, and datasets for load_dataset) -----------------------------------------------


def _parquet_table() -> tuple[object, bytes]:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    table = pa.table({"id": ["acme/a", "acme/b", "acme/c"], "distance": [0.5, 1.5, 2.5]})
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return table, buffer.getvalue()


def _publish_table(hub, data: bytes) -> str:
    api = HfApi(token=hub.alice)
    repo_id = api.create_repo(hub.repo_id("acme"), repo_type="dataset").repo_id
    api.create_commit(repo_id, [CommitOperationAdd("data/train-00000-of-00001.parquet", data),
                                CommitOperationAdd("README.md", CARD.encode())], commit_message="table",
                      repo_type="dataset")
    api.create_tag(repo_id, tag="v1", repo_type="dataset")
    return repo_id


def test_parquet_table_reads_back_with_pyarrow(hub):
    table, data = _parquet_table()
    import pyarrow.parquet as pq

    repo_id = _publish_table(hub, data)
    path = hf_hub_download(repo_id, "data/train-00000-of-00001.parquet", repo_type="dataset", revision="v1",
                           cache_dir=hub.cache)
    assert pq.read_table(path).equals(table)


def test_parquet_table_loads_with_datasets(hub, tmp_path):
    table, data = _parquet_table()
    datasets = pytest.importorskip("datasets")
    repo_id = _publish_table(hub, data)
    with use_endpoint(hub.endpoint):  # again, now that datasets (which copies the endpoint at import) is imported
        loaded = datasets.load_dataset(repo_id, revision="v1", cache_dir=str(tmp_path / "datasets"))
    assert list(loaded) == ["train"] and loaded["train"].to_dict() == table.to_pydict()


def test_gitattributes_rules_follow_git():
    rules = LfsRules.parse("*.parquet filter=lfs diff=lfs merge=lfs -text\nsaved_model/**/* filter=lfs\n"
                           "keep/*.parquet -filter\n# *.txt filter=lfs\n*.tar.* filter=lfs\n")
    assert rules.tracks("data/train.parquet") and rules.tracks("train.parquet")
    assert not rules.tracks("keep/x.parquet")  # the last matching line wins
    assert rules.tracks("saved_model/a/b/c.pb") and not rules.tracks("other/saved_model/x")
    assert rules.tracks("x.tar.gz") and not rules.tracks("notes.txt")
    macro = LfsRules.parse("[attr]big filter=lfs diff=lfs merge=lfs -text\n/models/*.dat big\n")
    assert macro.tracks("models/a.dat") and not macro.tracks("x/models/a.dat") and not macro.tracks("big")
