"""Weight rounding methods. Each is a WeightQuantizer: same constructor, `forward(W) -> W_hat` (fake-quant),
`integers()` and `scale`, so round-to-nearest, AdaRound and FlexRound are interchangeable in one loop."""
from .adaround import AdaRound
from .base import WeightQuantizer, search_scale
from .flexround import FlexRound
from .rtn import RoundToNearest

METHODS = {"rtn": RoundToNearest, "adaround": AdaRound, "flexround": FlexRound}

__all__ = ["WeightQuantizer", "RoundToNearest", "AdaRound", "FlexRound", "METHODS", "search_scale"]
