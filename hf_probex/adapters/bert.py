"""The BERT family: BERT and its same-layout kin (RoBERTa, XLM-RoBERTa, ELECTRA), MPNet and DistilBERT, in every
layout text models of the family come in:

- a transformers task model (`BertForSequenceClassification`: `bert.encoder.layer.N...`, `classifier.weight`);
- a bare encoder (`BertModel`: `encoder.layer.N...`, no prefix), or its weights alone in one .safetensors file;
- a sentence-transformers folder (modules.json, a pooling module, the encoder's weights unprefixed);
- a SetFit model: a sentence-transformers body, the head's `weight` / `bias` in model_head.safetensors (the zoo and
  SetFit's torch heads; hf_probex never opens the pickled sklearn heads), its labels in config_setfit.json.

Layer names are canonical: the encoder's own names, without the task model's `base_model_prefix`
(`encoder.layer.3.attention.self.query.weight` whether the file stores `bert.encoder...` or `encoder...`), so a
sentence-transformers fine-tune and a sequence classifier of one root share layer names, and routing and the experts
compare them. A head keeps its name (`classifier.weight`); a SetFit head's tensors are `model_head.weight` and
`model_head.bias`. Only floating-point tensors are layers (`embeddings.position_ids` is a buffer of integers).

The default layer is the query projection of block 3 of 6 (`encoder.layer.3.attention.self.query.weight`, the best
measured on all-MiniLM-L6-v2's fine-tunes, issue 24), at the same relative depth in other depths; MPNet and DistilBERT
name their query projection otherwise.

The Hub card fields follow the layout, not the family (`LAYOUTS`): SetFit -> setfit / text-classification;
sentence-transformers -> sentence-transformers / sentence-similarity; a transformers model -> transformers and its
task's pipeline (`TASK_PIPELINES`, from config.json `architectures`; a bare encoder: feature-extraction).
"""

from __future__ import annotations

import re

from ..reading import Checkpoint, WeightSource
from .base import FullModelAdapter, LayerChoice, register

#: config.json model_type -> the `base_model_prefix` its task models store the encoder under.
PREFIXES = {"bert": "bert", "roberta": "roberta", "xlm-roberta": "roberta", "electra": "electra", "mpnet": "mpnet",
            "distilbert": "distilbert"}
#: The query projection of block 3 of all-MiniLM-L6-v2's 6, in each naming of the family (canonical names).
QUERY_LAYERS = (
    LayerChoice("encoder.layer.3.attention.self.query.weight", r"encoder\.layer\.(\d+)\.attention\.self\.query\.weight",
                index=3, depth=6),
    LayerChoice("encoder.layer.3.attention.attn.q.weight", r"encoder\.layer\.(\d+)\.attention\.attn\.q\.weight",
                index=3, depth=6),  # MPNet
    LayerChoice("transformer.layer.3.attention.q_lin.weight", r"transformer\.layer\.(\d+)\.attention\.q_lin\.weight",
                index=3, depth=6),  # DistilBERT
)
#: SetFit's head file, and the name its tensors take among the layers.
SETFIT_HEAD_FILE, SETFIT_HEAD = "model_head.safetensors", "model_head."
#: The architecture's suffix in config.json -> the Hub pipeline of a transformers model of the family.
TASK_PIPELINES = {"ForSequenceClassification": "text-classification", "ForTokenClassification": "token-classification",
                  "ForQuestionAnswering": "question-answering", "ForMaskedLM": "fill-mask", "ForPreTraining": "fill-mask",
                  "Model": "feature-extraction"}
#: A layout's library and pipeline (None: the transformers model's task decides).
LAYOUTS = {"setfit": ("setfit", "text-classification"),
           "sentence-transformers": ("sentence-transformers", "sentence-similarity"),
           "transformers": ("transformers", None)}
_FLOAT_DTYPES = ("F64", "F32", "F16", "BF16")


def layout(source: WeightSource) -> str:
    """The model's layout (a key of `LAYOUTS`), from its file names."""
    files = set(source.files)
    if "config_setfit.json" in files or (SETFIT_HEAD_FILE in files and "modules.json" in files):
        return "setfit"
    return "sentence-transformers" if "modules.json" in files else "transformers"


@register
class BertAdapter(FullModelAdapter):
    family = "bert"
    library_name = "transformers"
    pipeline_tag = "feature-extraction"
    model_types = frozenset(PREFIXES)
    # A bare file: word embeddings (a ViT has patch embeddings), or encoder blocks under a task model's prefix.
    key_pattern = (r"((bert|roberta|electra|mpnet|distilbert)\.)?embeddings\.word_embeddings\.weight$"
                   r"|(bert|roberta|electra|mpnet)\.encoder\.layer\.\d+\.|distilbert\.transformer\.layer\.\d+\.")
    weight_files = ("model.safetensors.index.json", "model.safetensors")

    def library_for(self, source: WeightSource) -> str:
        return LAYOUTS[layout(source)][0]

    def pipeline_for(self, source: WeightSource) -> str | None:
        pipeline = LAYOUTS[layout(source)][1]
        if pipeline:
            return pipeline
        architectures = self.config(source).get("architectures") or []
        if architectures:
            return next((tag for suffix, tag in TASK_PIPELINES.items() if architectures[0].endswith(suffix)), None)
        names = self.candidate_layers(self.checkpoint(source))  # a bare weights file: its heads tell
        if any(n.startswith(("cls.predictions.", "lm_head.")) for n in names):
            return "fill-mask"
        return "text-classification" if any(n.startswith("classifier.") for n in names) else self.pipeline_tag

    def default_layer(self, root_id: str | None, source: WeightSource | None = None) -> LayerChoice:
        if source is None:
            return QUERY_LAYERS[0]
        names = self.candidate_layers(self.checkpoint(source))
        return next((c for c in QUERY_LAYERS if any(re.fullmatch(c.pattern, n) for n in names)), QUERY_LAYERS[0])

    # ---- canonical names -------------------------------------------------------------------------------------

    @staticmethod
    def stored_prefix(checkpoint: Checkpoint) -> str:
        """The task model's prefix the checkpoint stores the encoder under (`bert.`), or '' (a bare encoder)."""
        names = checkpoint.names
        return next((f"{p}." for p in sorted(set(PREFIXES.values())) if any(n.startswith(f"{p}.") for n in names)), "")

    def _stored(self, checkpoint: Checkpoint, name: str) -> tuple[Checkpoint, str]:
        """(checkpoint, stored tensor name) of the canonical layer `name` (LayerMismatchError if the model lacks it)."""
        if name.startswith(SETFIT_HEAD) and SETFIT_HEAD_FILE in checkpoint.source.files:
            head = checkpoint.source.open_checkpoint(SETFIT_HEAD_FILE)
            if name.removeprefix(SETFIT_HEAD) in head:
                return head, name.removeprefix(SETFIT_HEAD)
        prefix = self.stored_prefix(checkpoint)
        for candidate in (prefix + name, name):  # under the prefix, or a head beside it
            if candidate in checkpoint and candidate.removeprefix(prefix) == name:
                return checkpoint, candidate
        raise self._missing(checkpoint, name)

    def candidate_layers(self, checkpoint: Checkpoint) -> list[str]:
        prefix = self.stored_prefix(checkpoint)
        layers = [n.removeprefix(prefix) for n in _float_matrices(checkpoint)]
        if SETFIT_HEAD_FILE in checkpoint.source.files:
            layers += [SETFIT_HEAD + n for n in _float_matrices(checkpoint.source.open_checkpoint(SETFIT_HEAD_FILE))]
        return sorted(layers)

    def layer_shape(self, checkpoint: Checkpoint, name: str) -> tuple[int, ...]:
        stored_in, stored = self._stored(checkpoint, name)
        return stored_in.shape(stored)

    def _read(self, checkpoint: Checkpoint, name: str):
        stored_in, stored = self._stored(checkpoint, name)
        return stored_in.read(stored)


def _float_matrices(checkpoint: Checkpoint) -> list[str]:
    """The tensors an expert could read: two or more dimensions, floating point (not integer buffers)."""
    return [n for n in checkpoint.names if len(checkpoint.shape(n)) >= 2 and checkpoint.info(n).dtype in _FLOAT_DTYPES]
