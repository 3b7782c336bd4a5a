"""What an expert carries to decide, fitted when it is trained: the calibration of its scores into confidences and the
threshold to propose at (`calibration`), the classification head read as a set of rows (`head_rows`), what routing
needs to know about its tree (`routes`), and how far a member must explain a model's movement to be its parent
(`lineage`).

Nothing is imported here (none of these modules needs torch).
"""
