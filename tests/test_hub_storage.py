"""The local hub's storage and derived metadata, below HTTP: atomicity, locking, content addressing."""

from __future__ import annotations

import threading

import pytest

from hf_probex.hub import errors
from hf_probex.hub.catalog import relation_of
from hf_probex.hub.discussions import Discussions, three_way_merge
from hf_probex.hub.storage import Delete, Put, Storage, check_path, check_repo_id


@pytest.fixture
def storage(tmp_path):
    store = Storage(tmp_path / "root")
    store.create_repo("acme/model", private=False, author="alice")
    return store


def _put(storage: Storage, path: str, data: bytes) -> Put:
    return Put(path, storage.put_blob(data))


def test_new_repo_has_the_hub_initial_commit(storage):
    head = storage.resolve("acme/model", "main")
    assert list(head.tree) == [".gitattributes"] and head.parents == []
    with pytest.raises(errors.Conflict):
        storage.create_repo("acme/model", private=False, author="alice")


def test_commits_are_content_addressed_and_blobs_shared(storage):
    storage.create_repo("acme/other", private=True, author="alice")
    a = storage.put_blob(b"same bytes")
    b = storage.put_blob(b"same bytes")
    assert a == b and a.oid == "7058d43c6cdc6ce6bb880535fd9efd0711eeb201"  # `git hash-object` of the bytes
    with storage.lock("acme/model"):
        commit = storage.commit_operations("acme/model", "refs/heads/main", [Put("x.bin", a)], summary="add",
                                           description="", author="alice")
    assert storage.resolve("acme/model", commit.id) == commit
    assert len(commit.id) == 40
    with pytest.raises(errors.RevisionNotFound):  # another repo's commit is not a revision of this one
        storage.resolve("acme/other", commit.id)


def test_a_recreated_repo_does_not_serve_the_old_ones_commits(storage):
    old = storage.resolve("acme/model", "main")
    storage.delete_repo("acme/model")
    with pytest.raises(errors.RepoNotFound):
        storage.resolve("acme/model", "main")
    storage.create_repo("acme/model", private=False, author="alice")
    with pytest.raises(errors.RevisionNotFound):
        storage.resolve("acme/model", old.id)


def test_a_crash_before_the_ref_moves_leaves_the_previous_commit(storage, monkeypatch):
    before = storage.resolve("acme/model", "main")

    def crash(*args, **kwargs):
        raise OSError("simulated crash while moving the ref")

    monkeypatch.setattr(storage, "set_ref", crash)
    with pytest.raises(OSError), storage.lock("acme/model"):
        storage.commit_operations("acme/model", "refs/heads/main", [_put(storage, "a.txt", b"a")], summary="lost",
                                  description="", author="alice")
    monkeypatch.undo()
    assert storage.resolve("acme/model", "main") == before
    with storage.lock("acme/model"):  # and the repo still takes commits
        storage.commit_operations("acme/model", "refs/heads/main", [_put(storage, "a.txt", b"a")], summary="ok",
                                  description="", author="alice")
    assert "a.txt" in storage.resolve("acme/model", "main").tree


def test_stale_parent_commit_is_refused(storage):
    first = storage.resolve("acme/model", "main").id
    with storage.lock("acme/model"):
        storage.commit_operations("acme/model", "refs/heads/main", [_put(storage, "a", b"1")], summary="1",
                                  description="", author="alice", parent_commit=first)
        with pytest.raises(errors.StaleParent):
            storage.commit_operations("acme/model", "refs/heads/main", [_put(storage, "b", b"2")], summary="2",
                                      description="", author="alice", parent_commit=first)


def test_concurrent_commits_are_serialized(storage):
    discussions = Discussions(storage)

    def commit(i: int) -> None:
        discussions.commit("acme/model", "main", [_put(storage, f"f{i}.txt", str(i).encode())], summary=f"c{i}",
                           description="", author="alice", parent_commit=None, create_pr=False,
                           may_write_revision=True)

    threads = [threading.Thread(target=commit, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    head = storage.resolve("acme/model", "main")
    assert {f"f{i}.txt" for i in range(8)} <= set(head.tree)  # no commit lost another's file
    assert len(storage.history("acme/model", head)) == 9


def test_deletes_and_name_clashes(storage):
    with storage.lock("acme/model"):
        storage.commit_operations("acme/model", "refs/heads/main",
                                  [_put(storage, "unet/a.bin", b"a"), _put(storage, "unet/b.bin", b"b")],
                                  summary="add", description="", author="alice")
        with pytest.raises(errors.BadRequest):
            storage.commit_operations("acme/model", "refs/heads/main", [_put(storage, "unet", b"x")], summary="x",
                                      description="", author="alice")
        with pytest.raises(errors.EntryNotFound):
            storage.commit_operations("acme/model", "refs/heads/main", [Delete("nope.txt")], summary="x",
                                      description="", author="alice")
        storage.commit_operations("acme/model", "refs/heads/main", [Delete("unet", folder=True)], summary="rm",
                                  description="", author="alice")
    assert list(storage.resolve("acme/model", "main").tree) == [".gitattributes"]


def test_storage_survives_a_new_instance(storage):
    with storage.lock("acme/model"):
        commit = storage.commit_operations("acme/model", "refs/heads/main", [_put(storage, "a", b"1")],
                                           summary="1", description="", author="alice")
    reopened = Storage(storage.root)
    assert reopened.resolve("acme/model", "main") == commit
    assert [r.repo_id for r in reopened.list_repos()] == ["acme/model"]


def test_each_repo_type_has_its_own_repos_over_shared_objects(storage):
    datasets = storage.of("dataset")
    datasets.create_repo("acme/model", private=True, author="alice")  # the model's id, another repo
    assert b"*.parquet filter=lfs" in datasets.read_blob(datasets.resolve("acme/model", "main").tree[".gitattributes"]["sha256"])
    assert datasets.repo("acme/model").private and not storage.repo("acme/model").private
    assert datasets.repo_dir("acme/model") != storage.repo_dir("acme/model")
    assert datasets.put_blob(b"shared").sha256 == storage.put_blob(b"shared").sha256
    assert storage.blob_path(storage.put_blob(b"shared").sha256).is_file()
    datasets.delete_repo("acme/model")
    assert [r.repo_id for r in storage.list_repos()] == ["acme/model"] and datasets.list_repos() == []
    with pytest.raises(ValueError, match="unknown repo type"):
        storage.of("space")


def test_branches_and_tags(storage):
    main = storage.resolve("acme/model", "main")
    storage.create_ref("acme/model", "refs/tags/v1", main.id)
    storage.create_ref("acme/model", "refs/heads/dev", main.id)
    with storage.lock("acme/model"):
        moved = storage.commit_operations("acme/model", "refs/heads/dev", [_put(storage, "a", b"1")], summary="1",
                                          description="", author="alice")
    assert storage.resolve("acme/model", "v1") == main and storage.resolve("acme/model", "refs/tags/v1") == main
    assert storage.resolve("acme/model", "dev") == moved
    assert storage.find_ref("acme/model", "v1") == "refs/tags/v1" and storage.find_ref("acme/model", "dev") == "refs/heads/dev"
    for ref in ("refs/heads/v1", "refs/tags/dev", "refs/tags/v1"):  # one name, one ref
        with pytest.raises(errors.Conflict):
            storage.create_ref("acme/model", ref, main.id)
    for name in ("a/b", "..", "a..b", "0" * 40, "-x", ""):
        with pytest.raises(errors.BadRequest):
            storage.create_ref("acme/model", f"refs/heads/{name}", main.id)
    with pytest.raises(errors.RevisionNotFound):  # a commit of no repo
        storage.create_ref("acme/model", "refs/tags/v2", "f" * 40)
    with pytest.raises(errors.Forbidden):
        storage.delete_ref("acme/model", "refs/heads/main")
    storage.delete_ref("acme/model", "refs/tags/v1")
    with pytest.raises(errors.RevisionNotFound):
        storage.delete_ref("acme/model", "refs/tags/v1")
    with pytest.raises(errors.RevisionNotFound):
        storage.resolve("acme/model", "v1")
    assert set(storage.refs("acme/model")) == {"refs/heads/main", "refs/heads/dev"}


@pytest.mark.parametrize("path", ["../x", "a/../b", "/etc/passwd", "a\x00b", "a//b", "./a", "a\\b", ""])
def test_bad_paths_are_rejected(path):
    with pytest.raises(errors.BadRequest):
        check_path(path)


@pytest.mark.parametrize("repo_id", ["noslash", "a/b/c", "../x", "a/-x", "a/x--y", "api/x", "a/x.git"])
def test_bad_repo_ids_are_rejected(repo_id):
    with pytest.raises(errors.BadRequest):
        check_repo_id(repo_id)


@pytest.mark.parametrize(("card", "files", "config", "expected"), [
    ({"base_model": "a/b"}, ["model.safetensors"], None, "finetune"),
    ({"base_model": "a/b"}, ["pytorch_lora_weights.safetensors"], None, "adapter"),
    ({"base_model": "a/b"}, ["adapter_config.json", "adapter_model.safetensors"], None, "adapter"),
    ({"base_model": ["a/b", "c/d"]}, ["model.safetensors"], None, "merge"),
    ({"base_model": "a/b"}, ["model-Q4_K_M.gguf"], None, "quantized"),
    ({"base_model": "a/b"}, ["model.safetensors"], {"quantization_config": {"bits": 4}}, "quantized"),
    ({"base_model": "a/b", "base_model_relation": "adapter"}, ["model.safetensors"], None, "adapter"),
])
def test_relation_rules(card, files, config, expected):
    assert relation_of(card, files, config) == expected


def test_three_way_merge_applies_the_pr_and_finds_conflicts():
    a, b, c = ({"sha256": x, "size": 1, "oid": x} for x in "abc")
    fork = {"keep": a, "edit": a, "gone": a, "both": a}
    head = {"keep": a, "edit": b, "new": b, "both": b}  # the PR edits, adds, deletes, and edits "both"
    base = {"keep": a, "edit": a, "gone": a, "both": c, "main-only": c}  # main edited "both" too
    merged, changed, conflicts = three_way_merge(fork, head, base)
    assert changed == ["both", "edit", "gone", "new"] and conflicts == ["both"]
    assert merged["edit"] == b and merged["new"] == b and "gone" not in merged and merged["main-only"] == c
