"""hf_probex.members on the tiny zoo behind the local hub: a tree's members by cards, and by weights for the models
whose card does not name their base (or that have no card), through the real huggingface_hub client."""

from __future__ import annotations

import pytest
from huggingface_hub import HfApi

from hf_probex.bot import HubClient
from hf_probex.cli import main
from hf_probex.errors import RepoNotFoundError
from hf_probex.members import Member, tree_members, walk_tree, weight_router

#: Card styles of the zoo (hf_probex.zoo.plan.CARD_STYLES) whose card names the model's base.
NAMES_ITS_BASE = ("complete", "no_data")


def children(zoo, tree: str) -> list:
    return [s for s in zoo.specs(tree) if s.role == "child"]


@pytest.fixture
def client(zoo_hub):
    return HubClient(HfApi(endpoint=zoo_hub.endpoint, token=zoo_hub.bob))


def test_an_organisation_scan_adds_the_models_cards_do_not_reach(client, tiny_zoo, experts):
    root = tiny_zoo.trees["sd"]["root_repo_id"]
    members = tree_members(client, root, authors=["probex-zoo-sd"], router=weight_router(experts))
    found = {m.repo_id: m for m in members}
    lora = children(tiny_zoo, "sd")
    assert set(found) == {s.repo_id for s in lora}  # every LoRA, and not the root
    by_weights = {s.repo_id for s in lora if s.card not in NAMES_ITS_BASE}
    assert by_weights and {r for r, m in found.items() if m.found_by == "weights"} == by_weights
    assert [m.repo_id for m in members if m.found_by == "card"] == walk_tree(client, root)
    member = found[sorted(by_weights)[0]]
    assert "shapes" in member.evidence and member.confidence == 0.5  # a LoRA is placed by its modules' shapes
    assert all(m.evidence.startswith("card base_model: ") and m.confidence == 1.0 for m in members if m.found_by == "card")


def test_routing_keeps_out_the_models_of_another_tree(client, tiny_zoo, experts):
    """vit and vit-twin share the architecture: a scan of both organisations keeps only vit's models, by weights."""
    root = tiny_zoo.trees["vit"]["root_repo_id"]
    scanned = ("probex-zoo-vit", "probex-zoo-vit-twin")
    members = tree_members(client, root, authors=scanned, router=weight_router(experts))
    # The session hub also holds other tests' repos whose cards name this root: only the scanned ones matter here.
    assert {m.repo_id for m in members if m.repo_id.split("/")[0] in scanned} == \
        {s.repo_id for s in children(tiny_zoo, "vit")}


def test_a_search_or_a_list_of_ids_finds_a_model_without_its_base(client, tiny_zoo, experts):
    root = tiny_zoo.trees["resnet"]["root_repo_id"]
    lost = [s for s in children(tiny_zoo, "resnet") if s.card not in NAMES_ITS_BASE]
    router = weight_router(experts)
    found = tree_members(client, root, search=lost[0].repo_id.split("/")[1], router=router)
    assert Member(lost[0].repo_id, "weights", found[-1].evidence, found[-1].confidence, found[-1].sha) in found
    assert found[-1].sha == client.head(lost[0].repo_id)  # the commit the search listing showed
    listed = tree_members(client, root, candidates=[s.repo_id for s in lost] + ["probex-zoo-vit/vit-root", root],
                          router=router)
    assert [m.repo_id for m in listed if m.found_by == "weights"] == [s.repo_id for s in lost]


def test_a_root_that_does_not_exist_is_an_error(client):
    with pytest.raises(RepoNotFoundError, match="nobody/nothing was not found"):
        tree_members(client, "nobody/nothing")


def test_bot_run_says_how_many_members_cards_and_weights_found(zoo_hub, tiny_zoo, experts, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_PROBEX_CACHE", str(tmp_path))
    experts.save(tmp_path / "experts.json")  # the default registry `bot run` routes with
    root = tiny_zoo.trees["sd"]["root_repo_id"]
    lora = children(tiny_zoo, "sd")
    by_weights = sum(s.card not in NAMES_ITS_BASE for s in lora)
    assert main(["bot", "run", "--tree", root, "--author", "probex-zoo-sd", "--dry-run", "--limit", "0",
                 "--token", zoo_hub.bob, "--quiet"]) == 0
    out = capsys.readouterr().out
    assert (f"tree {root}: {len(lora)} members listed on the Hub, {len(lora) - by_weights} found by cards, {by_weights} "
            f"by weights" in out)
