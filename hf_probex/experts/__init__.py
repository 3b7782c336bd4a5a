"""ProbeX experts: small models that read one layer of a model in a known tree and predict what it was trained on.

One folder per concern, one module per concept:

- `methods/`: what an expert reads and computes: its inputs read from weight files (`shaping`), the features it
  computes from them (`features`), its networks and their registry `METHODS` (`models`), the tuned ridge (`ridge`);
- `calibration/`: what an expert carries to decide: calibrated confidences and thresholds (`calibration`), the
  classification head read as a set of rows (`head_rows`), routing data (`routes`), the lineage calibration
  (`lineage`);
- `training/`: fitting and measuring experts: the optimiser (`training`), metrics and folds (`evaluation`),
  cross-validation and `train_expert` (`harness`), resumable parallel runs (`runs`, `launch`), layer sweeps
  (`sweep`), the benchmark (`bench`), tables (`report`), a zoo's signal check (`signal`).

Beside them, what the rest of the package loads and asks: `hub` (`Expert`, a trained expert as a Hub model),
`registry` (finding experts by tree, trusting and loading them) and `vocabulary` (which concepts a zero-shot expert
ranks a model against). `from_table` is a deprecated alias of `hf_probex.from_table`.

Nothing is imported here or in the folders' `__init__`, so the modules that need no torch (`methods.shaping`,
`methods.ridge`, `training.evaluation`) load without pulling in the networks.
"""
