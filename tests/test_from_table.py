"""`train --from-table` (issue 15, item 3): the tiny zoo's LoRA tree in a local hub of this module's own, scanned and
published as a tree table through the real huggingface_hub client, then an expert trained by the CLI on the table's
documented members only: rows documented by their card's instance_prompt, never by the LoRA file's metadata (where the
zoo writes its truth for every member); and a classifier tree's expert from the members whose config.json names their
classes. The config, card and JSON report record the table; bad inputs are one-line errors."""

from __future__ import annotations

import json

import pytest

from conftest import HUB_USERS_YAML
from hf_probex.cli import main
from hf_probex.scan.table import Label, ScanRow
from hf_probex.tableset import DOCUMENTING_SOURCES, documented_labels, is_file_metadata, table_split

TOKEN = "hf_tables_write_token"
TABLE = "tables/sd-tree-table"
VIT_TABLE = "tables/vit-tree-table"
#: Card styles of the zoo (hf_probex.zoo.plan.CARD_STYLES) whose LoRA card carries the instance_prompt.
DOCUMENTED_STYLES = ("complete", "no_base_model")
METADATA = "pytorch_lora_weights.safetensors metadata instance_prompt"


def test_only_what_owners_wrote_documents_a_member():
    lora = ScanRow("a/lora", family="sd-lora", labels=[Label("a cat", METADATA), Label("a dog", "card widget")])
    assert documented_labels(lora, "lora") == (("a dog",), "card widget")
    lora.labels.insert(0, Label("a cat", "card instance_prompt"))
    assert documented_labels(lora, "lora") == (("a cat",), "card instance_prompt")  # the most trusted source first
    only_metadata = ScanRow("a/m", family="sd-lora", labels=[Label("a cat", METADATA)])
    assert documented_labels(only_metadata, "lora") == ((), None)
    assert documented_labels(only_metadata, "lora", sources=[METADATA]) == ((), None)  # refused even when asked for
    assert is_file_metadata(METADATA) and not any(is_file_metadata(s) for v in DOCUMENTING_SOURCES.values() for s in v)
    classifier = ScanRow("a/c", family="vit", labels=[Label("3", "config.json id2label"), Label("7", "config.json id2label"),
                                                      Label("mnist", "card datasets")])
    assert documented_labels(classifier, "classifier") == (("3", "7"), "config.json id2label")
    ids = [f"user/model-{i}" for i in range(2000)]
    assert [table_split(i, 0.2) for i in ids] == [table_split(i, 0.2) for i in ids]  # deterministic
    assert 0.17 < sum(table_split(i, 0.2) == "test" for i in ids) / len(ids) < 0.23
    assert {table_split(i, 0.0) for i in ids} == {"train"}


@pytest.fixture(scope="module")
def table_hub(tiny_zoo, experts, tmp_path_factory):
    """A local hub of this module's own with the tiny zoo's sd and vit trees imported and their tree tables published at
    TABLE and VIT_TABLE."""
    from huggingface_hub import constants

    from hf_probex.hub import LocalHub, use_endpoint
    from hf_probex.hub.importer import import_zoo
    from hf_probex.scan import scan_tree

    folder = tmp_path_factory.mktemp("table-hub")
    (folder / "users.yaml").write_text(HUB_USERS_YAML.replace("users:\n", f"users:\n  tables: {{tokens: [{TOKEN}]}}\n"))
    import_zoo(tiny_zoo.root, folder / "root", trees=["sd", "vit"])
    cache, token_path = constants.HF_HUB_CACHE, constants.HF_TOKEN_PATH
    constants.HF_HUB_CACHE, constants.HF_TOKEN_PATH = str(folder / "hf-cache"), str(folder / "no-token")
    try:
        with LocalHub(folder / "root", users_file=folder / "users.yaml") as server, use_endpoint(server.endpoint):
            sd = tiny_zoo.trees["sd"]
            scan_tree(sd["root_repo_id"], to=TABLE, out=folder / "scan", experts=experts, token=TOKEN,
                      authors=[sd["org"]])
            scan_tree(tiny_zoo.trees["vit"]["root_repo_id"], to=VIT_TABLE, out=folder / "vit-scan", experts=experts,
                      token=TOKEN)
            yield server
    finally:
        constants.HF_HUB_CACHE, constants.HF_TOKEN_PATH = cache, token_path


@pytest.fixture(scope="module")
def trained(table_hub, tmp_path_factory):
    """`hf-probex train --from-table TABLE --propose --json`, once for the module: (exit status, stdout, expert folder,
    weight set); the JSON report is `report.json` beside the expert folder."""
    import contextlib
    import io

    from hf_probex.experts.training.harness import candidate_layers
    from hf_probex.tableset import open_table_weight_set

    weights = open_table_weight_set(TABLE, "sd", token=TOKEN)
    layer = next(iter(candidate_layers(weights, "sd")))  # one module: `--layer auto` sweeps them all (slow here)
    out = tmp_path_factory.mktemp("expert") / "sd"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        status = main(["train", "--from-table", TABLE, "--tree", "sd", "--layer", layer, "--folds", "8", "--epochs", "5",
                       "--out", str(out), "--token", TOKEN, "--propose", "--json-out", str(out.parent / "report.json")])
    return status, stdout.getvalue(), out, weights


def test_the_records_come_only_from_documented_rows(trained, tiny_zoo):
    *_, weights = trained
    specs = {s.repo_id: s for s in tiny_zoo.specs("sd") if s.role == "child"}
    documented = {r for r, s in specs.items() if s.card in DOCUMENTED_STYLES}
    assert documented and documented != set(specs)
    assert {r.model_id for r in weights.records} == documented
    assert {row.repo_id for row in weights.undocumented} == set(specs) - documented
    assert weights.metadata_only == len(specs) - len(documented)  # every undocumented LoRA has the metadata label
    for record in weights.records:
        assert record.labels == (specs[record.model_id].concept["prompt"],) and record.kind == "lora"
        assert weights.label_sources[record.model_id] == "card instance_prompt"
        assert (record.path / "pytorch_lora_weights.safetensors").is_file()
        assert not any(p.suffix in (".bin", ".pt") for p in record.path.iterdir())
    assert weights.root == tiny_zoo.trees["sd"]["root_repo_id"] and len(weights.commit) == 40


def test_the_expert_records_its_table_and_proposes_for_the_undocumented(trained, table_hub):
    from hf_probex.experts.hub import Expert

    status, out, folder, weights = trained
    assert status == 0, out
    config = json.loads((folder / "config.json").read_text())
    record = config["trained_from"]
    assert (record["table"], record["commit"], record["documented"]) == (TABLE, weights.commit, len(weights.records))
    assert record["trained"] + record["held_out"] == record["documented"]
    assert record["undocumented"] == len(weights.undocumented) and record["sources"] == list(DOCUMENTING_SOURCES["lora"])
    assert config["calibration"] and config["root"] == weights.root
    assert f"[{TABLE}](/datasets/{TABLE})" in (folder / "README.md").read_text()
    assert Expert.from_pretrained(folder).trained_from == record  # the config passes the bounds check
    assert f"trained mvprobe on {record['trained']} documented members of sd" in out
    assert record["trained"] < 8 and f"cross-validating with {record['trained']} folds instead of 8" in out  # not an error
    assert f"proposals for the {len(weights.undocumented)} undocumented members" in out
    assert all(f"  {row.repo_id}: " in out for row in weights.undocumented)
    report = json.loads((folder.parent / "report.json").read_text())
    assert report["trained_from"] == record and report["calibration"] == config["calibration"]
    assert report["held_out"]["models"] == record["held_out"]
    assert {p["repo_id"] for p in report["proposals"]} == {row.repo_id for row in weights.undocumented}
    for proposal in report["proposals"]:
        assert proposal["reason"] and (proposal["value"] is None) == (proposal["confidence"] is None)
        assert f"  {proposal['repo_id']}: " + ("abstains" if proposal["value"] is None else "trained_on") in out


def test_a_classifier_tree_trains_on_the_members_whose_config_names_their_classes(table_hub, tiny_zoo, tmp_path, capsys):
    from hf_probex.experts.training.harness import candidate_layers
    from hf_probex.tableset import open_table_weight_set

    specs = {s.repo_id: s for s in tiny_zoo.specs("vit") if s.role == "child"}
    weights = open_table_weight_set(VIT_TABLE, "vit", token=TOKEN, held_out=0.0)
    named = {r for r, s in specs.items() if s.named_labels}
    assert {r.model_id for r in weights.records} == named and weights.kind == "classifier"
    for record in weights.records:  # the class names, in config.json's order, and the files an expert reads
        assert record.labels == tuple(specs[record.model_id].labels) and (record.path / "config.json").is_file()
    out = tmp_path / "vit"
    layer = next(iter(candidate_layers(weights, "vit")))
    assert main(["train", "--from-table", VIT_TABLE, "--tree", "vit", "--layer", layer, "--method", "ridge",
                 "--folds", "2", "--held-out", "0", "--out", str(out), "--token", TOKEN,
                 "--json-out", str(tmp_path / "vit.json")]) == 0, capsys.readouterr()
    record = json.loads((tmp_path / "vit.json").read_text())["trained_from"]
    assert (record["table"], record["trained"], record["sources"][0]) == (VIT_TABLE, len(named), "config.json id2label")
    assert json.loads((out / "config.json").read_text())["trained_from"] == record


def test_train_help_names_the_table_options(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    help_text = capsys.readouterr().out
    assert all(option in help_text for option in ("--from-table REPO_ID", "--held-out", "--label-source", "--propose",
                                                  "--json-out FILE"))


def test_bad_tables_are_one_line_errors(table_hub, tmp_path, capsys, monkeypatch):
    def error(*args: str) -> str:
        assert main(["train", "--tree", "sd", "--layer", "x", "--out", str(tmp_path / "e"), "--token", TOKEN,
                     *args]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1, lines
        return lines[0]

    assert "tables/nothing is not a tree table" in error("--from-table", "tables/nothing")
    assert "no member documented" in error("--from-table", TABLE, "--label-source", METADATA)
    assert "--propose goes with --from-table" in error("--zoo", str(tmp_path), "--propose")
    assert "--json-out goes with --from-table" in error("--zoo", str(tmp_path), "--json-out", str(tmp_path / "r.json"))
    assert "its folder does not exist" in error("--from-table", TABLE, "--json-out", str(tmp_path / "no" / "r.json"))
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert "cannot reach the Hub" in error("--from-table", TABLE)
    assert not (tmp_path / "e").exists()
