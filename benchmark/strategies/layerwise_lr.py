"""Layer-wise learning-rate decay: deeper layers adapt faster than the generic early ones."""

from timm.models import group_parameters
from torch import nn

from benchmark.strategies.base import ParamGroups, TransferStrategy


class LayerwiseLr(TransferStrategy):
    """Fine-tune everything with learning rate ``lr × decay^(G − 1 − g)`` for depth group ``g`` of ``G``
    (Howard and Ruder, ACL 2018; the layer decay of BEiT, Bao et al., ICLR 2022).

    Groups come from timm's ``group_matcher`` (``coarse``: stem, stages or ViT blocks, head; else finer), so the
    head learns at the full rate and the stem at ``decay^(G − 1)``. timm's own ``param_groups_layer_decay`` only
    records the factors as ``lr_scale`` and relies on timm's schedulers to apply them; here every group's factor
    is applied by the harness at every step, and a test reads the rates back from the optimizer.
    """

    def __init__(self, decay: float = 0.65, coarse: bool = True):
        if not 0.0 < decay <= 1.0:
            raise ValueError(f"decay must be in (0, 1], got {decay}")
        self.decay, self.coarse = float(decay), bool(coarse)

    def param_groups(self, model: nn.Module) -> ParamGroups:
        model.requires_grad_(True)
        named = dict(model.named_parameters())
        groups = group_parameters(model, model.group_matcher(coarse=self.coarse))
        order = sorted(groups)
        return [
            {"params": [named[n] for n in groups[g]], "lr_scale": self.decay ** (len(order) - 1 - i)}
            for i, g in enumerate(order)
        ]
