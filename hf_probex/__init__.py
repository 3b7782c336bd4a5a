"""hf_probex: infer the missing model-card fields of Hugging Face models from their weights."""

__version__ = "0.1.0"
