"""Which member each model of a tree was fine-tuned from (hf_probex.lineage, `hf-probex lineage`).

The small zoo's ResNet tree has second and third generations; its expert (trained on the train and val splits, as the
demo trains it) carries the tree's lineage calibration, fitted on those models' known parents.
"""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest

from hf_probex.cli import main
from hf_probex.experts.registry import load_expert
from hf_probex.errors import ProbexError
from hf_probex.lineage import (
    MAX_MEMBERS,
    NO_MEMBER,
    Edge,
    LineageCalibration,
    best_members,
    fit_lineage_calibration,
    lineage_calibration,
    recover_lineage,
)

pytestmark = pytest.mark.slow
ROOT = "probex-zoo-resnet/resnet-root"


def _members(small_zoo) -> dict[str, str]:
    """Local folder of each child -> its repo id."""
    return {str(small_zoo.model_dir("resnet", s.name)): s.repo_id for s in small_zoo.specs("resnet") if s.role == "child"}


def test_every_member_of_the_small_tree_gets_its_parent_from_the_weights(small_zoo, small_experts):
    calibration = lineage_calibration(small_experts, ROOT)
    assert calibration.models > 50 and 0.9 <= calibration.root_precision <= 1.0
    members = _members(small_zoo)
    edges = recover_lineage(small_zoo.model_dir("resnet", "root"), list(members), calibration, root_id=ROOT)
    assert len(edges) == len(members)
    truth = {s.repo_id: small_zoo.spec("resnet", s.parent).repo_id for s in small_zoo.specs("resnet") if s.role == "child"}
    named = {members[e.child]: members.get(e.parent, e.parent) for e in edges}
    later = [repo for repo, parent in truth.items() if parent != ROOT]
    assert sum(named[repo] == truth[repo] for repo in later) >= 0.9 * len(later)
    assert sum(named[repo] == truth[repo] for repo in truth) >= 0.95 * len(truth)
    for edge in edges:  # each says why, with the side's calibrated precision
        side = calibration.member_precision if edge.parent != ROOT else calibration.root_precision
        assert edge.confidence == side and ("explains" in edge.evidence or "no member" in edge.evidence)


def test_the_cli_prints_each_members_parent_and_leaves_out_what_it_cannot_read(small_zoo, small_experts, tiny_zoo,
                                                                               capsys, tmp_path):
    grandchild = next(s for s in small_zoo.specs("resnet") if s.generation == 2)
    parent = small_zoo.spec("resnet", grandchild.parent)
    child = next(s for s in small_zoo.specs("resnet") if s.generation == 1 and s.name != parent.name)
    folders = [str(small_zoo.model_dir("resnet", s.name)) for s in (parent, grandchild, child)]
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "model.safetensors").write_bytes(b"not safetensors")
    expert = next(e.location for e in small_experts.entries if e.root == ROOT)
    stranger = str(tiny_zoo.model_dir("vit", "ft-0001"))  # another tree's model: left out, the others still read
    code = main(["lineage", str(small_zoo.model_dir("resnet", "root")), *folders, str(tmp_path / "broken"), stranger,
                 "--tree", ROOT, "--expert", expert, "--json"])
    captured = capsys.readouterr()
    assert code == 0 and "left out" in captured.err and "broken" in captured.err
    assert f"left out {stranger}: it has 0 of the root's" in captured.err
    edges = {e["child"]: e["parent"] for e in json.loads(captured.out)["edges"]}
    assert edges == {folders[0]: ROOT, folders[1]: folders[0], folders[2]: ROOT}
    root = str(small_zoo.model_dir("resnet", "root"))
    assert main(["lineage", root, folders[0], "--tree", "someone/other-root", "--expert", expert]) == 2
    assert "no expert of the tree of someone/other-root" in capsys.readouterr().err
    assert main(["lineage", root, folders[0], "--tree", ROOT, "--expert", str(tmp_path)]) == 2  # not an expert
    assert "is it an hf_probex expert" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["lineage", "--help"])
    assert exit_info.value.code == 0 and "usage: hf-probex lineage" in capsys.readouterr().out


def test_a_member_explains_its_fine_tunes_but_not_its_siblings():
    rng = np.random.default_rng(0)
    child, sibling = rng.normal(size=64), rng.normal(size=64)
    own = rng.normal(size=64)
    own -= (own @ child) / (child @ child) * child  # a move of its own, across its parent's
    grandchild = child + 0.2 * own
    found = best_members(np.stack([child, sibling * 1.2, grandchild]))
    assert found[0] == (None, None)  # nothing moved less than it
    assert found[1][1] < 0  # neither its sibling nor its sibling's fine-tune explains any of it
    assert found[2][0] == 0 and found[2][1] > 0.7  # its parent explains most of it


def test_the_calibration_separates_the_two_sides_and_is_bounded():
    calibration = fit_lineage_calibration([None, -0.1, 0.05, 0.6, 0.7], [False, False, False, True, True],
                                          [False, False, False, True, True])
    assert 0.05 < calibration.threshold < 0.6
    assert calibration.member_precision == 3 / 4 and calibration.root_precision == 4 / 5 and calibration.models == 5
    assert LineageCalibration.from_dict(calibration.to_dict()) == calibration
    for bad in ([1], {**calibration.to_dict(), "threshold": "x"}, {**calibration.to_dict(), "member_precision": 2.0},
                {**calibration.to_dict(), "extra": 1}, {**calibration.to_dict(), "threshold": float("nan")}):
        with pytest.raises(ValueError):
            LineageCalibration.from_dict(bad)


def test_a_tree_whose_known_parents_are_all_the_root_names_no_member():
    """Where naming a member never paid off on the models with known parents (a tree without later generations), the
    calibration names none: every model gets the root, and says why."""
    from dataclasses import replace

    from hf_probex.lineage import lineage_from_sketches

    calibration = fit_lineage_calibration([0.3, 0.5, 0.9, None], [False] * 4, [False, True, False, False])
    assert calibration.threshold == NO_MEMBER and calibration.root_precision == 5 / 6
    assert fit_lineage_calibration([0.5, 0.9], [True, True], [True, True]).threshold == 0.5  # every one a member
    rng = np.random.default_rng(0)
    first, own = rng.normal(size=64), rng.normal(size=64)
    own -= (own @ first) / (first @ first) * first
    second = first + 0.2 * own  # a fine-tune of the first: its movement explains most of the second's
    sketched = replace(calibration, sketch="count-sketch 64 seed 0", layers=("layer",))
    edges = lineage_from_sketches(["first", "second"], np.stack([first, second]), sketched, ROOT)
    assert [edge.parent for edge in edges] == [ROOT, ROOT]
    assert edges[1].candidate == "first" and edges[1].score > 0.5 and "names no member" in edges[1].evidence


def test_the_cli_says_when_a_trees_calibration_names_no_member(small_zoo, small_experts, capsys, tmp_path):
    import shutil

    expert = tmp_path / "expert"
    shutil.copytree(next(e.location for e in small_experts.entries if e.root == ROOT), expert)
    config = json.loads((expert / "config.json").read_text())
    config["routing"]["lineage"]["threshold"] = NO_MEMBER
    (expert / "config.json").write_text(json.dumps(config))
    grandchild = next(s for s in small_zoo.specs("resnet") if s.generation == 2)
    folders = [str(small_zoo.model_dir("resnet", name)) for name in (grandchild.parent, grandchild.name)]
    assert main(["lineage", str(small_zoo.model_dir("resnet", "root")), *folders, "--tree", ROOT,
                 "--expert", str(expert)]) == 0
    header, _, *edges = capsys.readouterr().out.splitlines()
    assert "its calibration names no member a parent" in header and "explains >=" not in header
    assert len(edges) == 2 and all(line.split()[1] == ROOT for line in edges)  # every model gets the root
    assert any("the tree's calibration names no member" in line for line in edges)  # the grandchild's, saying why


def test_the_expert_carries_the_calibration_it_was_fitted_with(small_experts):
    routing = load_expert(next(e.location for e in small_experts.entries if e.root == ROOT)).routing
    assert LineageCalibration.from_dict(routing["lineage"]) == lineage_calibration(small_experts, ROOT)


def test_too_many_members_are_refused_before_anything_is_read(tmp_path):
    calibration = LineageCalibration(0.2, 0.9, 0.99, 10)
    with pytest.raises(ProbexError, match="at most"):
        recover_lineage(tmp_path / "no-root", [f"acme/m-{i}" for i in range(MAX_MEMBERS + 1)], calibration)


def test_infer_card_takes_a_grandchilds_parent_from_its_edge_among_the_members(small_zoo, small_experts, tmp_path):
    """With the tree's edges (`parents=`), a cardless grandchild's base_model is the member it was fine-tuned from,
    never the root; it reaches a pull request only at the 95 % floor; a first-generation child keeps the root."""
    from hf_probex import infer_card
    from hf_probex.demo import undocumented_copy

    grandchild = next(s for s in small_zoo.specs("resnet") if s.generation == 2)
    parent = small_zoo.spec("resnet", grandchild.parent)
    child = next(s for s in small_zoo.specs("resnet") if s.generation == 1 and s.name != parent.name)
    copies = {s.name: str(undocumented_copy(small_zoo, s, tmp_path / s.name)) for s in (parent, grandchild, child)}
    calibration = lineage_calibration(small_experts, ROOT)
    edges = recover_lineage(small_zoo.model_dir("resnet", "root"), list(copies.values()), calibration, root_id=ROOT)
    assert all(Edge.from_dict(edge.as_dict()) == edge for edge in edges)

    explored = infer_card(copies[grandchild.name], experts=small_experts, parents=edges, min_confidence=0.0)
    base = explored.fields["base_model"]
    assert base.value == copies[parent.name] and base.source == "members", base
    assert base.confidence <= calibration.member_precision and "explains" in base.evidence
    assert "its weights compared with the tree's members" in base.origin
    default = infer_card(copies[grandchild.name], experts=small_experts, parents=edges)
    if calibration.member_precision >= 0.95:
        assert default.fields["base_model"].value == copies[parent.name]
    else:  # too few grandchildren to calibrate a member edge to 95 %: abstains, naming the member, never the root
        assert "base_model" not in default.fields and copies[parent.name] in default.abstained["base_model"]

    first = infer_card(copies[child.name], experts=small_experts, parents=edges, min_confidence=0.0).fields["base_model"]
    assert first.value == ROOT and first.source == "members" and "no member explains" in first.evidence
    alone = infer_card(copies[grandchild.name], experts=small_experts, min_confidence=0.0).fields["base_model"]
    assert alone.source == "weights" and f"a descendant of {ROOT}" in alone.evidence  # without edges: as before


def test_the_bot_reads_the_members_for_parents_only_when_asked(zoo_hub, tiny_zoo, experts, tmp_path, monkeypatch,
                                                              capsys):
    """`bot run --tree ROOT --parents`: every member read whole once, then each repo inferred with its edge; a
    one-line refusal without --tree or beside --infer."""
    monkeypatch.setenv("HF_PROBEX_CACHE", str(tmp_path / "cache"))
    experts.save()  # the default registry that `infer_card` (and so the bot) reads
    root = tiny_zoo.trees["vit"]["root_repo_id"]
    run = ["bot", "run", "--dry-run", "--quiet"]
    assert main([*run, "--tree", root, "--walk", "--parents"]) == 0
    out = capsys.readouterr().out
    listed = int(out.split(" members listed on the Hub")[0].rsplit(" ", 1)[-1])
    said = re.search(r"parents: (\d+) of (\d+) members read whole; (\d+) have a member as parent", out)
    zoo_members = sum(s.role == "child" for s in tiny_zoo.specs("vit"))  # the session's Hub holds other tests' repos too
    assert said and int(said[2]) == listed and zoo_members <= int(said[1]) <= listed, out
    assert int(said[3]) >= 1 and "the others keep the root" in out  # the zoo's grandchildren
    for argv in ([*run, "--repos", str(tmp_path / "none.txt"), "--parents"],
                 [*run, "--tree", root, "--parents", "--infer", "bot_zoo:ground_truth_infer"]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "--parents names parents among the members of --tree" in err[0]


def test_infer_reads_the_edges_hf_probex_lineage_wrote(small_zoo, small_experts, tmp_path, capsys):
    """`hf-probex lineage ... --json > edges.json`, then `hf-probex infer MODEL --parents edges.json`; a file that is
    not such edges is refused in one line."""
    from hf_probex.demo import undocumented_copy

    grandchild = next(s for s in small_zoo.specs("resnet") if s.generation == 2)
    parent = small_zoo.spec("resnet", grandchild.parent)
    copies = [str(undocumented_copy(small_zoo, s, tmp_path / s.name)) for s in (parent, grandchild)]
    expert = next(e.location for e in small_experts.entries if e.root == ROOT)
    assert main(["lineage", str(small_zoo.model_dir("resnet", "root")), *copies, "--tree", ROOT, "--expert", expert,
                 "--json"]) == 0
    (tmp_path / "edges.json").write_text(capsys.readouterr().out)
    infer = ["infer", copies[1], "--expert", expert, "--min-confidence", "0", "--json"]
    assert main([*infer, "--parents", str(tmp_path / "edges.json")]) == 0
    base = json.loads(capsys.readouterr().out)["fields"]["base_model"]
    assert base["value"] == copies[0] and base["source"] == "members"
    edges = json.loads((tmp_path / "edges.json").read_text())
    bad = {"missing.json": None, "not-json.json": "{", "no-edges.json": json.dumps({"root": ROOT}),
           "bad-edge.json": json.dumps({"edges": [{**edges["edges"][0], "confidence": 2}]}),
           "extra-key.json": json.dumps({"edges": [{**edges["edges"][0], "parent_of": "x"}]}),
           "huge.json": " " * (5 * 2**20), "a-fifo": None}
    os.mkfifo(tmp_path / "a-fifo")  # never read: it could block forever
    for name, text in bad.items():
        if text is not None:
            (tmp_path / name).write_text(text)
        assert main([*infer, "--parents", str(tmp_path / name)]) == 2, name
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "hf-probex lineage ROOT ... --json" in err[0], (name, err)


def test_a_model_whose_own_parent_is_unknown_still_calibrates_as_a_candidate_parent(small_zoo):
    """`fit_lineage` scores only models whose parents are known, but every model is a candidate parent, as every
    member is when `recover_lineage` runs: a fine-tune of a model whose own parent lies outside the training splits
    (another split, another table) still finds its parent."""
    import dataclasses

    from hf_probex.experts.calibration.lineage import fit_lineage
    from hf_probex.weightsets import open_weight_set

    records = {r.model_id: r for r in open_weight_set(small_zoo.root).for_tree("resnet")}
    child = next(r for r in records.values() if r.parent in records and records[r.parent].parent == ROOT)
    parent = dataclasses.replace(records[child.parent], parent="elsewhere/unknown")
    siblings = [r for r in records.values() if r.parent == ROOT and r.model_id != parent.model_id][:2]
    calibration = fit_lineage([parent, child, *siblings], small_zoo.model_dir("resnet", "root"), ROOT)
    assert calibration.models == 3  # the child and the two first generations; the parent is not scored
    assert calibration.member_precision == 2 / 3 and calibration.root_precision == 3 / 4  # each right on its side


def _table_rows(small_zoo, small_experts) -> dict[str, np.ndarray]:
    """Each child's row of a tree table: repo id -> its embedding as a scan makes it (`member_embedding`)."""
    from hf_probex.lineage import open_model
    from hf_probex.scan.embedding import member_embedding

    local = {s.repo_id: small_zoo.model_dir("resnet", s.name) for s in small_zoo.specs("resnet")}
    rows = {}
    for folder, repo in _members(small_zoo).items():
        adapter, source = open_model(folder, local=local)
        rows[repo] = member_embedding(source, adapter, ROOT, small_experts).vector
    return rows


@pytest.fixture(scope="module")
def table_rows(small_zoo, small_experts):
    return _table_rows(small_zoo, small_experts)


def test_a_tables_sketches_name_the_parents_without_reading_a_weight(small_zoo, small_experts, table_rows):
    """A tree too large to read whole is read from its table: each member's candidate parents from a vector index
    over the rows' sketches, s on their sketches, the expert's calibration of exactly those sketches."""
    from hf_probex.lineage import lineage_from_sketches
    from hf_probex.sketch import sketch_kind

    calibration = lineage_calibration(small_experts, ROOT, sketches=True)
    expert = load_expert(next(e.location for e in small_experts.entries if e.root == ROOT))
    assert calibration.sketch == sketch_kind() and list(calibration.layers) == [n for n, _ in expert.config["inputs"]]
    assert calibration.models > 50
    edges = lineage_from_sketches(list(table_rows), np.stack(list(table_rows.values())), calibration, ROOT)
    truth = {s.repo_id: small_zoo.spec("resnet", s.parent).repo_id for s in small_zoo.specs("resnet") if s.role == "child"}
    named = {e.child: e.parent for e in edges}
    later = [repo for repo, parent in truth.items() if parent != ROOT]
    members = [repo for repo, parent in named.items() if parent != ROOT]
    assert sum(named[repo] == truth[repo] for repo in later) >= 0.8 * len(later)
    assert sum(named[repo] == truth[repo] for repo in members) >= 0.9 * len(members)
    assert all(e.confidence == (calibration.member_precision if e.parent != ROOT else calibration.root_precision)
               for e in edges)


def test_lineage_from_sketches_takes_only_a_calibration_of_sketches_and_one_row_a_member():
    from hf_probex.lineage import lineage_from_sketches

    rows = np.random.default_rng(0).normal(size=(3, 64))
    with pytest.raises(ProbexError, match="read whole"):
        lineage_from_sketches(["a", "b", "c"], rows, LineageCalibration(0.2, 0.9, 0.99, 10), ROOT)
    sketched = LineageCalibration(0.2, 0.9, 0.99, 10, "count-sketch 64 seed 0", ("layer",))
    for names, bad in ((["a", "b"], rows), (["a", "b", "c"], rows[:, :, None]), (["a", "b", "c"], rows * np.nan)):
        with pytest.raises(ProbexError, match="finite"):
            lineage_from_sketches(names, bad, sketched, ROOT)
    assert lineage_from_sketches([], np.zeros((0, 64)), sketched, ROOT) == []


def test_a_calibration_of_sketches_says_what_it_measured_and_round_trips():
    sketched = LineageCalibration(0.2, 0.9, 0.99, 10, "count-sketch 4096 seed 0", ("encoder.layer.5.value",))
    assert LineageCalibration.from_dict(sketched.to_dict()) == sketched
    assert set(LineageCalibration(0.2, 0.9, 0.99, 10).to_dict()) == {"threshold", "member_precision",
                                                                    "root_precision", "models"}  # as experts had it
    for bad in ({**sketched.to_dict(), "layers": "layer"}, {**sketched.to_dict(), "sketch": 4096},
                {k: v for k, v in sketched.to_dict().items() if k != "layers"}):
        with pytest.raises(ValueError):
            LineageCalibration.from_dict(bad)


def _table_folder(folder, root: str, rows: list) -> None:
    """A tree table as a scan publishes it (README.md and data/*.parquet) holding `rows` (`ScanRow`s)."""
    from hf_probex.scan.publish import dataset_card
    from hf_probex.scan.table import rows_to_table, write_parquet

    (folder / "data").mkdir(parents=True)
    write_parquet(rows_to_table(rows), folder / "data" / "train-00000.parquet")
    (folder / "README.md").write_text(dataset_card(root, None, rows, settings="test", scanned_at="now"))


def test_the_cli_names_parents_from_a_table_folders_sketches(small_experts, table_rows, capsys, tmp_path):
    from hf_probex.scan.table import ScanRow

    calibration = lineage_calibration(small_experts, ROOT, sketches=True)
    rows = [ScanRow(repo, embedding=vector, embedding_kind=calibration.sketch, embedding_layers=list(calibration.layers))
            for repo, vector in table_rows.items()]
    rows.append(ScanRow("acme/unsketched", embedding=None))  # a row the scan could not read: left out, said so
    rows.append(ScanRow("acme/short", embedding=np.ones(3, np.float32), embedding_kind=calibration.sketch,
                        embedding_layers=list(calibration.layers)))  # a row that claims the sketch and lies
    _table_folder(tmp_path / "table", ROOT, rows)
    experts = [arg for e in small_experts.entries if e.root == ROOT for arg in ("--expert", str(e.location))]
    assert main(["lineage", ROOT, "--table", str(tmp_path / "table"), "--sketches", "--json", *experts]) == 0
    out, err = capsys.readouterr()
    edges = json.loads(out)["edges"]
    assert len(edges) == len(table_rows) and "left out 2 of" in err
    from hf_probex.lineage import lineage_from_sketches

    expected = lineage_from_sketches(list(table_rows), np.stack(list(table_rows.values())), calibration, ROOT)
    assert edges == [edge.as_dict() for edge in expected] and any(e["parent"] != ROOT for e in edges)
    assert main(["lineage", ROOT, "acme/m", "--table", str(tmp_path / "table"), "--sketches", *experts]) == 2
    assert "name no MEMBER" in capsys.readouterr().err


def test_an_adapter_of_a_member_is_read_on_the_local_copy_given_with_base(text_small_zoo, text_experts, capsys,
                                                                          tmp_path):
    """Offline, a peft adapter fine-tuned from a member declares that member's Hub id: `--base ID=DIR` reads it on
    the member's local copy (else it is left out, said on stderr)."""
    import shutil

    specs = {s.name: s for s in text_small_zoo.specs("text")}
    adapter = next(s for s in specs.values() if (text_small_zoo.model_dir("text", s.name) / "adapter_config.json").exists())
    member = next(s for s in specs.values() if s.role == "child" and s.recipe == "trainer-full"
                  and (text_small_zoo.model_dir("text", s.name) / "model.safetensors").exists())
    grandchild = tmp_path / "grandchild"
    shutil.copytree(text_small_zoo.model_dir("text", adapter.name), grandchild)
    (grandchild / "README.md").unlink(missing_ok=True)  # its card names the root as its base: only the config speaks
    config = json.loads((grandchild / "adapter_config.json").read_text())
    (grandchild / "adapter_config.json").write_text(json.dumps({**config, "base_model_name_or_path": member.repo_id}))
    member_dir = str(text_small_zoo.model_dir("text", member.name))
    experts = [arg for e in text_experts.entries for arg in ("--expert", str(e.location))]
    command = ["lineage", str(text_small_zoo.model_dir("text", "root")), member_dir, str(grandchild),
               "--tree", specs["root"].repo_id, "--json", *experts]
    assert main(command) == 0
    out, err = capsys.readouterr()
    assert [e["child"] for e in json.loads(out)["edges"]] == [member_dir] and f"left out {grandchild}" in err
    assert main([*command, "--base", f"{member.repo_id}={member_dir}"]) == 0
    edges = {e["child"]: e for e in json.loads(capsys.readouterr().out)["edges"]}
    assert edges[str(grandchild)]["candidate"] == member_dir  # the member it was merged onto explains most of it
    assert main([*command, "--base", member_dir]) == 2 and "REPO_ID=DIR" in capsys.readouterr().err


def test_the_bot_names_parents_from_its_tables_sketches(zoo_hub, tiny_zoo, experts, tmp_path, monkeypatch, capsys):
    """`bot run --tree ROOT --table T --parents` takes the parents from the table's sketches: no member read whole."""
    from hf_probex.lineage import open_model
    from hf_probex.scan.embedding import member_embedding
    from hf_probex.scan.table import ScanRow

    monkeypatch.setenv("HF_PROBEX_CACHE", str(tmp_path / "cache"))
    experts.save()
    root = tiny_zoo.trees["vit"]["root_repo_id"]
    rows = []
    for spec in (s for s in tiny_zoo.specs("vit") if s.role == "child"):
        adapter, source = open_model(tiny_zoo.model_dir("vit", spec.name))
        embedding = member_embedding(source, adapter, root, experts)
        rows.append(ScanRow(spec.repo_id, embedding=embedding.vector, embedding_kind=embedding.kind,
                            embedding_layers=embedding.layers))
    _table_folder(tmp_path / "table", root, rows)
    assert main(["bot", "run", "--dry-run", "--quiet", "--tree", root, "--table", str(tmp_path / "table"),
                 "--parents"]) == 0
    out = capsys.readouterr().out
    said = re.search(r"parents: (\d+) members named from the tree table's sketches \(no weights read\); (\d+) have a "
                     r"member as parent", out)
    assert said and int(said[1]) == len(rows) and int(said[2]) >= 1, out  # the zoo's grandchildren
    assert "read whole" not in out
