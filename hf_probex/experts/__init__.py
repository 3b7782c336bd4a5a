"""ProbeX experts: small models that read one layer of a model in a known tree and predict what it was trained on.

Modules, one concept each:

- `shaping`: reading layers from weight files and turning each into the 2-D matrix an expert reads
  (linear as is, convolutions reshaped, LoRA pairs made dense, optional root centring);
- `ridge`: the tuned ridge on z-scored weights (shared with the signal check);
- `models`: the expert networks behind one interface, and their registry (`METHODS`);
- `training`: fitting a network (Adam with validation-based model selection, or closed form);
- `evaluation`: metrics, folds, standard errors and references (no torch);
- `harness`: k-fold cross-validation of any method on any (tree, layer);
- `hub`: `Expert`, a trained expert as a Hub model (`PyTorchModelHubMixin`);
- `report`: plain-text tables of cross-validation reports and sweeps;
- `sweep`: every layer x method of a tree, in parallel processes, resumable;
- `signal`: the signal check of a zoo (`hf-probex zoo signal`): does a tree's weights carry its labels?

Nothing is imported here, so the modules that need no torch (`shaping`, `evaluation`, `ridge`) load without
pulling in the networks.
"""
