"""Fitting and measuring experts: the optimiser (`training`), metrics, folds and references (`evaluation`), k-fold
cross-validation and `train_expert` (`harness`), resumable runs in parallel processes (`runs`) and over several
devices (`launch`), layer sweeps and selection (`sweep`), the benchmark (`bench`), plain-text tables (`report`), and a
zoo's signal check (`signal`).

Nothing is imported here: `evaluation` and `report` load without torch.
"""
