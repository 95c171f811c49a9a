"""Round to nearest: the baseline, and step 0 of FlexRound."""
from __future__ import annotations

import torch

from .base import WeightQuantizer


class RoundToNearest(WeightQuantizer):
    def integers(self, w: torch.Tensor) -> torch.Tensor:
        return torch.clamp(torch.round(w / self.scale_like(w)), self.qmin, self.qmax)
