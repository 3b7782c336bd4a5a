"""What an expert is and computes: its inputs read from weight files as matrices (`shaping`), the features it computes
from them (`features`), its networks behind one interface and their registry `METHODS` (`models`), and the tuned ridge
on z-scored weights (`ridge`).

Nothing is imported here: `shaping` and `ridge` load without torch.
"""
