"""`Expert`: one trained expert as a Hub model (`PyTorchModelHubMixin`): shaping, network, task head, config.

An expert reads one layer of a model in one tree. It holds the input shaping that depends on training
data (the root-centring offset and scale, as buffers), the network of its method (`models.METHODS`),
and its task:

- `multilabel` (class subsets of discriminative trees): logits over the tree's label vocabulary; such an
  expert may also read the model's classification head as a set of rows (`head`: the layer and its
  width; the row classifier's weights as the `head_coef` / `head_intercept` buffers, `head_rows`),
  calibrated jointly with the layers (`head_calibration`);
- `zeroshot` (concepts of LoRA trees): the weight representation and a projected text embedding meet
  in one space, both L2-normalised; scores are cosine similarities, so any concept written as text can
  be scored. The vocabulary's text embeddings are kept as a buffer, so scoring the training concepts
  needs no text encoder; so are those of its default open vocabulary (`open_vocabulary`: the training
  concepts and the held-out ones the weight set names), with their own calibration, fitted on held-out
  concepts (`open_calibration`; `experts.vocabulary` picks what a model is ranked against).

  A zero-shot expert may read several modules of a LoRA (`fusion` "modules", `models.ModuleFusion`): one
  network and text projection per module, a model's cosines averaged over the modules it has, so a LoRA that
  targets only some of them is still read; each subset of modules has its own calibration (`Calibration.subsets`).

`save_pretrained` writes `model.safetensors`, `config.json` (tree, root, adapter, layer name and shape,
task, vocabulary, text encoder, method and hyper-parameters, metrics, format and package versions) and
a README.md model card; `from_pretrained` rebuilds the same expert. `push_to_hub` works against any
Hub endpoint huggingface_hub is pointed at.
"""

from __future__ import annotations

import hashlib
import os
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from huggingface_hub import ModelCard, ModelCardData, PyTorchModelHubMixin, constants
from torch import nn

from .. import __version__
from ..shaping import matrix_shape, stack_inputs
from ..weightsets import WeightRecord
from .calibration.confidence import calibration_ok
from .methods.features import feature_shape, gram
from .calibration.head_rows import RowReader
from .calibration.lineage import LineageCalibration
from .methods.models import METHODS, ModuleFusion, as_tensor, build_net, count_parameters
from .calibration.routes import direct_children_ok, members_ok
from .methods.shaping import load_matrices

#: 2: features (delta or gram), routing by several layers with their own root copy (`route_root`).
FORMAT_VERSION = 2
TASKS = ("multilabel", "zeroshot")
#: Bounds of a valid expert config: a hostile one must not make hf_probex allocate gigabytes.
MAX_DIM = 65_536
MAX_ELEMENTS = 50_000_000  # of one input or routing layer: far above any hidden layer experts read
MAX_HPARAM = 4_096
MAX_VOCABULARY = 100_000
MAX_MODULES = 10_000  # a LoRA tree's base modules (routing.modules): SD 1.5's UNet has about 700 linear ones
#: How an expert combines several layers: stacked into one input (None), or one network per module ("modules").
FUSIONS = (None, "modules")
MAX_FUSED = 4  # modules a fused expert reads at most (each subset of them is calibrated: 2^4 - 1 calibrations)
MAX_EXAMPLES = 16  # example inputs of a class an expert ships (`Expert.examples`)
MAX_EXAMPLE_CHARS = 2_000


def _shape_ok(shape: object, max_dim: int = MAX_DIM) -> bool:
    return (isinstance(shape, list) and 0 < len(shape) <= 4 and all(type(d) is int and 0 < d <= max_dim for d in shape)
            and int(np.prod(shape)) <= MAX_ELEMENTS)


def _layers_ok(rows: object, limit: int = 64) -> bool:
    return isinstance(rows, list) and len(rows) <= limit and all(
        isinstance(row, list) and len(row) == 2 and isinstance(row[0], str) and _shape_ok(row[1]) for row in rows)


def _names_ok(names: object) -> bool:
    return isinstance(names, list) and len(names) <= MAX_VOCABULARY and all(isinstance(v, str) for v in names)


def _examples_ok(examples: object, vocabulary: object) -> bool:
    """`Expert.examples`: at most MAX_EXAMPLES short texts for each of some of the vocabulary's classes."""
    known = {v for v in vocabulary if isinstance(v, str)} if isinstance(vocabulary, list) else set()
    return isinstance(examples, dict) and all(
        k in known and isinstance(v, list) and 0 < len(v) <= MAX_EXAMPLES
        and all(isinstance(t, str) and len(t) <= MAX_EXAMPLE_CHARS for t in v) for k, v in examples.items())


def _trained_from_ok(value: object) -> bool:
    """A `trained_from` record (`hf_probex.from_table`): a small JSON object of strings, numbers and string lists."""
    def ok(v: object) -> bool:
        return (v is None or type(v) in (int, float, bool) or (isinstance(v, str) and len(v) <= 1_000)
                or (isinstance(v, list) and len(v) <= 64 and all(isinstance(x, str) and len(x) <= 1_000 for x in v)))
    return isinstance(value, dict) and len(value) <= 32 and all(isinstance(k, str) and ok(v) for k, v in value.items())


def _lineage_ok(value: object) -> bool:
    try:
        LineageCalibration.from_dict(value)
    except ValueError:
        return False
    return True


def _labels(config: dict) -> int | None:
    """How many per-label means a class-subset expert's calibration holds (its vocabulary's size); 0 for concepts."""
    if config.get("task") != "multilabel":
        return 0
    return len(config["vocabulary"]) if isinstance(config.get("vocabulary"), list) else None


def _check_format(version: object) -> None:
    if version != FORMAT_VERSION:
        newer = isinstance(version, int) and version > FORMAT_VERSION
        raise ValueError(f"this expert has format version {version}; this hf_probex ({__version__}) reads "
                         f"version {FORMAT_VERSION}: " + ("upgrade hf_probex" if newer else "train it again with `hf-probex train`"))


def check_config(config: object) -> None:
    """ValueError (one line) unless `config` is an expert config hf_probex can build within bounds: known task
    and method, the current format, bounded shapes, hyper-parameters and vocabulary. Run before building an
    expert from a config that came from anywhere (a Hub repo is anyone's)."""
    if not isinstance(config, dict):
        raise ValueError("the expert config is not a JSON object")
    _check_format(config.get("format_version"))
    problems = {
        "task": config.get("task") in TASKS,
        "method": config.get("method") in METHODS,
        "layer": isinstance(config.get("layer"), str),
        # stacked layers are one [1, D] row, D the sum of their sizes: only the element count bounds it
        "input_shape": _shape_ok(config.get("input_shape"), MAX_ELEMENTS) and len(config["input_shape"]) == 2,
        "inputs": config.get("inputs") is None or _layers_ok(config["inputs"]),
        "routing": isinstance(config.get("routing") or {}, dict)
        and _layers_ok((config.get("routing") or {}).get("layers", []))
        and _layers_ok((config.get("routing") or {}).get("modules", []), MAX_MODULES)
        and ("direct_children" not in (config.get("routing") or {}) or direct_children_ok(config["routing"]["direct_children"]))
        and ("members" not in (config.get("routing") or {}) or members_ok(config["routing"]["members"]))
        and all(_lineage_ok(value) for key, value in (config.get("routing") or {}).items()
                if key in ("lineage", "sketch_lineage")),
        "vocabulary": _names_ok(config.get("vocabulary")),
        "open_vocabulary": config.get("open_vocabulary") is None or _names_ok(config["open_vocabulary"]),
        "examples": config.get("examples") is None or _examples_ok(config["examples"], config.get("vocabulary")),
        "hparams": isinstance(config.get("hparams", {}), dict) and all(
            type(v) is int and 0 < v <= MAX_HPARAM for v in config.get("hparams", {}).values()),
        "text_dim": config.get("text_dim") is None or (type(config["text_dim"]) is int and 0 < config["text_dim"] <= MAX_DIM),
        "fusion": config.get("fusion") is None or (
            config["fusion"] in FUSIONS and config.get("task") == "zeroshot" and isinstance(config.get("inputs"), list)
            and 2 <= len(config["inputs"]) <= MAX_FUSED and all(len(shape) == 2 for _, shape in config["inputs"])),
        "trained_from": config.get("trained_from") is None or _trained_from_ok(config["trained_from"]),
        "calibration": config.get("calibration") is None or calibration_ok(config["calibration"], _labels(config)),
        "head_calibration": config.get("head_calibration") is None
        or calibration_ok(config["head_calibration"], _labels(config)),
        "open_calibration": config.get("open_calibration") is None or calibration_ok(config["open_calibration"], 0),
        "head": config.get("head") is None or (isinstance(config["head"], dict) and isinstance(config["head"].get("layer"), str)
                                               and type(config["head"].get("width")) is int and 0 < config["head"]["width"] <= MAX_DIM
                                               and isinstance(config.get("head_calibration"), dict)),
    }
    wrong = [key for key, ok in problems.items() if not ok]
    if wrong:
        raise ValueError(f"not a valid hf_probex expert config (format {FORMAT_VERSION}): bad {', '.join(wrong)}; "
                         f"retrain it with this hf_probex, or use another expert")


class Expert(nn.Module, PyTorchModelHubMixin, library_name="hf_probex", tags=["hf-probex", "probex-expert"]):
    """A trained (or to-be-trained) expert for one (tree, layer, task); see the module docstring."""

    def __init__(
        self,
        *,
        method: str,
        task: str,
        input_shape: list[int],
        vocabulary: list[str],
        layer: str = "",
        layer_shape: list[int] | None = None,
        tree: str = "",
        root: str | None = None,
        adapter: str | None = None,
        hparams: dict | None = None,
        centred: bool = False,
        conv_layout: str = "probex",
        text_encoder: str | None = None,
        text_dim: int | None = None,
        prompt: str = "{}",
        temperature: float = 1.0,
        metrics: dict | None = None,
        calibration: dict | None = None,
        routing: dict | None = None,
        inputs: list | None = None,
        features: str = "delta",
        head: dict | None = None,
        head_calibration: dict | None = None,
        open_vocabulary: list[str] | None = None,
        open_calibration: dict | None = None,
        fusion: str | None = None,
        trained_from: dict | None = None,
        examples: dict | None = None,
        format_version: int = FORMAT_VERSION,
        package_version: str = __version__,
    ):
        super().__init__()
        _check_format(format_version)
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}; choose one of: {', '.join(TASKS)}")
        if task == "zeroshot" and not text_dim:
            raise ValueError("a zero-shot expert needs text_dim (the text encoder's embedding size)")
        if fusion not in FUSIONS or (fusion and (task != "zeroshot" or not inputs or len(inputs) < 2)):
            raise ValueError(f"fusion {fusion!r}: only a zero-shot expert of several layers fuses them (\"modules\")")
        self.task, self.vocabulary = task, list(vocabulary)
        self.input_shape = tuple(input_shape)
        self.temperature = temperature
        self._config = dict(
            method=method, task=task, input_shape=list(input_shape), vocabulary=list(vocabulary), layer=layer,
            layer_shape=list(layer_shape or input_shape), tree=tree, root=root, adapter=adapter, hparams=dict(hparams or {}),
            centred=centred, conv_layout=conv_layout, text_encoder=text_encoder, text_dim=text_dim, prompt=prompt,
            temperature=temperature, routing=dict(routing or {}), features=features, head=dict(head) if head else None,
            inputs=[[name, list(shape)] for name, shape in inputs] if inputs else [[layer, list(layer_shape or input_shape)]],
            open_vocabulary=list(open_vocabulary or []), fusion=fusion,
            trained_from=dict(trained_from) if trained_from else None,
            examples={k: list(v) for k, v in (examples or {}).items()},
            format_version=FORMAT_VERSION,
            package_version=package_version,
        )
        self.metrics = dict(metrics or {})
        self.calibration = dict(calibration) if calibration else None
        self.head_calibration = dict(head_calibration) if head_calibration else None
        self.open_calibration = dict(open_calibration) if open_calibration else None
        self.register_buffer("offset", torch.zeros(self.input_shape))
        self.register_buffer("scale", torch.ones(()))
        # the root's copy of the layers routing compares (`routing.layers`), flattened and concatenated
        self.register_buffer("route_root", torch.zeros(sum(int(np.prod(s)) for _, s in self.routing.get("layers", []))))
        self.features = features
        net_shape = feature_shape(features, self.input_shape, self._config["inputs"])
        closed_form = method in METHODS and METHODS[method].closed_form  # build_net names an unknown method
        if task == "multilabel":
            n_out = len(vocabulary)
        else:  # Adam-trained nets output a representation; a closed-form one regresses the text embedding itself
            n_out = text_dim if closed_form else None
        if fusion:
            if closed_form:
                raise ValueError(f"{method} fits one closed form over its input: it cannot fuse modules")
            shapes = [matrix_shape(tuple(shape), conv_layout) for _, shape in self._config["inputs"]]
            self.net = ModuleFusion(method, shapes, **(hparams or {}))
        else:
            self.net = build_net(method, net_shape, n_out, **(hparams or {}))
        if task == "zeroshot":
            if fusion:  # each module's representation has its own text space
                self.text_proj = nn.ModuleList(nn.Linear(text_dim, self.net.out_dim) for _ in self.net.members)
            else:
                self.text_proj = nn.Identity() if closed_form else nn.Linear(text_dim, self.net.out_dim)
            self.register_buffer("concept_text", torch.zeros(len(vocabulary), text_dim))
            self.register_buffer("open_text", torch.zeros(len(open_vocabulary or []), text_dim))
        if head:
            self.register_buffer("head_coef", torch.zeros(len(vocabulary), head["width"]))
            self.register_buffer("head_intercept", torch.zeros(len(vocabulary)))

    @property
    def config(self) -> dict:
        """What config.json holds: the constructor's arguments, the current metrics and calibration."""
        return {**self._config, "metrics": self.metrics, "calibration": self.calibration,
                "head_calibration": self.head_calibration, "open_calibration": self.open_calibration}

    @property
    def trained_from(self) -> dict | None:
        """Where its training data came from when not a weight set folder: a tree table (`hf_probex.from_table`):
        `table`, `commit`, `root`, `documented`, `trained`, `held_out`, `undocumented`, `sources`."""
        return self._config.get("trained_from")

    def set_trained_from(self, record: dict) -> None:
        """Record where its training data came from (see `trained_from`); config.json and the card show it."""
        self._config["trained_from"] = dict(record)

    @property
    def examples(self) -> dict[str, list[str]]:
        """Example inputs of its classes (a text tree's: texts no zoo child trained on), by class: with them
        `infer_card` names a text classifier's head rows by running it (`head_naming`) beside what the weights
        say; empty: it reads weights only."""
        return self._config.get("examples") or {}

    def set_examples(self, examples: dict[str, list[str]]) -> None:
        """Ship `examples` (at most MAX_EXAMPLES texts of each of its classes; see `examples`)."""
        if not _examples_ok(examples, self.vocabulary):
            raise ValueError(f"examples must be at most {MAX_EXAMPLES} texts of at most {MAX_EXAMPLE_CHARS} characters "
                             f"for classes of the expert's vocabulary")
        self._config["examples"] = {k: list(v) for k, v in examples.items()}

    @property
    def routing(self) -> dict:
        """What routing needs to know about the tree (hf_probex.experts.calibration.routes): `layers`, the [name, shape] pairs
        it compares with the root (whose copies are the `route_root` buffer), `max_distance`, the farthest
        training model's distance on them, `nearest_other`, the nearest other known root's, and `reach`, the
        distance beyond which a model is not of this tree; where the training models' parents were known,
        `direct_children` (how often a model that near the root is its direct child), `members` (each training model's
        parent) and `lineage` (`experts.calibration.lineage.LineageCalibration`). LoRA trees have `modules` instead: the base's
        linear modules and their shapes (`routes.fit_lora_modules`)."""
        return self._config["routing"]

    def set_routing(self, routing: dict, root_layers: np.ndarray) -> None:
        """Record what `routes.fit_routing` measured, and the root's copy of the routing layers (flattened)."""
        self._config["routing"] = dict(routing)
        self.route_root = as_tensor(root_layers).reshape(-1).clone()

    @property
    def row_reader(self) -> RowReader | None:
        """The classification head's row reader (`head_rows`), or None: this expert reads hidden layers only."""
        head = self._config["head"]
        if not head:
            return None
        return RowReader(head["layer"], self.head_coef.numpy(), self.head_intercept.numpy())

    def set_head(self, reader: RowReader | None, calibration: dict | None = None) -> None:
        """Read the classification head too: `reader`'s rows, with `calibration` fitted jointly with the layers; None:
        the hidden layers alone, at their own calibration."""
        if reader is None:
            self._config["head"], self.head_calibration = None, None
            for name in ("head_coef", "head_intercept"):
                if hasattr(self, name):
                    delattr(self, name)
            return
        self._config["head"] = {"layer": reader.layer, "width": reader.width}
        self.register_buffer("head_coef", as_tensor(reader.coef).clone())
        self.register_buffer("head_intercept", as_tensor(reader.intercept).clone())
        self.head_calibration = dict(calibration)

    def calibration_for(self, head: np.ndarray | None) -> dict:
        """The calibration a model is read with: the joint one when its `head` ([k, d] rows, or None) is readable."""
        reader = self.row_reader
        return self.head_calibration if reader is not None and reader.can_read(head) else self.calibration

    @property
    def open_vocabulary(self) -> list[str]:
        """The concepts a zero-shot expert ranks by default (`open_text` their embeddings); empty: only its training ones."""
        return self._config["open_vocabulary"]

    def set_open_vocabulary(self, names: list[str], text: np.ndarray, calibration: dict | None = None) -> None:
        """Rank `names` (text embeddings `text`) by default, with `calibration` (fitted on held-out concepts) or none."""
        self._config["open_vocabulary"] = list(names)
        self.open_text = as_tensor(text).clone()
        self.open_calibration = dict(calibration) if calibration else None

    @property
    def n_parameters(self) -> int:
        return count_parameters(self.net) + (count_parameters(self.text_proj) if self.task == "zeroshot" else 0)

    def set_centring(self, offset: np.ndarray, scale: float) -> None:
        """Inputs become (x - offset) / scale (see `shaping.centring`)."""
        self.offset.copy_(as_tensor(offset))
        self.scale.fill_(scale)

    @property
    def fused(self) -> bool:
        """Whether it reads several modules, each by its own network, and combines the ones a model has."""
        return self._config["fusion"] == "modules"

    def present(self, x: torch.Tensor) -> torch.Tensor:
        """[B, k] which of a fused expert's modules each model of the batch has (a missing one is all NaN,
        `Adapter.read_input(..., allow_missing=True)`); one column, all True, for an expert of one input."""
        if not self.fused:
            return torch.ones(len(x), 1, dtype=torch.bool)
        blocks = [part.isfinite().flatten(1) for part in self.net.split(x)]
        partial = [b.any(1) & ~b.all(1) for b in blocks]
        if any(p.any() for p in partial):
            raise ValueError("input weights hold NaN or inf")
        present = torch.stack([b.all(1) for b in blocks], dim=1)
        if not present.any(1).all():
            raise ValueError(f"the model has none of the modules this expert reads ({self._describe_layers()})")
        return present

    def _describe_layers(self) -> str:
        return ", ".join(name for name, _ in self._config["inputs"])

    def shape_input(self, x: torch.Tensor) -> torch.Tensor:
        """Check a batch [B, H, W] against the expert and compute its features (`features`: the centred change,
        or its Gram). A fused expert's missing modules (`present`) become zeros: their members' outputs are not used."""
        if tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(f"input of shape {list(x.shape[1:])} does not match this expert's layer "
                             f"{self._config['layer'] or '?'} of shape {list(self.input_shape)} (wrong tree or family?)")
        if self.fused:
            self.present(x)  # raises on partly non-finite modules
            x = torch.nan_to_num(x, nan=0.0)
        if not torch.isfinite(x).all():
            raise ValueError("input weights hold NaN or inf")
        if self.features == "gram":
            return gram(x - self.offset, self._config["inputs"])
        return (x - self.offset) / self.scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """multilabel: logits [B, n_labels]; zeroshot: unit-norm weight embeddings [B, D] (fused: one per module,
        [B, k, D])."""
        out = self.net(self.shape_input(x))
        return out if self.task == "multilabel" else nn.functional.normalize(out, dim=-1)

    def embed_text(self, text: torch.Tensor) -> torch.Tensor:
        """Text encoder embeddings [C, text_dim] -> unit-norm vectors in the weight embedding space (fused: one
        space per module, [k, C, D])."""
        if self.fused:
            return torch.stack([nn.functional.normalize(proj(text), dim=-1) for proj in self.text_proj])
        return nn.functional.normalize(self.text_proj(text), dim=-1)

    def member_cosines(self, x: torch.Tensor, text: torch.Tensor | None = None) -> torch.Tensor:
        """A zero-shot expert's cosines [B, k, C] against `text` (default: vocabulary) by each of its k modules, NaN
        where the model lacks the module (k = 1 unless fused)."""
        text = self.embed_text(self.concept_text if text is None else text)
        if not self.fused:
            return (self(x) @ text.T)[:, None]
        cosines = torch.einsum("bkd,kcd->bkc", self(x), text)
        return cosines.masked_fill(~self.present(x)[..., None], float("nan"))

    @torch.no_grad()
    def search_vectors(self, matrices: np.ndarray | None = None, text: np.ndarray | None = None) -> np.ndarray:
        """A zero-shot expert's vectors for a nearest-neighbour index: of models (`matrices`) or of texts (`text`,
        encoder embeddings), such that a model's inner product with a text is its cosine score (`predict`). For a
        fused expert a model's vector is its modules' embeddings side by side, divided by how many it has (zeros
        for the others) and a text's is its embedding in each module's space side by side, so the inner product is
        the average over the modules the model has. [n, k * D] float32."""
        self.eval()
        if (matrices is None) == (text is None):
            raise ValueError("give the models' matrices or the texts' embeddings, one of them")
        if text is not None:
            vectors = self.embed_text(as_tensor(text))
            return (vectors.transpose(0, 1).flatten(1) if self.fused else vectors).numpy()
        x = as_tensor(matrices)
        embedded = self(x)
        if not self.fused:
            return embedded.numpy()
        present = self.present(x)
        weights = present / present.sum(dim=1, keepdim=True)
        return (embedded * weights[..., None]).flatten(1).numpy()

    def fingerprint(self) -> str:
        """16 hex digits of a SHA-256 over the expert's weights and buffers (names, shapes, dtypes, bytes): what makes
        its `search_vectors`, so a table of search vectors records it and search refuses vectors of another expert
        (another training run, another version), wherever either copy was loaded from."""
        digest = hashlib.sha256()
        for name, tensor in sorted(self.state_dict().items()):
            flat = tensor.detach().cpu().contiguous().reshape(-1)
            digest.update(f"{name} {tuple(tensor.shape)} {tensor.dtype}\n".encode())
            digest.update(flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b"")
        return digest.hexdigest()[:16]

    def logits(self, x: torch.Tensor, text: torch.Tensor | None = None) -> torch.Tensor:
        """multilabel: label logits; zeroshot: cosine similarities / temperature against `text` (default:
        vocabulary), averaged over the modules the model has when fused."""
        if self.task == "multilabel":
            return self(x)
        return self.member_cosines(x, text).nanmean(dim=1) / self.temperature

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """BCE over labels (y: 0/1 [B, n_labels]) or cross-entropy over the vocabulary (y: concept indices [B]);
        fused: each module's own cross-entropy on the models that have it, averaged (every module learns to read
        alone, as it must for a LoRA that targets only it)."""
        if self.task == "multilabel":
            return nn.functional.binary_cross_entropy_with_logits(self.logits(x), y)
        if not self.fused:
            return nn.functional.cross_entropy(self.logits(x), y.long())
        cosines, present = self.member_cosines(x) / self.temperature, self.present(x)
        losses = [nn.functional.cross_entropy(cosines[present[:, k], k], y[present[:, k]].long())
                  for k in range(cosines.shape[1]) if present[:, k].any()]
        return torch.stack(losses).mean()

    @torch.no_grad()
    def predict(self, matrices: np.ndarray, text: np.ndarray | None = None) -> np.ndarray:
        """Label probabilities [n, n_labels], or cosine scores [n, n_concepts] against `text` (default: vocabulary)."""
        self.eval()
        out = self.logits(as_tensor(matrices), None if text is None else as_tensor(text))
        return torch.sigmoid(out).numpy() if self.task == "multilabel" else (out * self.temperature).numpy()

    @torch.no_grad()
    def predict_members(self, matrices: np.ndarray, text: np.ndarray | None = None) -> np.ndarray:
        """A zero-shot expert's cosine scores by module [n, k, n_concepts] (NaN: the model lacks that module)."""
        self.eval()
        return self.member_cosines(as_tensor(matrices), None if text is None else as_tensor(text)).numpy()

    def present_modules(self, matrices: np.ndarray) -> tuple[int, ...]:
        """Which of its modules (indices into `config["inputs"]`) one model ([1, ...]) has; all for an unfused expert."""
        return tuple(int(k) for k in torch.nonzero(self.present(as_tensor(matrices))[0]).flatten())

    def confidences(self, matrices: np.ndarray, text: np.ndarray | None = None,
                    heads: list[np.ndarray | None] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(predictions as `predict`, calibrated confidence of each decision): per (model, label) for class
        subsets [n, n_labels], of the top-1 concept for zero-shot [n] (see `calibration`). `heads`: each
        model's classification head rows (or None); a model whose head the expert reads is calibrated with
        it (`calibration_for`: compare its confidences with that calibration's threshold).

        Raises:
            ValueError: the expert was saved without a calibration (train it with cross-validation).
        """
        from .calibration.confidence import Calibration

        if not self.calibration:
            raise ValueError("this expert has no calibration: train it with cross-validation (--folds >= 2)")
        predictions = self.predict(matrices, text)
        heads = heads if heads is not None else [None] * len(predictions)
        reader, confidence = self.row_reader, []
        for prediction, head in zip(predictions, heads):
            calibration = Calibration(**self.calibration_for(head))
            rows = reader.scores(head)[None] if calibration.reads_head else None
            confidence.append(calibration.confidences(self.task, prediction[None], rows)[0])
        return predictions, np.stack(confidence) if confidence else np.zeros_like(predictions)

    def predict_files(self, paths: list[str | Path], text: np.ndarray | None = None) -> np.ndarray:
        """`predict` on weight files (safetensors of models of this tree, or their LoRA files): reads and
        shapes this expert's layer as in training (`read_files`).

        Raises:
            ValueError: a file lacks the layer, shapes it otherwise, or holds NaN/inf.
        """
        return self.predict(self.read_files(paths), text)

    def read_files(self, paths: list[str | Path]) -> np.ndarray:
        """The inputs this expert reads from weight files (its layers, shaped as in training), for `predict` or
        `search_vectors`.

        Raises:
            ValueError: a file lacks the layer, shapes it otherwise, or holds NaN/inf.
        """
        kind = "lora" if self._config["adapter"] == "lora" else "classifier"
        records = [WeightRecord(self._config["tree"], str(p), None, (), Path(p), kind) for p in paths]
        parts = [load_matrices(records, name, self._config["conv_layout"])[0] for name, _ in self._config["inputs"]]
        return parts[0] if len(parts) == 1 else stack_inputs(parts)

    @classmethod
    def _from_pretrained(cls, *, model_id: str, revision, cache_dir, force_download: bool, local_files_only: bool,
                         token, map_location: str = "cpu", strict: bool = False, **model_kwargs):
        """As `PyTorchModelHubMixin._from_pretrained`, but the config is validated first (`check_config`), the
        weights come from model.safetensors only (the mixin falls back to unpickling pytorch_model.bin), and
        nothing is printed (the mixin prints "Loading weights from local directory" to stdout, which would
        corrupt `hf-probex infer --json`)."""
        from safetensors import SafetensorError

        check_config(model_kwargs)
        try:
            if os.path.isdir(model_id):
                model_file = os.path.join(model_id, constants.SAFETENSORS_SINGLE_FILE)
            else:
                from huggingface_hub import hf_hub_download

                model_file = hf_hub_download(model_id, constants.SAFETENSORS_SINGLE_FILE, revision=revision,
                                             cache_dir=cache_dir, force_download=force_download, token=token,
                                             local_files_only=local_files_only)
            return cls._load_as_safetensor(cls(**model_kwargs), model_file, map_location, strict)
        except (OSError, RuntimeError, SafetensorError) as err:  # no model.safetensors, weights of other shapes
            first = (str(err).strip().splitlines() or [""])[0][:200]
            raise ValueError(f"the expert {model_id} cannot be loaded ({err.__class__.__name__}: {first}): its "
                             f"{constants.SAFETENSORS_SINGLE_FILE} is missing or does not fit its config.json; "
                             f"retrain it with this hf_probex, or use another expert") from None

    def save_pretrained(self, save_directory, *, config: dict | None = None, **kwargs):
        """As `PyTorchModelHubMixin.save_pretrained`, with the current metrics in config.json."""
        return super().save_pretrained(save_directory, config=config or self.config, **kwargs)

    def generate_model_card(self, *args, **kwargs) -> ModelCard:
        """The README, rendered from templates/EXPERT_CARD_TEMPLATE.md: what the expert reads and predicts,
        its metrics, how it was trained, and tags that find it by tree (`hf-probex-tree-<tree>`)."""
        c = self.config
        card_data = ModelCardData(
            library_name="hf_probex", base_model=c["root"],
            tags=["hf-probex", "probex-expert", f"hf-probex-tree-{c['tree']}", f"hf-probex-method-{c['method']}"],
        )
        predicts = ("which of its tree's classes a fine-tuned model was trained on (multi-label)" if c["task"] == "multilabel"
                    else f"which concept a LoRA was trained on, scored against text (zero-shot; text encoder {c['text_encoder']})")
        return ModelCard.from_template(
            card_data, template_str=_expert_template(), tree=c["tree"], layer=c["layer"], method=c["method"],
            inputs=_describe_inputs(c["inputs"], self.fused), adapter=c["adapter"], root=c["root"], predicts=predicts,
            centred=c["centred"], n_labels=len(c["vocabulary"]), n_parameters=self.n_parameters,
            metrics=[(name, _fmt_metric(value)) for name, value in sorted(self.metrics.items())],
            package_version=c["package_version"], hparams=c["hparams"], trained_from=c.get("trained_from"),
        )


def _expert_template() -> str:
    return resources.files("hf_probex").joinpath("templates/EXPERT_CARD_TEMPLATE.md").read_text(encoding="utf-8")


def _describe_inputs(inputs: list, fused: bool) -> str:
    if len(inputs) == 1:
        return f"one layer, `{inputs[0][0]}` (shape {inputs[0][1]})"
    layers = ", ".join(f"`{name}` {shape}" for name, shape in inputs)
    if fused:
        return f"{len(inputs)} modules, each by its own network (a LoRA is read by those it targets): {layers}"
    return f"{len(inputs)} layers stacked into one vector: {layers}"


def _fmt_metric(value) -> str:
    if isinstance(value, dict) and "mean" in value:
        return f"{value['mean']:.1f} +- {value['se']:.1f}"
    return f"{value:.2f}" if isinstance(value, float) else str(value)
