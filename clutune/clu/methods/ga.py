"""GA (gradient ascent on D_U), with ER as its learn step.

The algorithm is ER's; it is a separate name because it plays another role in comparisons: an unlearning method
whose ascent rate is swept over a wide range (clutune/search_spaces/ga.yaml), where ER keeps the small default.
"""

from __future__ import annotations

from clutune.clu.methods.er import ER


class GA(ER):
    name = "ga"
