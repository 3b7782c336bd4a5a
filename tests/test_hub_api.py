"""The local hub through the real huggingface_hub client: what a user of each call sees."""

from __future__ import annotations

import hashlib
import json
import logging
from concurrent.futures import ThreadPoolExecutor

import huggingface_hub
import numpy as np
import pytest
from huggingface_hub import (CommitOperationAdd, CommitOperationCopy, CommitOperationDelete, HfApi, HfFileSystem, ModelCard,
                             get_hf_file_metadata, get_session, hf_hub_download, hf_hub_url, metadata_update,
                             snapshot_download)
from huggingface_hub.errors import (BadRequestError, EntryNotFoundError, HfHubHTTPError, RepositoryNotFoundError,
                                    RevisionNotFoundError)
from huggingface_hub.utils import hf_raise_for_status
from packaging.version import Version
from safetensors.numpy import save as save_safetensors

from hf_probex.hub import LocalHub, use_endpoint
from hf_probex.hub.runner import RedactTokens

CARD = """---
license: apache-2.0
library_name: transformers
pipeline_tag: image-classification
base_model: acme/base-root
tags: [digits]
---

# A model
"""


def _weights() -> tuple[bytes, dict[str, np.ndarray]]:
    tensors = {"a.weight": np.arange(12, dtype=np.float32).reshape(3, 4),
               "b.bias": np.arange(5, dtype=np.float16)}
    return save_safetensors(tensors, metadata={"format": "np"}), tensors


def _make_model_folder(folder, card: str = CARD) -> bytes:
    folder.mkdir(parents=True, exist_ok=True)
    weights, _ = _weights()
    (folder / "model.safetensors").write_bytes(weights)
    (folder / "config.json").write_text(json.dumps({"model_type": "vit", "architectures": ["ViTForImageClassification"]}))
    (folder / "README.md").write_text(card)
    (folder / "unet").mkdir(exist_ok=True)
    (folder / "unet" / "notes.txt").write_text("nested file\n")
    return weights


@pytest.fixture
def model_repo(hub, tmp_path):
    """A repo of alice's org with a card, a config, weights and a nested file on main."""
    api = HfApi(token=hub.alice)
    repo_id = hub.repo_id("acme")
    api.create_repo(repo_id)
    weights = _make_model_folder(tmp_path / "model")
    api.upload_folder(folder_path=tmp_path / "model", repo_id=repo_id, commit_message="add model")
    return repo_id, weights


# ---- auth and repos -----------------------------------------------------------------------------------


def test_whoami_and_authentication(hub):
    me = HfApi(token=hub.alice).whoami()
    assert me["name"] == "alice" and [o["name"] for o in me["orgs"]] == ["acme"]
    assert me["auth"]["accessToken"]["role"] == "write"
    assert HfApi(token=hub.carol).whoami()["auth"]["accessToken"]["role"] == "read"
    with pytest.raises(HfHubHTTPError) as err:
        HfApi(token="hf_not_a_token").whoami()
    assert err.value.response.status_code == 401
    with pytest.raises(HfHubHTTPError) as err:
        HfApi(token=False).create_repo("alice/anonymous")
    assert err.value.response.status_code == 401


def test_namespace_permissions(hub):
    with pytest.raises(HfHubHTTPError) as err:
        HfApi(token=hub.bob).create_repo(hub.repo_id("acme"))  # bob is not in acme
    assert err.value.response.status_code == 403
    with pytest.raises(HfHubHTTPError) as err:
        HfApi(token=hub.carol).create_repo(hub.repo_id("carol"))  # read-only token
    assert err.value.response.status_code == 403
    repo_id = hub.repo_id("acme")
    HfApi(token=hub.alice).create_repo(repo_id)
    with pytest.raises(HfHubHTTPError) as err:  # bob may propose (a PR) but not push to main
        HfApi(token=hub.bob).upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=repo_id)
    assert err.value.response.status_code == 403


def test_repo_lifecycle(hub):
    api = HfApi(token=hub.alice)
    repo_id = hub.repo_id()
    url = api.create_repo(repo_id)
    assert url == f"{hub.endpoint}/{repo_id}" and url.repo_id == repo_id
    assert api.create_repo(repo_id, exist_ok=True).repo_id == repo_id
    with pytest.raises(HfHubHTTPError) as err:
        api.create_repo(repo_id)
    assert err.value.response.status_code == 409
    assert api.repo_exists(repo_id)
    assert api.list_repo_files(repo_id) == [".gitattributes"]  # the Hub's initial commit
    api.delete_repo(repo_id)
    assert not api.repo_exists(repo_id)
    with pytest.raises(RepositoryNotFoundError):
        api.delete_repo(repo_id)
    api.delete_repo(repo_id, missing_ok=True)


def test_private_repos_are_invisible_to_others(hub):
    alice, bob = HfApi(token=hub.alice), HfApi(token=hub.bob)
    repo_id = hub.repo_id("acme")
    alice.create_repo(repo_id, private=True)
    alice.upload_file(path_or_fileobj=b"secret", path_in_repo="s.txt", repo_id=repo_id)
    assert alice.model_info(repo_id).private is True
    for api in (bob, HfApi(token=False)):
        with pytest.raises(RepositoryNotFoundError):
            api.model_info(repo_id)
        assert not api.repo_exists(repo_id)
        assert repo_id not in [m.id for m in api.list_models(author="acme")]
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download(repo_id, "s.txt", token=hub.bob, cache_dir=hub.cache)
    assert repo_id in [m.id for m in alice.list_models(author="acme")]
    alice.update_repo_settings(repo_id, private=False)
    assert bob.model_info(repo_id).private is False


# ---- reading ------------------------------------------------------------------------------------------


def test_model_info_and_listings(hub, model_repo):
    repo_id, weights = model_repo
    api = HfApi(token=hub.alice)
    info = api.model_info(repo_id, files_metadata=True)
    sizes = {s.rfilename: s.size for s in info.siblings}
    assert sizes["model.safetensors"] == len(weights) and sizes["unet/notes.txt"] == len("nested file\n")
    assert info.card_data["base_model"] == "acme/base-root" and info.card_data["license"] == "apache-2.0"
    assert info.pipeline_tag == "image-classification" and info.library_name == "transformers"
    assert {"digits", "transformers", "safetensors", "license:apache-2.0", "base_model:acme/base-root",
            "base_model:finetune:acme/base-root"} <= set(info.tags)
    assert info.safetensors.parameters == {"F32": 12, "F16": 5} and info.safetensors.total == 17
    assert info.config["model_type"] == "vit"
    assert info.sha == api.list_repo_commits(repo_id)[0].commit_id
    assert sorted(api.list_repo_files(repo_id)) == [".gitattributes", "README.md", "config.json",
                                                     "model.safetensors", "unet/notes.txt"]
    top = {e.path: type(e).__name__ for e in api.list_repo_tree(repo_id)}
    assert top["unet"] == "RepoFolder" and top["README.md"] == "RepoFile" and "unet/notes.txt" not in top
    assert [e.path for e in api.list_repo_tree(repo_id, path_in_repo="unet")] == ["unet/notes.txt"]
    with pytest.raises(EntryNotFoundError):
        list(api.list_repo_tree(repo_id, path_in_repo="nowhere"))
    paths = api.get_paths_info(repo_id, ["README.md", "unet", "missing.txt"], expand=True)
    assert [p.path for p in paths] == ["README.md", "unet"]
    assert paths[0].last_commit.title == "add model"
    commits = api.list_repo_commits(repo_id)
    assert [c.title for c in commits] == ["add model", "initial commit"] and commits[0].authors == ["alice"]
    refs = api.list_repo_refs(repo_id)
    assert [(b.name, b.target_commit) for b in refs.branches] == [("main", info.sha)]


def test_downloads_and_file_metadata(hub, model_repo, tmp_path):
    repo_id, weights = model_repo
    sha = HfApi(token=hub.alice).model_info(repo_id).sha
    path = hf_hub_download(repo_id, "model.safetensors", token=hub.alice, cache_dir=hub.cache)
    assert open(path, "rb").read() == weights
    assert f"snapshots/{sha}/" in path.replace("\\", "/")  # cached under the commit the server reported
    meta = get_hf_file_metadata(hf_hub_url(repo_id, "model.safetensors"), token=hub.alice)
    # As on the Hub: an LFS file's ETag is its sha256 (.gitattributes tracks *.safetensors), a regular one's its git blob id.
    assert meta.commit_hash == sha and meta.size == len(weights) and meta.etag == hashlib.sha256(weights).hexdigest()
    config = get_hf_file_metadata(hf_hub_url(repo_id, "config.json"))
    assert config.etag == HfApi().get_paths_info(repo_id, ["config.json"])[0].blob_id and len(config.etag) == 40
    folder = snapshot_download(repo_id, token=hub.alice, local_dir=tmp_path / "snap")
    assert (tmp_path / "snap" / "unet" / "notes.txt").read_text() == "nested file\n"
    assert (tmp_path / "snap" / "model.safetensors").read_bytes() == weights and str(tmp_path / "snap") == folder
    # By commit id too, and the errors a user sees for what does not exist.
    assert open(hf_hub_download(repo_id, "README.md", revision=sha, cache_dir=hub.cache), encoding="utf-8").read() == CARD
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(repo_id, "README.md", revision="no-such-branch", cache_dir=hub.cache)
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(repo_id, "missing.txt", cache_dir=hub.cache)
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("acme/does-not-exist", "README.md", cache_dir=hub.cache)
    api = HfApi()
    assert api.file_exists(repo_id, "config.json") and not api.file_exists(repo_id, "nope.json")
    with pytest.raises(RevisionNotFoundError):
        api.model_info(repo_id, revision="0" * 40)


def test_range_reads_return_exactly_the_requested_bytes(hub, model_repo):
    repo_id, weights = model_repo
    url = hf_hub_url(repo_id, "model.safetensors")
    session = get_session()
    for header, expected in [("bytes=8-15", weights[8:16]), ("bytes=-4", weights[-4:]),
                             ("bytes=100-", weights[100:]), ("bytes=0-99999999", weights)]:
        response = session.get(url, headers={"Range": header})
        hf_raise_for_status(response)
        assert response.status_code == 206 and response.content == expected, header
        assert response.headers["Content-Length"] == str(len(expected))
    response = session.get(url, headers={"Range": f"bytes={len(weights)}-"})
    assert response.status_code == 416 and response.headers["Content-Range"] == f"bytes */{len(weights)}"

    # One tensor through the client's own range readers.
    api = HfApi()
    parsed = api.parse_safetensors_file_metadata(repo_id, "model.safetensors")
    assert parsed.tensors["a.weight"].shape == [3, 4] and parsed.metadata == {"format": "np"}
    repo_meta = api.get_safetensors_metadata(repo_id)
    assert repo_meta.parameter_count == {"F32": 12, "F16": 5}
    header_len = int.from_bytes(weights[:8], "little")
    start, end = parsed.tensors["a.weight"].data_offsets
    fs = HfFileSystem(skip_instance_cache=True)
    with fs.open(f"{repo_id}/model.safetensors", "rb") as handle:
        handle.seek(8 + header_len + start)
        data = handle.read(end - start)
    assert np.array_equal(np.frombuffer(data, dtype=np.float32).reshape(3, 4), _weights()[1]["a.weight"])
    assert sorted(fs.ls(repo_id, detail=False)) == sorted(f"{repo_id}/{p}" for p in
                                                           [".gitattributes", "README.md", "config.json",
                                                            "model.safetensors", "unet"])
    assert fs.cat(f"{repo_id}/unet/notes.txt") == b"nested file\n"
    assert fs.info(f"{repo_id}/model.safetensors")["size"] == len(weights)


def test_sharded_safetensors_metadata(hub):
    api = HfApi(token=hub.alice)
    repo_id = hub.repo_id()
    api.create_repo(repo_id)
    shards = {"model-00001-of-00002.safetensors": {"a": np.zeros((2, 3), np.float32)},
              "model-00002-of-00002.safetensors": {"b": np.zeros((4,), np.float16)}}
    index = {"metadata": {}, "weight_map": {name: shard for shard, tensors in shards.items() for name in tensors}}
    api.create_commit(repo_id, [CommitOperationAdd(shard, save_safetensors(t)) for shard, t in shards.items()] +
                      [CommitOperationAdd("model.safetensors.index.json", json.dumps(index).encode())],
                      commit_message="sharded")
    meta = api.get_safetensors_metadata(repo_id)
    assert meta.sharded and meta.parameter_count == {"F32": 6, "F16": 4}
    assert meta.weight_map == index["weight_map"]
    assert api.model_info(repo_id).safetensors.total == 10


def test_list_models_filters_sorts_and_expands(hub):
    api = HfApi(token=hub.alice)
    root, child, lora = hub.repo_id("acme"), hub.repo_id("acme"), hub.repo_id("acme")
    for repo_id in (root, child, lora):
        api.create_repo(repo_id)
    api.upload_file(path_or_fileobj=b"---\nlicense: mit\n---\n", path_in_repo="README.md", repo_id=root)
    api.upload_file(path_or_fileobj=f"---\nbase_model: {root}\n---\n".encode(), path_in_repo="README.md", repo_id=child)
    api.create_commit(lora, [CommitOperationAdd("README.md", f"---\nbase_model: {root}\n---\n".encode()),
                             CommitOperationAdd("pytorch_lora_weights.safetensors", save_safetensors(
                                 {"x.lora.down.weight": np.zeros((2, 2), np.float32)}))], commit_message="lora")
    assert sorted(m.id for m in api.list_models(filter=f"base_model:{root}")) == sorted([child, lora])
    assert [m.id for m in api.list_models(filter=f"base_model:adapter:{root}")] == [lora]
    assert [m.id for m in api.list_models(filter=f"base_model:finetune:{root}")] == [child]
    assert [m.id for m in api.list_models(filter=[f"base_model:{root}", "safetensors"])] == [lora]
    assert [m.id for m in api.list_models(search=root.split("/")[1])] == [root]
    assert len(list(api.list_models(author="acme", limit=2))) == 2
    newest = [m.id for m in api.list_models(author="acme", sort="last_modified", limit=3)]
    assert newest[0] == lora
    root_info = api.model_info(root, expand=["childrenModelCount", "baseModels"])
    assert root_info.children_model_count == 2 and root_info.base_models is None
    listed = next(iter(api.list_models(search=root.split("/")[1], expand=["childrenModelCount"])))
    assert listed.id == root and listed.children_model_count == 2
    lora_info = api.model_info(lora, expand=["baseModels", "tags"])
    assert lora_info.base_models == {"relation": "adapter", "models": [{"id": root}]}
    assert lora_info.siblings is None  # expand returns only what was asked
    full = next(iter(api.list_models(search=child.split("/")[1], full=True, cardData=True)))
    assert full.card_data["base_model"] == root and full.sha is not None


def test_downloads_likes_and_organisation_members(hub, model_repo):
    """What a bot ranks repos by (downloads and likes in listings) and who speaks for an organisation."""
    repo_id, _ = model_repo
    api = HfApi(token=hub.alice)
    other = hub.repo_id("acme")
    api.create_repo(other)
    api.upload_file(path_or_fileobj=b"x", path_in_repo="model.safetensors", repo_id=other)  # no config.json
    for _ in range(3):  # a download of a model with a config is a GET of config.json: HEADs and ranges are not
        hf_hub_download(repo_id, "config.json", cache_dir=hub.cache, force_download=True)
    hf_hub_download(repo_id, "README.md", cache_dir=hub.cache, force_download=True)
    HfApi().get_safetensors_metadata(repo_id)  # range reads of the header
    hf_hub_download(other, "model.safetensors", cache_dir=hub.cache)
    for token in (hub.alice, hub.bob, hub.bob):  # the Hub's like route (huggingface_hub has no like() any more)
        hf_raise_for_status(get_session().post(f"{hub.endpoint}/api/models/{repo_id}/like",
                                               headers={"authorization": f"Bearer {token}"}))
    info = api.model_info(repo_id, expand=["downloads", "likes"])
    assert (info.downloads, info.likes) == (3, 2)
    assert sorted(u.username for u in api.list_repo_likers(repo_id)) == ["alice", "bob"]
    HfApi(token=hub.bob).unlike(repo_id)
    listed = {m.id: (m.downloads, m.likes) for m in api.list_models(author="acme", cardData=True) if m.id in (repo_id, other)}
    assert listed == {repo_id: (3, 1), other: (1, 0)}
    assert [m.id for m in api.list_models(author="acme", sort="downloads") if m.id in (repo_id, other)] == [repo_id, other]
    with pytest.raises(HfHubHTTPError) as err:  # read tokens write nothing, likes included
        HfApi(token=hub.carol).unlike(repo_id)
    assert err.value.response.status_code == 403
    assert [u.username for u in api.list_organization_members("acme")] == ["alice"]
    with pytest.raises(HfHubHTTPError) as err:  # a user is not an organisation
        list(api.list_organization_members("bob"))
    assert err.value.response.status_code == 404


# ---- writing, pull requests, discussions ---------------------------------------------------------------


def test_create_commit_with_deletes_and_parent_commit(hub, model_repo):
    repo_id, _ = model_repo
    api = HfApi(token=hub.alice)
    head = api.model_info(repo_id).sha
    info = api.create_commit(repo_id, [CommitOperationAdd("new.txt", b"new"), CommitOperationDelete("unet/"),
                                       CommitOperationCopy("config.json", "configs/copy.json"),
                                       CommitOperationDelete("config.json")],
                             commit_message="reshape", parent_commit=head)
    assert info.oid == api.model_info(repo_id).sha and info.commit_url.endswith(f"/{repo_id}/commit/{info.oid}")
    assert sorted(api.list_repo_files(repo_id)) == [".gitattributes", "README.md", "configs/copy.json",
                                                     "model.safetensors", "new.txt"]
    copied = hf_hub_download(repo_id, "configs/copy.json", cache_dir=hub.cache)
    assert json.load(open(copied))["model_type"] == "vit"
    with pytest.raises(HfHubHTTPError) as err:  # head moved since: the Hub's conflict answer
        api.create_commit(repo_id, [CommitOperationAdd("late.txt", b"late")], commit_message="late",
                          parent_commit=head)
    assert err.value.response.status_code == 412
    assert "late.txt" not in api.list_repo_files(repo_id)


def test_pull_request_is_visible_on_its_ref_until_merged(hub, model_repo):
    repo_id, _ = model_repo
    alice, bob = HfApi(token=hub.alice), HfApi(token=hub.bob)
    info = bob.upload_file(path_or_fileobj=b"proposed", path_in_repo="proposal.txt", repo_id=repo_id,
                           commit_message="Propose a file", commit_description="please merge", create_pr=True)
    assert info.pr_url == f"{hub.endpoint}/{repo_id}/discussions/{info.pr_num}"
    assert info.pr_revision == f"refs/pr/{info.pr_num}"
    assert "proposal.txt" in alice.list_repo_files(repo_id, revision=info.pr_revision)
    assert "proposal.txt" not in alice.list_repo_files(repo_id)
    path = hf_hub_download(repo_id, "proposal.txt", revision=info.pr_revision, cache_dir=hub.cache)
    assert open(path, "rb").read() == b"proposed"
    prs = list(alice.get_repo_discussions(repo_id, discussion_type="pull_request"))
    assert [(p.num, p.title, p.author, p.status) for p in prs] == [(info.pr_num, "Propose a file", "bob", "open")]
    details = alice.get_discussion_details(repo_id, info.pr_num)
    assert details.target_branch == "refs/heads/main" and details.conflicting_files == []
    assert details.diff == ("diff --git a/proposal.txt b/proposal.txt\n--- /dev/null\n+++ b/proposal.txt\n"
                            "@@ -0,0 +1 @@\n+proposed\n\\ No newline at end of file\n")  # as git writes it
    assert [e.type for e in details.events] == ["comment", "commit"] and details.events[0].content == "please merge"
    refs = alice.list_repo_refs(repo_id, include_pull_requests=True)
    assert [r.ref for r in refs.pull_requests] == [info.pr_revision]
    with pytest.raises(HfHubHTTPError) as err:  # only the repo's owners merge
        bob.merge_pull_request(repo_id, info.pr_num)
    assert err.value.response.status_code == 403
    bob.comment_discussion(repo_id, info.pr_num, "ping")
    alice.merge_pull_request(repo_id, info.pr_num, comment="thanks")
    assert "proposal.txt" in alice.list_repo_files(repo_id)
    merged = alice.get_discussion_details(repo_id, info.pr_num)
    assert merged.status == "merged" and merged.merge_commit_oid == alice.model_info(repo_id).sha
    assert alice.list_repo_commits(repo_id)[0].title.startswith(f"Merge PR #{info.pr_num}")


def test_draft_pull_request_discussions_and_status(hub, model_repo):
    repo_id, _ = model_repo
    alice, bob = HfApi(token=hub.alice), HfApi(token=hub.bob)
    pr = bob.create_pull_request(repo_id, title="Fix the card", description="details follow")
    assert pr.is_pull_request and pr.status == "draft" and pr.git_reference == f"refs/pr/{pr.num}"
    bob.upload_file(path_or_fileobj=b"fix", path_in_repo="fix.txt", repo_id=repo_id, revision=pr.git_reference)
    assert alice.get_discussion_details(repo_id, pr.num).status == "open"
    with pytest.raises(HfHubHTTPError) as err:  # nobody else pushes to bob's PR
        HfApi(token=hub.carol).upload_file(path_or_fileobj=b"x", path_in_repo="x", repo_id=repo_id,
                                          revision=pr.git_reference)
    assert err.value.response.status_code == 403
    talk = bob.create_discussion(repo_id, title="A question", description="Which data?")
    assert not talk.is_pull_request and talk.num == pr.num + 1
    reply = alice.comment_discussion(repo_id, talk.num, "Digits.")
    assert reply.content == "Digits." and reply.author == "alice"
    assert alice.rename_discussion(repo_id, talk.num, "A question about data").new_title == "A question about data"
    closed = alice.change_discussion_status(repo_id, talk.num, "closed", comment="answered")
    assert closed.new_status == "closed"
    with pytest.raises(HfHubHTTPError) as err:  # carol neither wrote it nor owns the repo
        HfApi(token=hub.carol).change_discussion_status(repo_id, talk.num, "open")
    assert err.value.response.status_code == 403
    statuses = {d.num: d.status for d in alice.get_repo_discussions(repo_id)}
    assert statuses == {pr.num: "open", talk.num: "closed"}
    assert [d.num for d in alice.get_repo_discussions(repo_id, discussion_status="closed")] == [talk.num]
    assert [d.num for d in alice.get_repo_discussions(repo_id, author="bob", discussion_type="discussion")] == [talk.num]
    events = alice.get_discussion_details(repo_id, talk.num).events
    assert [e.type for e in events] == ["comment", "comment", "title-change", "status-change", "comment"]
    with pytest.raises(HfHubHTTPError) as err:
        alice.get_discussion_details(repo_id, 999)
    assert err.value.response.status_code == 404


def test_merge_conflict_is_refused(hub, model_repo):
    repo_id, _ = model_repo
    alice = HfApi(token=hub.alice)
    pr = alice.upload_file(path_or_fileobj=b"from the PR", path_in_repo="README.md", repo_id=repo_id, create_pr=True)
    alice.upload_file(path_or_fileobj=b"---\nlicense: mit\n---\non main", path_in_repo="README.md", repo_id=repo_id)
    assert alice.get_discussion_details(repo_id, pr.pr_num).conflicting_files == ["README.md"]
    with pytest.raises(HfHubHTTPError) as err:
        alice.merge_pull_request(repo_id, pr.pr_num)
    assert err.value.response.status_code == 409


# huggingface_hub 1.x posts ModelCard.validate (used by push_to_hub and metadata_update) to a hard-coded
# https://huggingface.co/api/validate-yaml; 2.x follows the configured endpoint.
card_validation_follows_endpoint = pytest.mark.skipif(
    Version(huggingface_hub.__version__) < Version("2"), reason="huggingface_hub 1.x validates cards on huggingface.co")


@card_validation_follows_endpoint
def test_model_card_push_and_load(hub, model_repo):
    repo_id, _ = model_repo
    card = ModelCard(CARD.replace("# A model", "# Rewritten"))
    card.push_to_hub(repo_id, token=hub.alice)  # validates through /api/validate-yaml first
    loaded = ModelCard.load(repo_id, token=hub.alice)
    assert "# Rewritten" in loaded.text and loaded.data.base_model == "acme/base-root"
    assert "model.safetensors" in HfApi().list_repo_files(repo_id)  # push_to_hub touched README.md only


@card_validation_follows_endpoint
def test_metadata_update(hub, model_repo):
    repo_id, _ = model_repo
    url = metadata_update(repo_id, {"datasets": ["mnist"]}, token=hub.alice)
    assert url.startswith(f"{hub.endpoint}/{repo_id}/commit/")
    assert HfApi().model_info(repo_id).card_data["datasets"] == ["mnist"]
    assert "dataset:mnist" in HfApi().model_info(repo_id).tags
    assert ModelCard.load(repo_id).data.datasets == ["mnist"]
    with pytest.raises(ValueError):  # metadata_update refuses to overwrite without overwrite=True
        metadata_update(repo_id, {"license": "mit"}, token=hub.alice)
    pr = metadata_update(repo_id, {"license": "mit"}, overwrite=True, create_pr=True, token=hub.bob)
    assert pr.pr_url == f"{hub.endpoint}/{repo_id}/discussions/{pr.pr_num}"
    assert HfApi().model_info(repo_id).card_data["license"] == "apache-2.0"  # main untouched until merged
    assert HfApi().model_info(repo_id, revision=pr.pr_revision).card_data["license"] == "mit"


def test_invalid_card_metadata_is_refused(hub, model_repo):
    repo_id, _ = model_repo
    api = HfApi(token=hub.alice)
    head = api.model_info(repo_id).sha
    with pytest.raises(ValueError, match="Invalid metadata"):  # the client asks /api/validate-yaml first
        api.upload_file(path_or_fileobj=b"---\nfoo: [\n---\n", path_in_repo="README.md", repo_id=repo_id)
    bad = {"key": "file", "value": {"path": "README.md", "content": "LS0tCi0gYQotLS0K", "encoding": "base64"}}
    response = _post_commit(hub, repo_id, [{"key": "header", "value": {"summary": "s"}}, bad], hub.alice)
    assert response.status_code == 400 and "Invalid metadata" in response.json()["error"]  # and /commit checks too
    assert api.model_info(repo_id).sha == head


def test_pytorch_mixin_push_and_from_pretrained(hub, tmp_path):
    torch = pytest.importorskip("torch")
    from huggingface_hub import PyTorchModelHubMixin

    class Tiny(torch.nn.Module, PyTorchModelHubMixin, tags=["hf-probex-test"]):
        def __init__(self, width: int = 3):
            super().__init__()
            self.layer = torch.nn.Linear(width, 2)

    torch.manual_seed(0)
    model = Tiny(width=5)
    repo_id = hub.repo_id()
    model.push_to_hub(repo_id, token=hub.alice)  # follows HF_ENDPOINT only: the fixture's patch matters
    loaded = Tiny.from_pretrained(repo_id, token=hub.alice, cache_dir=tmp_path / "c")
    assert loaded.layer.in_features == 5
    assert torch.equal(loaded.layer.weight, model.layer.weight)
    assert "hf-probex-test" in HfApi().model_info(repo_id).tags


# ---- bad input and security ---------------------------------------------------------------------------


def _post_commit(hub, repo_id: str, lines: list, token: str):
    body = b"".join((line if isinstance(line, bytes) else json.dumps(line).encode()) + b"\n" for line in lines)
    return get_session().post(f"{hub.endpoint}/api/models/{repo_id}/commit/main", content=body,
                              headers={"Authorization": f"Bearer {token}", "Content-Type": "application/x-ndjson"})


@pytest.mark.parametrize("lines", [
    [b"{not json"],
    [{"key": "file", "value": {"path": "a.txt", "content": "YQ==", "encoding": "base64"}}],  # no header
    [{"key": "header", "value": {"summary": "s"}}, {"key": "file", "value": {"path": "../evil", "content": "YQ=="}}],
    [{"key": "header", "value": {"summary": "s"}}, {"key": "file", "value": {"path": "/etc/x", "content": "YQ=="}}],
    [{"key": "header", "value": {"summary": "s"}}, {"key": "file", "value": {"path": "a\u0000b", "content": "YQ=="}}],
    [{"key": "header", "value": {"summary": "s"}}, {"key": "file", "value": {"path": "a", "content": "**"}}],
    [{"key": "header", "value": {"summary": "s"}}, {"key": "lfsFile", "value": {"path": "a", "oid": "0" * 64}}],
    [{"key": "header", "value": {"summary": "s"}}, {"key": "rename", "value": {"path": "a"}}],
    [{"key": "header", "value": {"summary": "s"}}, {"key": "file", "value": {"path": "ok.txt", "content": "YQ=="}},
     b"[1, 2"],  # a good line followed by a broken one: nothing at all is written
])
def test_malformed_commits_are_400_and_write_nothing(hub, lines):
    api = HfApi(token=hub.alice)
    repo_id = hub.repo_id()
    api.create_repo(repo_id)
    before = api.model_info(repo_id).sha
    response = _post_commit(hub, repo_id, lines, hub.alice)
    assert response.status_code == 400 and response.json()["error"]
    with pytest.raises(BadRequestError):
        hf_raise_for_status(response)
    assert api.model_info(repo_id).sha == before and api.list_repo_files(repo_id) == [".gitattributes"]


def test_malformed_json_and_bad_paths(hub):
    session, auth = get_session(), {"Authorization": f"Bearer {hub.alice}"}
    response = session.post(f"{hub.endpoint}/api/repos/create", content=b"{oops", headers=auth)
    assert response.status_code == 400 and "Malformed JSON" in response.json()["error"]
    repo_id = hub.repo_id()
    HfApi(token=hub.alice).create_repo(repo_id)
    response = session.post(f"{hub.endpoint}/api/models/{repo_id}/preupload/main", headers=auth,
                            json={"files": [{"path": "../../etc/passwd", "size": 1, "sample": ""}]})
    assert response.status_code == 400
    response = session.get(f"{hub.endpoint}/{repo_id}/resolve/main/..%2F..%2Frepo.json")
    assert response.status_code == 404 and response.headers["X-Error-Code"] == "EntryNotFound"


def test_uploads_over_the_limit_are_413(tmp_path, hub):
    users = hub.root.parent / "users.yaml"
    with LocalHub(tmp_path / "small", users_file=users, max_upload_bytes=4096) as small, use_endpoint(small.endpoint):
        api = HfApi(token=hub.alice)
        api.create_repo("alice/limited")
        api.upload_file(path_or_fileobj=b"x" * 100, path_in_repo="small.bin", repo_id="alice/limited")
        with pytest.raises(HfHubHTTPError) as err:  # refused at preupload, from the declared size
            api.upload_file(path_or_fileobj=b"x" * 10_000, path_in_repo="big.bin", repo_id="alice/limited")
        assert err.value.response.status_code == 413
        big = {"key": "file", "value": {"path": "big.bin", "content": "eHh4" * 2000, "encoding": "base64"}}
        response = _post_commit(small, "alice/limited", [{"key": "header", "value": {"summary": "s"}}, big], hub.alice)
        assert response.status_code == 413
        assert api.list_repo_files("alice/limited") == [".gitattributes", "small.bin"]


def test_tokens_never_reach_the_logs(hub, caplog):
    caplog.set_level(logging.DEBUG)
    api = HfApi(token=hub.alice)
    repo_id = hub.repo_id()
    api.create_repo(repo_id)
    api.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=repo_id)
    with pytest.raises(HfHubHTTPError):
        HfApi(token="hf_wrong_secret_value").whoami()
    get_session().get(f"{hub.endpoint}/api/models/{repo_id}?token={hub.bob}")  # a token where it does not belong
    # Only the server's records: the client's own debug log (httpx2) prints the URLs it requests.
    server = [r for r in caplog.records if r.name.startswith("uvicorn")]
    assert any(r.name == "uvicorn.access" for r in server), "the access log was not captured"
    assert any("token=***" in r.getMessage() for r in server)
    for secret in (hub.alice, hub.bob, "hf_wrong_secret_value"):
        assert all(secret not in r.getMessage() for r in server)


def test_redaction_masks_every_token_shape():
    real_shaped = "hf_" + "Ab1" * 12
    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, '%s - "%s" %s',
                               ("127.0.0.1", f"GET /x?token=abc&access_token=def&k={real_shaped}", 200), None)
    RedactTokens().filter(record)
    message = record.getMessage()
    assert message == '127.0.0.1 - "GET /x?token=***&access_token=***&k=***" 200'
    record = logging.LogRecord("hf_probex.hub", logging.INFO, __file__, 1, "Authorization: Bearer abc.def", (), None)
    RedactTokens().filter(record)
    assert record.getMessage() == "Authorization: Bearer ***"


def test_concurrent_uploads_all_land(hub):
    api = HfApi(token=hub.alice)
    repo_id = hub.repo_id()
    api.create_repo(repo_id)
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda i: api.upload_file(path_or_fileobj=str(i).encode(), path_in_repo=f"f{i}.txt",
                                                repo_id=repo_id), range(6)))
    assert sorted(api.list_repo_files(repo_id)) == sorted([".gitattributes"] + [f"f{i}.txt" for i in range(6)])
    assert len(api.list_repo_commits(repo_id)) == 7


def test_restart_keeps_everything(tmp_path, hub):
    users, root = hub.root.parent / "users.yaml", tmp_path / "persistent"
    with LocalHub(root, users_file=users) as first, use_endpoint(first.endpoint):
        api = HfApi(token=hub.alice)
        api.create_repo("acme/kept", private=True)
        main = api.upload_file(path_or_fileobj=b"v1", path_in_repo="f.txt", repo_id="acme/kept")
        pr = HfApi(token=hub.alice).upload_file(path_or_fileobj=b"v2", path_in_repo="f.txt", repo_id="acme/kept",
                                                create_pr=True)
        api.create_discussion("acme/kept", title="Still here?")
    with LocalHub(root, users_file=users) as second, use_endpoint(second.endpoint):
        api = HfApi(token=hub.alice)
        info = api.model_info("acme/kept")
        assert info.sha == main.oid and info.private
        assert api.list_repo_files("acme/kept", revision=pr.pr_revision) == [".gitattributes", "f.txt"]
        path = hf_hub_download("acme/kept", "f.txt", revision=pr.pr_revision, token=hub.alice,
                               cache_dir=tmp_path / "c")
        assert open(path, "rb").read() == b"v2"
        path = hf_hub_download("acme/kept", "f.txt", token=hub.alice, cache_dir=tmp_path / "c")
        assert open(path, "rb").read() == b"v1"
        titles = sorted(d.title for d in api.get_repo_discussions("acme/kept"))
        assert titles == ["Still here?", "Upload f.txt with huggingface_hub"]
        api.merge_pull_request("acme/kept", pr.pr_num)
        with pytest.raises(RepositoryNotFoundError):
            HfApi(token=hub.bob).model_info("acme/kept")
