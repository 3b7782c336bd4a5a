"""`hf-probex expert ...`: layers, eval (table + JSON), train (a loadable expert), one-line errors."""

from __future__ import annotations

import json

import numpy as np

from hf_probex.cli import main
from hf_probex.experts.training.harness import load_layer_data
from hf_probex.experts.hub import Expert

LAYER = "vit.encoder.layer.0.attention.attention.value.weight"


def test_layers_eval_and_train(tiny_zoo, tmp_path, capsys):
    assert main(["expert", "layers", str(tiny_zoo.root), "--tree", "vit"]) == 0
    assert f"{LAYER}  [32, 32]" in capsys.readouterr().out

    out_json = tmp_path / "cv.json"
    assert main(["expert", "eval", str(tiny_zoo.root), "--tree", "vit", "--layer", LAYER, "--folds", "2",
                 "--epochs", "3", "--method", "probex", "--method", "ridge", "--json-out", str(out_json)]) == 0
    table = capsys.readouterr().out
    assert "2-fold CV" in table and "ref: label_frequency" in table and table.count("+-") > 10
    reports = json.loads(out_json.read_text())
    assert [r["method"] for r in reports] == ["probex", "ridge"] and reports[0]["train_config"]["epochs"] == 3

    out = tmp_path / "expert"
    assert main(["train", "--zoo", str(tiny_zoo.root), "--tree", "vit", "--layer", LAYER, "--folds", "2",
                 "--method", "probex", "--epochs", "3", "--out", str(out)]) == 0
    assert "per_label_acc" in capsys.readouterr().out
    expert = Expert.from_pretrained(out)
    assert expert.metrics["cv_folds"] == 2 and "per_label_acc" in expert.metrics
    data = load_layer_data(tiny_zoo.root, "vit", LAYER)
    assert expert.predict(data.x).shape == (len(data.y), 40)
    assert np.all((expert.predict(data.x) >= 0) & (expert.predict(data.x) <= 1))


def test_bad_input_is_one_error_line(tiny_zoo, tmp_path, capsys):
    assert main(["expert", "eval", str(tiny_zoo.root), "--tree", "vit", "--layer", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: tree 'vit' has no layer 'nope'; layers: classifier.weight") and err.count("\n") == 1
    assert main(["expert", "eval", str(tiny_zoo.root), "--tree", "oak", "--layer", LAYER]) == 2
    assert "no tree named 'oak'" in capsys.readouterr().err
    assert main(["train", "--zoo", str(tiny_zoo.root), "--tree", "vit", "--layer", LAYER, "--method", "knn",
                 "--out", str(tmp_path / "x")]) == 2
    assert "unknown method 'knn'" in capsys.readouterr().err
    assert main(["expert", "layers", str(tmp_path), "--tree", "vit"]) == 2
    assert "holds neither an hf_probex zoo" in capsys.readouterr().err


def test_train_selects_the_layer_by_default(tiny_zoo, tmp_path, capsys):
    out = tmp_path / "expert"
    assert main(["train", "--zoo", str(tiny_zoo.root), "--tree", "resnet", "--folds", "2", "--out", str(out)]) == 0
    chosen = capsys.readouterr().out.splitlines()[0]
    assert chosen.startswith("layer auto: resnet.")
    expert = Expert.from_pretrained(out)
    assert expert.config["layer"] == chosen.split()[2] and expert.config["method"] == "ridge"


def test_bench_writes_one_table_per_tree_into_the_markdown(tiny_zoo, tmp_path, capsys):
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\nkept\n")
    argv = ["bench", "--zoo", str(tiny_zoo.root), "--tree", "vit", "--layer", f"vit={LAYER}", "--method", "ridge",
            "--method", "probex", "--folds", "2", "--epochs", "2", "--out", str(tmp_path / "b.jsonl"),
            "--write", str(doc), "--quiet"]
    assert main(argv) == 0
    text = doc.read_text()
    assert text.startswith("# Benchmarks\n\nkept\n") and "### vit: " in text and f"`{LAYER}`" in text
    rows = [line.split(" | ")[0] for line in text.splitlines() if line.startswith("| ")]
    for row in ["ridge", "probex", "probex (raw)", "headset (head)", "ridge (layer) + ridge (head)", "ref: constant"]:
        assert any(r.strip("|* ") == row for r in rows), row
    capsys.readouterr()
    assert main(argv) == 0  # a rerun reuses every report and replaces the section instead of adding one
    assert doc.read_text().count("### vit: ") == 1
    assert main(["bench", "--zoo", str(tiny_zoo.root), "--layer", "vit"]) == 2
    assert "--layer takes TREE=LAYER" in capsys.readouterr().err


def test_train_on_some_splits_calibrates_its_confidence(tiny_zoo, tmp_path, capsys):
    out = tmp_path / "expert"
    assert main(["train", "--zoo", str(tiny_zoo.root), "--tree", "vit", "--layer", LAYER,
                 "--splits", "nosuchsplit", "--folds", "2", "--out", str(out)]) == 2
    assert "tree 'vit' has no models in splits nosuchsplit" in capsys.readouterr().err
    assert main(["train", "--zoo", str(tiny_zoo.root), "--tree", "vit", "--layer", LAYER, "--splits", "train,val",
                 "--folds", "2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "proposes at confidence >=" in printed
    assert "with the head classifier.weight read as a set of rows: " in printed  # the children's heads, in label order
    expert = Expert.from_pretrained(out)
    assert expert.row_reader.layer == "classifier.weight" and expert.head_calibration["head"] != 0
    data = load_layer_data(tiny_zoo.root, "vit", LAYER, splits=("train", "val"))
    assert expert.metrics["cv_models"] == len(data.y)
    predictions, confidence = expert.confidences(data.x)
    assert confidence.shape == predictions.shape and np.all((confidence > 0) & (confidence < 1))
    assert 0 < expert.calibration["threshold"] <= 1.01 and expert.calibration["decisions"] == data.y.size


def test_an_expert_that_never_proposes_says_so():
    """Calibration marks "no threshold reaches the target" with a threshold above 1 and a NaN precision: `train`
    says what it means instead of printing "precision nan %"."""
    from hf_probex.commands.expert import describe_calibration

    never = {"threshold": 1.01, "precision_target": 0.95, "oof_precision": float("nan"), "oof_recall": 0.0, "decisions": 60}
    assert describe_calibration(never) == "never proposes: no threshold reaches 95 % precision out of fold (60 decisions)"
    some = {**never, "threshold": 0.8, "oof_precision": 0.96, "oof_recall": 0.5}
    scores = ": out-of-fold precision 96.0 % (target 95 % precision) and recall 50.0 %, calibrated on 60 decisions"
    assert describe_calibration(some) == "proposes at confidence >= 0.80" + scores
    led = {**some, "known_margin": 0.18, "untrained_threshold": 0.35, "least_margin": 0.04}  # a zero-shot open vocabulary
    assert describe_calibration(led) == ("proposes at confidence >= 0.80 (a concept it trained on 0.18 ahead of the "
                                         "best one it did not; one it never trained on at >= 0.35, 0.04 ahead of the "
                                         "runner-up)" + scores)
    listed = {**some, "least_margin": 0.12}  # a caller's candidate lists: every top concept alike
    assert describe_calibration(listed) == "proposes at confidence >= 0.80 (a top concept 0.12 ahead of the runner-up)" + scores
