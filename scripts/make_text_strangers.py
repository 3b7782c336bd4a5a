"""Fine-tunes of the real all-MiniLM-L6-v2 made as strangers make them: by the libraries' own training APIs, not the
zoo's loops, so that a benchmark measures experts on recipes they never saw.

Recipes (each with its own tool, hyper-parameters and file layout; classes drawn from fortunes categories, some of
them outside the text-bench vocabulary):

- `trainer`: transformers' `Trainer` with its defaults (AdamW 5e-5, linear decay, 3 epochs, batch 8), saved by
  `trainer.save_model` (id2label names or LABEL_i);
- `trainer-long`: the same for 8 epochs at 1e-4 with warmup and weight decay, saved in bfloat16 (a stronger fine-tune
  than any zoo child);
- `st-fit`: sentence-transformers' own `SentenceTransformerTrainer` with `MultipleNegativesRankingLoss` on
  (anchor, positive) pairs of one category, saved by `model.save`;
- `st-cosine`: sentence-transformers with `CosineSimilarityLoss` on pairs labelled same / different (SetFit's loss),
  and a logistic-regression head saved as SetFit saves it (config_setfit.json; the head as safetensors);
- `peft-all-linear`: peft LoRA on "all-linear" modules, rank 32 with rsLoRA, trained by `Trainer`, kept as the
  adapter folder (base: the root's Hub id);
- `grandchild`: `Trainer` fine-tuning a text-bench child (a second or third generation by another loop).

Every model's truth goes to manifest.json (labels, recipe, parent, layout). Resumable: finished models are kept.

    python scripts/make_text_strangers.py --zoo ~/.cache/hf_probex/zoos/text-bench-seed0 --out DIR [--per-recipe 8]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

import numpy as np

RECIPES = ("trainer", "trainer-long", "st-fit", "st-cosine", "peft-all-linear", "grandchild")
MINILM = "sentence-transformers/all-MiniLM-L6-v2"


def _dataset(texts: list[str], labels: np.ndarray, tokenizer):
    from datasets import Dataset

    data = Dataset.from_dict({"text": texts, "label": labels.tolist()})
    return data.map(lambda batch: tokenizer(batch["text"], truncation=True, max_length=64), batched=True)


def _trainer_model(base: Path, names: list[str], texts, labels, out: Path, args: dict, lora: bool = False) -> None:
    import torch
    from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer,
                              TrainingArguments)

    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForSequenceClassification.from_pretrained(
        base, num_labels=len(names), id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)},
        ignore_mismatched_sizes=True, dtype=torch.float32)
    if lora:
        from peft import LoraConfig, TaskType, get_peft_model

        model = get_peft_model(model, LoraConfig(task_type=TaskType.SEQ_CLS, r=32, lora_alpha=32, use_rslora=True,
                                                 target_modules="all-linear", lora_dropout=0.05))
    training = TrainingArguments(output_dir=str(out / ".work"), report_to=[], save_strategy="no", logging_strategy="no",
                                 use_cpu=True, disable_tqdm=True, seed=args.pop("seed"), **args)
    trainer = Trainer(model=model, args=training, train_dataset=_dataset(texts, labels, tokenizer),
                      data_collator=DataCollatorWithPadding(tokenizer))
    trainer.train()
    if lora:
        model.save_pretrained(out)
        config = json.loads((out / "adapter_config.json").read_text())
        config["base_model_name_or_path"] = MINILM
        (out / "adapter_config.json").write_text(json.dumps(config, indent=2))
    else:
        trainer.save_model(str(out))
        tokenizer.save_pretrained(out)
    shutil.rmtree(out / ".work", ignore_errors=True)
    (out / "README.md").unlink(missing_ok=True)


def _sentence_model(base: Path, names: list[str], texts, labels, out: Path, loss_name: str, seed: int,
                    setfit_labels: bool) -> None:
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer, losses
    from sentence_transformers.training_args import SentenceTransformerTrainingArguments

    rng = np.random.default_rng(seed)
    model = SentenceTransformer(str(base), device="cpu")
    by_class = {c: [t for t, y in zip(texts, labels) if y == c] for c in set(labels.tolist())}
    if loss_name == "mnrl":
        pairs = {"anchor": [], "positive": []}
        for text, y in zip(texts, labels):
            pairs["anchor"].append(text)
            pairs["positive"].append(by_class[int(y)][int(rng.integers(len(by_class[int(y)])))])
        loss = losses.MultipleNegativesRankingLoss(model)
    else:
        pairs = {"sentence1": [], "sentence2": [], "score": []}
        for _ in range(4 * len(texts)):
            i, j = rng.integers(len(texts), size=2)
            pairs["sentence1"].append(texts[i])
            pairs["sentence2"].append(texts[j])
            pairs["score"].append(float(labels[i] == labels[j]))
        loss = losses.CosineSimilarityLoss(model)
    args = SentenceTransformerTrainingArguments(output_dir=str(out / ".work"), num_train_epochs=1, per_device_train_batch_size=16,
                                                learning_rate=2e-5, report_to=[], save_strategy="no", use_cpu=True,
                                                disable_tqdm=True, seed=seed, logging_strategy="no")
    SentenceTransformerTrainer(model=model, args=args, train_dataset=Dataset.from_dict(pairs), loss=loss).train()
    model.save(str(out))
    shutil.rmtree(out / ".work", ignore_errors=True)
    (out / "README.md").unlink(missing_ok=True)
    if loss_name == "cosine":  # SetFit: a logistic-regression head on the fine-tuned body's embeddings
        import torch
        from safetensors.torch import save_file
        from sklearn.linear_model import LogisticRegression

        head = LogisticRegression(max_iter=1000).fit(model.encode(texts), labels)
        coef, intercept = head.coef_, head.intercept_
        if len(names) == 2:
            coef, intercept = np.concatenate([-coef, coef]) / 2, np.concatenate([-intercept, intercept]) / 2
        save_file({"weight": torch.from_numpy(coef.astype(np.float32)).contiguous(),
                   "bias": torch.from_numpy(intercept.astype(np.float32)).contiguous()}, str(out / "model_head.safetensors"))
        (out / "config_setfit.json").write_text(json.dumps({"labels": names if setfit_labels else None,
                                                            "normalize_embeddings": False}))


def make_one(zoo, recipe: str, index: int, out: Path) -> dict:
    from hf_probex.zoo.fortunes import load_fortunes
    from hf_probex.zoo.trees.text import root_folder

    rng = np.random.default_rng([index, RECIPES.index(recipe)])
    info = zoo.trees["text"]
    vocabulary, unseen = list(info["vocabulary"]), [c for c in info["holdout_concepts"] if c not in info["vocabulary"]]
    count = int(rng.integers(3, 7))
    classes = [vocabulary[i] for i in rng.choice(len(vocabulary), size=count, replace=False)]
    if unseen and rng.random() < 0.15:
        classes[0] = unseen[int(rng.integers(len(unseen)))]
    data = load_fortunes(tuple(vocabulary + unseen))
    texts, labels = data.labelled(classes, "train", int(rng.integers(30, 50)), rng)
    named = bool(rng.random() < 0.5)
    names = classes if named else [f"LABEL_{i}" for i in range(len(classes))]
    base, parent = root_folder(), MINILM
    seed = int(rng.integers(2**31 - 1))
    if recipe == "grandchild":
        children = [s for s in zoo.specs("text") if s.role == "child" and zoo.is_finished(s)
                    and s.hparams.get("layout") in ("transformers", "peft-merged", "sentence-transformers")]
        spec = children[int(rng.integers(len(children)))]
        base, parent = zoo.model_dir("text", spec.name), spec.repo_id
    if recipe in ("trainer", "grandchild"):
        _trainer_model(base, names, texts, labels, out, {"seed": seed})
    elif recipe == "trainer-long":
        _trainer_model(base, names, texts, labels, out, {"seed": seed, "num_train_epochs": 8, "learning_rate": 1e-4,
                                                          "warmup_steps": 0.1, "weight_decay": 0.01, "bf16": False})
        _to_bfloat16(out)
    elif recipe == "peft-all-linear":
        _trainer_model(base, names, texts, labels, out, {"seed": seed, "learning_rate": 5e-4}, lora=True)
    else:
        _sentence_model(base, names, texts, labels, out, "mnrl" if recipe == "st-fit" else "cosine", seed, named)
    return {"labels": classes, "recipe": recipe, "parent": parent, "named": named,
            "unseen": [c for c in classes if c in unseen]}


def _to_bfloat16(folder: Path) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    path = folder / "model.safetensors"
    save_file({k: v.to(torch.bfloat16) for k, v in load_file(str(path)).items()}, str(path), metadata={"format": "pt"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", required=True, help="the text-bench zoo (categories; the grandchildren's parents)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--per-recipe", type=int, default=8)
    args = parser.parse_args()

    import torch
    from tqdm.auto import tqdm
    from transformers.utils import logging

    from hf_probex.zoo import Zoo

    torch.set_num_threads(1)
    logging.set_verbosity_error()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    zoo, out = Zoo.open(args.zoo), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    manifest_path = out / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    jobs = [(recipe, i) for i in range(args.per_recipe) for recipe in RECIPES]
    for recipe, i in tqdm(jobs, desc="strangers", unit="model"):
        name = f"{recipe}-{i:02d}"
        if name in manifest:
            continue
        work = out / f".{name}.tmp"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        manifest[name] = make_one(zoo, recipe, i, work)
        shutil.rmtree(out / name, ignore_errors=True)
        os.replace(work, out / name)
        tmp = manifest_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(manifest, indent=2))
        os.replace(tmp, manifest_path)


if __name__ == "__main__":
    main()
