"""peft adapters of full transformers models (ViT, ResNet, BERT, GPT-2), made with peft and saved with save_pretrained,
read merged onto their base: the merge equals peft's own `merge_and_unload`; `infer_card` routes the tiny zoo's ViT and
ResNet adapters to their tree (base on disk or on the local Hub) and never raises when the base cannot be read, however
hostile the path an adapter names."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from huggingface_hub import HfApi
from safetensors.numpy import load_file

from hf_probex import infer_card
from hf_probex.adapters import ADAPTERS, detect, read_through
from hf_probex.errors import BaseModelError, LayerMismatchError
from hf_probex.experts.methods.shaping import layer_reader
from hf_probex.merged import MergedSource
from hf_probex.reading import open_source


def _trained(model, config, batch: dict, steps: int = 3, lr: float = 1e-2):
    """`model` wrapped by peft with `config`, after a few AdamW steps on `batch` (LoRA B starts at zero: the update is
    small, as a real fine-tune's)."""
    from peft import get_peft_model

    torch.manual_seed(0)
    peft_model = get_peft_model(model, config)
    optimiser = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=lr)
    for _ in range(steps):
        peft_model(**batch).loss.backward()
        optimiser.step()
        optimiser.zero_grad()
    return peft_model


def _images(config, n: int = 8) -> dict:
    size = getattr(config, "image_size", 16)
    return {"pixel_values": torch.randn(n, config.num_channels, size, size), "labels": torch.arange(n) % config.num_labels}


def _save(peft_model, folder: Path, base: str | None = None) -> Path:
    """save_pretrained, with the declared base set to `base` (peft writes the path the base was loaded from)."""
    peft_model.save_pretrained(folder)
    if base is not None:
        config = json.loads((folder / "adapter_config.json").read_text())
        (folder / "adapter_config.json").write_text(json.dumps({**config, "base_model_name_or_path": base}))
    return folder


def _assert_merges_like_peft(adapter_dir: Path, base: Path, merged, tmp_path: Path, canonical: bool = False) -> None:
    """The merged view of `adapter_dir` on `base` holds what peft's `merge_and_unload` (`merged`) saves: every tensor
    by name, or with `canonical` every layer by the family's names (a task model's prefix aside)."""
    merged.save_pretrained(tmp_path / "peft-merged")
    reference = open_source(tmp_path / "peft-merged")
    reader, view = read_through(open_source(adapter_dir), base=base)
    assert isinstance(view, MergedSource) and reader.family == detect(reference).family
    if canonical:
        ours, theirs = reader.checkpoint(view), detect(reference).checkpoint(reference)
        names = reader.candidate_layers(ours)
        assert names == reader.candidate_layers(theirs)
        pairs = [(reader.read_layer(view, n)[0], reader.read_layer(reference, n)[0], n) for n in names]
    else:
        ours, theirs = view.checkpoint(), reference.checkpoint()
        assert ours.names == theirs.names
        pairs = [(ours.read(n), theirs.read(n), n) for n in theirs.names if theirs.info(n).dtype == "F32"]
    for mine, peft_s, name in pairs:
        np.testing.assert_allclose(mine, peft_s, rtol=1e-5, atol=1e-6, err_msg=name)


# ---- the merge equals peft's ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def vit_base(tmp_path_factory):
    from transformers import ViTConfig, ViTForImageClassification

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("vit-base")
    ViTForImageClassification(ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                                        image_size=8, patch_size=4, num_channels=1, num_labels=3)).save_pretrained(folder)
    return folder


def test_a_vit_lora_in_transformers_5_names_merges_onto_the_legacy_names_on_disk(vit_base, tmp_path):
    """rslora, alpha_pattern and rank_pattern, a new head (modules_to_save), q/v/fc1 named as in memory."""
    from peft import LoraConfig
    from transformers import ViTForImageClassification

    model = ViTForImageClassification.from_pretrained(vit_base)
    config = LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj", "fc1"], modules_to_save=["classifier"],
                        use_rslora=True, alpha_pattern={"v_proj": 16}, rank_pattern={"fc1": 4})
    peft_model = _trained(model, config, _images(model.config))
    adapter = _save(peft_model, tmp_path / "adapter", str(vit_base))
    keys = load_file(str(adapter / "adapter_model.safetensors"))
    assert "base_model.model.vit.layers.0.attention.q_proj.lora_A.weight" in keys
    assert "vit.encoder.layer.0.attention.attention.query.weight" in load_file(str(vit_base / "model.safetensors"))
    assert detect(open_source(adapter)).family == "peft"
    _assert_merges_like_peft(adapter, vit_base, peft_model.merge_and_unload(), tmp_path)


def test_keys_without_peft_prefix_merge_the_same(vit_base, tmp_path):
    """transformers' own PEFT integration (`model.add_adapter` + `save_pretrained`) saves keys without
    `base_model.model.`."""
    from peft import LoraConfig, get_peft_model
    from safetensors.numpy import save_file
    from transformers import ViTForImageClassification

    torch.manual_seed(0)
    peft_model = get_peft_model(ViTForImageClassification.from_pretrained(vit_base),
                                LoraConfig(r=2, target_modules=["q_proj"], init_lora_weights=False))
    adapter = _save(peft_model, tmp_path / "peft")
    shutil.copytree(adapter, tmp_path / "bare")
    keys = load_file(str(adapter / "adapter_model.safetensors"))
    save_file({k.removeprefix("base_model.model."): v for k, v in keys.items()}, str(tmp_path / "bare" / "adapter_model.safetensors"))
    (view, _), (bare, _) = (read_through(open_source(folder), base=vit_base)[::-1] for folder in (adapter, tmp_path / "bare"))
    name = "vit.encoder.layer.1.attention.attention.query.weight"
    np.testing.assert_array_equal(view.checkpoint().read(name), bare.checkpoint().read(name))
    assert not np.array_equal(view.checkpoint().read(name), open_source(vit_base).checkpoint().read(name))


def test_dora_merges_like_peft(vit_base, tmp_path):
    from peft import LoraConfig
    from transformers import ViTForImageClassification

    model = ViTForImageClassification.from_pretrained(vit_base)
    peft_model = _trained(model, LoraConfig(r=2, target_modules=["q_proj", "o_proj"], use_dora=True), _images(model.config))
    adapter = _save(peft_model, tmp_path / "adapter")
    _assert_merges_like_peft(adapter, vit_base, peft_model.merge_and_unload(), tmp_path)


def test_a_convolution_lora_of_a_resnet_merges_like_peft(tmp_path):
    """Conv LoRA factors are [r, in, k, k] and [out, r, 1, 1]; the head is saved whole (`classifier.1`)."""
    from peft import LoraConfig
    from transformers import ResNetConfig, ResNetForImageClassification

    torch.manual_seed(0)
    ResNetForImageClassification(ResNetConfig(num_channels=1, embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1],
                                              num_labels=3)).save_pretrained(tmp_path / "base")
    model = ResNetForImageClassification.from_pretrained(tmp_path / "base")
    peft_model = _trained(model, LoraConfig(r=2, target_modules=["convolution"], modules_to_save=["classifier"]),
                          _images(model.config))
    adapter = _save(peft_model, tmp_path / "adapter")
    assert load_file(str(adapter / "adapter_model.safetensors"))[
        "base_model.model.resnet.embedder.embedder.convolution.lora_A.weight"].shape == (2, 1, 7, 7)
    _assert_merges_like_peft(adapter, tmp_path / "base", peft_model.merge_and_unload(), tmp_path)


@pytest.fixture(scope="module")
def bert_base(tmp_path_factory):
    """A tiny `BertModel` (the layout of all-MiniLM-L6-v2: no `bert.` prefix on disk)."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("bert-base")
    BertModel(BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                         max_position_embeddings=32)).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def bert_lora(bert_base, tmp_path_factory):
    """A peft SEQ_CLS LoRA of a `BertForSequenceClassification` made from `bert_base` (keys `bert.encoder...`), its
    declared base the real all-MiniLM-L6-v2's repo id; and peft's merge of it."""
    from peft import LoraConfig, TaskType
    from transformers import BertForSequenceClassification

    model = BertForSequenceClassification.from_pretrained(bert_base, num_labels=3)
    batch = {"input_ids": torch.randint(0, 64, (8, 12)), "labels": torch.arange(8) % 3}
    peft_model = _trained(model, LoraConfig(r=2, target_modules=["query", "value"], task_type=TaskType.SEQ_CLS), batch)
    folder = _save(peft_model, tmp_path_factory.mktemp("bert-lora"), "sentence-transformers/all-MiniLM-L6-v2")
    return folder, peft_model.merge_and_unload()


def test_a_bert_classifier_lora_merges_onto_a_bare_encoder(bert_base, bert_lora, tmp_path):
    folder, merged = bert_lora
    assert "base_model.model.bert.encoder.layer.0.attention.self.query.lora_A.weight" in \
        load_file(str(folder / "adapter_model.safetensors"))
    _assert_merges_like_peft(folder, bert_base, merged, tmp_path, canonical=True)
    reader, view = read_through(open_source(folder), base=bert_base)
    assert "classifier.weight" in reader.candidate_layers(reader.checkpoint(view))  # the new head, added


@pytest.mark.filterwarnings("ignore:Adapter 'default'")  # peft suspects a 1-D lora_B.bias of unsaved shards
def test_embedding_loras_and_lora_biases_merge_like_peft(bert_base, tmp_path):
    from peft import LoraConfig
    from transformers import BertModel

    for name, config in (("embedding", LoraConfig(r=2, target_modules=["word_embeddings"], init_lora_weights=False)),
                         ("bias", LoraConfig(r=2, target_modules=["query"], lora_bias=True, init_lora_weights=False))):
        peft_model = _trained(BertModel.from_pretrained(bert_base), config, {}, steps=0)
        adapter = _save(peft_model, tmp_path / name)
        _assert_merges_like_peft(adapter, bert_base, peft_model.merge_and_unload(), tmp_path / f"{name}-merged")


def test_fan_in_fan_out_merges_like_peft_and_an_unknown_base_family_is_one_line(tmp_path):
    """GPT-2 stores its projections [in, out] (Conv1D): peft's fan_in_fan_out. No adapter knows the GPT-2 family, so
    the view cannot be read by one: `weights_of` says so in one line."""
    from peft import LoraConfig
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(vocab_size=64, n_embd=32, n_layer=2, n_head=2, n_positions=16)).save_pretrained(tmp_path / "base")
    peft_model = _trained(GPT2LMHeadModel.from_pretrained(tmp_path / "base"),
                          LoraConfig(r=2, target_modules=["c_attn"], fan_in_fan_out=True, init_lora_weights=False), {}, 0)
    adapter_dir = _save(peft_model, tmp_path / "adapter", str(tmp_path / "base"))
    adapter, base = open_source(adapter_dir), open_source(tmp_path / "base")
    view = MergedSource(adapter, base, ADAPTERS["peft"].checkpoint(adapter), base.checkpoint(),
                        json.loads((adapter_dir / "adapter_config.json").read_text()))
    peft_model.merge_and_unload().save_pretrained(tmp_path / "peft-merged")
    reference = open_source(tmp_path / "peft-merged").checkpoint()
    for name in ("transformer.h.0.attn.c_attn.weight", "transformer.h.1.attn.c_attn.weight"):
        np.testing.assert_allclose(view.checkpoint().read(name), reference.read(name), rtol=1e-5, atol=1e-6)
    with pytest.raises(BaseModelError, match="no adapter recognises") as err:
        detect(adapter).weights_of(adapter)
    assert "\n" not in str(err.value)


def test_an_adapter_that_does_not_fit_its_base_is_refused_in_one_line(vit_base, bert_lora, tmp_path):
    folder, _ = bert_lora
    with pytest.raises(LayerMismatchError, match=r"targets 'bert\.encoder\.layer\.0\.attention\.self\.query', which its "
                                                 r"base .* lacks"):
        read_through(open_source(folder), base=vit_base)


# ---- infer_card on the tiny zoo's trees --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def zoo_adapters(tiny_zoo, tmp_path_factory):
    """A peft LoRA of the tiny zoo's ViT and ResNet roots each (every attention and MLP projection, every convolution;
    a new head), declaring its root's folder as peft writes it: the absolute path it was loaded from."""
    from peft import LoraConfig
    from transformers import ResNetForImageClassification, ViTForImageClassification

    made = {}
    for tree, cls, targets in (("vit", ViTForImageClassification, ["q_proj", "k_proj", "v_proj", "o_proj", "fc1", "fc2"]),
                               ("resnet", ResNetForImageClassification, ["convolution"])):
        root = tiny_zoo.model_dir(tree, "root").resolve()
        model = cls.from_pretrained(root)
        peft_model = _trained(model, LoraConfig(r=4, target_modules=targets, modules_to_save=["classifier"]),
                              _images(model.config), steps=2, lr=1e-3)  # moved as far as the zoo's fine-tunes
        made[tree] = _save(peft_model, tmp_path_factory.mktemp(f"{tree}-lora"))
        assert json.loads((made[tree] / "adapter_config.json").read_text())["base_model_name_or_path"] == str(root)
    return made


def _assert_read_through_its_root(result, tiny_zoo, tree):
    assert result.family == "peft" and result.tree == tiny_zoo.trees[tree]["root_repo_id"], result.abstained
    assert result.fields["base_model_relation"].value == "adapter"
    assert result.fields["library_name"].value == "peft"
    assert result.fields["pipeline_tag"].value == "image-classification"  # its base's: peft wrote no task_type
    assert "trained_on" in result.fields or "\n" not in result.abstained["trained_on"]
    assert "trained_on" in result.details or "trained_on" in result.fields  # the expert read the merged layers


@pytest.mark.parametrize("tree", ["vit", "resnet"])
def test_a_zoo_roots_lora_is_routed_by_its_merged_weights(zoo_adapters, tiny_zoo, experts, tree):
    result = infer_card(zoo_adapters[tree], experts=experts)
    _assert_read_through_its_root(result, tiny_zoo, tree)
    assert result.fields["base_model"].value == tiny_zoo.trees[tree]["root_repo_id"]
    assert result.fields["base_model"].source == "weights"  # a local path is not a base_model a card can name
    adapter_only = open_source(zoo_adapters[tree])
    assert result.bytes_read > sum(adapter_only.file_size(f) for f in ("adapter_config.json",))  # both repos counted


@pytest.mark.parametrize("tree", ["vit", "resnet"])
def test_a_lora_on_the_hub_declaring_its_roots_repo_id_is_read_from_the_hub(zoo_hub, zoo_adapters, tiny_zoo, experts,
                                                                           tmp_path, tree):
    root_id = tiny_zoo.trees[tree]["root_repo_id"]
    folder = _save_copy(zoo_adapters[tree], tmp_path / "adapter", root_id)
    repo_id = zoo_hub.repo_id()
    api = HfApi(endpoint=zoo_hub.endpoint, token=zoo_hub.alice)
    api.create_repo(repo_id)
    api.upload_folder(folder_path=folder, repo_id=repo_id)
    result = infer_card(repo_id, experts=experts)
    _assert_read_through_its_root(result, tiny_zoo, tree)
    base = result.fields["base_model"]
    assert (base.value, base.confidence, base.evidence.split(";")[0]) == \
        (root_id, 1.0, "declared by adapter_config.json base_model_name_or_path")
    root = open_source(root_id)
    assert result.bytes_read < (open_source(repo_id).size + root.size) / 2  # headers and a few layers of both


def test_an_adapter_that_leaves_the_routing_layers_unchanged_is_of_the_roots_tree(tiny_zoo, experts, tmp_path):
    """B = 0 (peft's initialisation, never trained): the merged model is the root's weights, yet an adapter of it."""
    from peft import LoraConfig, get_peft_model
    from transformers import ViTForImageClassification

    root = tiny_zoo.model_dir("vit", "root").resolve()
    get_peft_model(ViTForImageClassification.from_pretrained(root), LoraConfig(r=2, target_modules=["q_proj"])) \
        .save_pretrained(tmp_path)
    result = infer_card(tmp_path, experts=experts)
    assert result.fields["base_model"].value == tiny_zoo.trees["vit"]["root_repo_id"]
    assert result.fields["base_model_relation"].value == "adapter"


def _save_copy(folder: Path, to: Path, base: str) -> Path:
    shutil.copytree(folder, to)
    config = json.loads((to / "adapter_config.json").read_text())
    (to / "adapter_config.json").write_text(json.dumps({**config, "base_model_name_or_path": base}))
    return to


def test_layer_reader_reads_an_adapter_folder_merged_or_as_updates(zoo_adapters, tiny_zoo):
    root = tiny_zoo.model_dir("vit", "root")
    merged, view = layer_reader(zoo_adapters["vit"], "classifier", base=root)
    assert merged.family == "vit" and isinstance(view, MergedSource)
    assert merged.candidate_layers(merged.checkpoint(view)) == \
        merged.candidate_layers(merged.checkpoint(open_source(root)))
    declared, _ = layer_reader(zoo_adapters["vit"], "classifier")  # the absolute path its config names
    assert declared.family == "vit"
    updates, source = layer_reader(zoo_adapters["vit"], "lora")
    assert updates.family == "peft" and "vit.layers.0.attention.q_proj" in updates.candidate_layers(updates.checkpoint(source))


# ---- a base that cannot be read: one line, never a raise -----------------------------------------------------------


def test_an_unreachable_or_missing_base_abstains_in_one_line(bert_base, bert_lora, tmp_path):
    folder, _ = bert_lora
    offline = infer_card(folder, experts=[])  # HF_HUB_OFFLINE: the declared Hub base cannot be reached
    why = offline.abstained["trained_on"]
    assert "sentence-transformers/all-MiniLM-L6-v2" in why and "cannot be read" in why and "\n" not in why
    assert offline.fields["base_model"].value == "sentence-transformers/all-MiniLM-L6-v2"
    assert offline.fields["pipeline_tag"].value == "text-classification"  # task_type SEQ_CLS
    assert offline.fields["library_name"].value == "peft" and offline.fields["base_model_relation"].value == "adapter"
    missing = _save_copy(folder, tmp_path / "missing", str(tmp_path / "no-such-base"))
    assert "is not a model folder" in infer_card(missing, experts=[]).abstained["trained_on"]
    given = infer_card(folder, experts=[], base=bert_base)  # the base given: read, then no tree knows BERT here
    assert given.abstained["trained_on"].startswith("no known tree: no expert reads")
    assert given.bytes_read > offline.bytes_read


@pytest.fixture
def never_opened(monkeypatch):
    """Fails the test if a declared base is opened (the adapter's own folder is opened by the test itself)."""
    import hf_probex.adapters.peft_model as peft_model

    def refuse(*args, **kwargs):
        raise AssertionError(f"opened {args[0]!r}")

    monkeypatch.setattr(peft_model, "open_source", refuse)


@pytest.mark.parametrize("declared, why", [
    ("../../etc", "relative path, which depends on the folder the adapter was made in and climbs out of it with '..'"),
    ("./outputs/checkpoint-500", "relative path"),
    ("/", "is not a model folder"),
    ("", "declares no base"),
])
def test_a_hostile_base_path_is_never_followed(bert_lora, tmp_path, never_opened, declared, why):
    folder = _save_copy(bert_lora[0], tmp_path / "adapter", declared)
    result = infer_card(folder, experts=[])
    assert why in result.abstained["trained_on"] and "\n" not in result.abstained["trained_on"]


@pytest.mark.parametrize("change, why", [
    ({"alpha_pattern": ["query"]}, "alpha_pattern is not an object"),
    ({"alpha_pattern": {"(a+)+$": 4}}, "a pattern hf_probex does not evaluate"),
    ({"alpha_pattern": {"[": 4}}, "not a regular expression"),
    ({"lora_alpha": "eight"}, "lora_alpha is 'eight', not a positive number"),
    ({"task_type": ["SEQ_CLS"], "base_model_name_or_path": "/\x00/nul"}, "is not a model folder"),
    ({"base_model_name_or_path": "/" + "x" * 5000}, "is not a model folder"),
])
def test_a_hostile_adapter_config_is_one_line(bert_base, bert_lora, tmp_path, change, why):
    folder = _save_copy(bert_lora[0], tmp_path / "adapter", str(bert_base))
    config = json.loads((folder / "adapter_config.json").read_text())
    (folder / "adapter_config.json").write_text(json.dumps({**config, **change}))
    result = infer_card(folder, experts=[])
    assert why in result.abstained["trained_on"] and "\n" not in result.abstained["trained_on"]


def test_zero_rank_factors_do_not_fit(bert_base, tmp_path):
    from safetensors.numpy import save_file

    save_file({"base_model.model.encoder.layer.0.attention.self.query.lora_A.weight": np.zeros((0, 32), np.float32),
               "base_model.model.encoder.layer.0.attention.self.query.lora_B.weight": np.zeros((32, 0), np.float32)},
              str(tmp_path / "adapter_model.safetensors"))
    (tmp_path / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "lora_alpha": 8}))
    assert "does not fit" in infer_card(tmp_path, experts=[], base=bert_base).abstained["trained_on"]


def test_the_cli_takes_the_base(bert_base, bert_lora, capsys):
    from hf_probex.cli import main

    assert main(["infer", str(bert_lora[0]), "--base", str(bert_base), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["family"] == "peft" and "cannot be read" not in json.dumps(result["abstained"])


def test_an_adapter_naming_itself_or_another_adapter_as_base_is_refused(bert_lora, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for folder, other in ((a, b), (b, a)):  # a cycle; each has a config.json, so it looks like a model folder
        _save_copy(bert_lora[0], folder, str(other))
        (folder / "config.json").write_text(json.dumps({"model_type": "bert"}))
    assert "is itself an adapter (peft family)" in infer_card(a, experts=[]).abstained["trained_on"]
    (a / "adapter_config.json").write_text(json.dumps({**json.loads((a / "adapter_config.json").read_text()),
                                                       "base_model_name_or_path": str(a)}))
    assert "is the adapter's own folder" in infer_card(a, experts=[]).abstained["trained_on"]


def test_a_pickle_only_base_is_never_unpickled(hub, bert_lora, tmp_path):
    repo_id = hub.repo_id()
    api = HfApi(endpoint=hub.endpoint, token=hub.alice)
    api.create_repo(repo_id)
    (tmp_path / "pickled").mkdir()
    (tmp_path / "pickled" / "config.json").write_text(json.dumps({"model_type": "bert"}))
    (tmp_path / "pickled" / "pytorch_model.bin").write_bytes(b"not opened")
    api.upload_folder(folder_path=tmp_path / "pickled", repo_id=repo_id)
    folder = _save_copy(bert_lora[0], tmp_path / "adapter", repo_id)
    why = infer_card(folder, experts=[]).abstained["trained_on"]
    assert repo_id in why and "never unpickles" in why and "\n" not in why
    assert "never unpickles" in infer_card(folder, experts=[], base=tmp_path / "pickled").abstained["trained_on"]


def test_other_peft_types_are_recognised_and_refused(bert_base, tmp_path):
    from peft import IA3Config, get_peft_model
    from transformers import BertModel

    get_peft_model(BertModel.from_pretrained(bert_base), IA3Config(target_modules=["query", "value", "dense"],
                                                                   feedforward_modules=["dense"])).save_pretrained(tmp_path)
    result = infer_card(tmp_path, experts=[], base=bert_base)
    assert result.family == "peft" and "peft IA3 adapter" in result.abstained["trained_on"]
