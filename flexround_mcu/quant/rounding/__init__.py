"""Weight rounding methods. Each is a WeightQuantizer: same constructor, `forward(W) -> W_hat` (fake-quant),
`integers()` and `scale`, so round-to-nearest, AdaRound and FlexRound are interchangeable in one loop."""
from .base import WeightQuantizer, search_scale
from .rtn import RoundToNearest

METHODS = {"rtn": RoundToNearest}

__all__ = ["WeightQuantizer", "RoundToNearest", "METHODS", "search_scale"]
