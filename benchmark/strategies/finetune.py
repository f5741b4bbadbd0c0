"""Full fine-tuning, optionally with a lower learning rate for the pretrained backbone."""

from torch import nn

from benchmark.strategies.base import ParamGroups, TransferStrategy, head_and_backbone


class Finetune(TransferStrategy):
    """Train all layers from the source weights (Yosinski et al., 2014; Kornblith et al., 2019).

    ``backbone_lr_scale`` < 1 keeps the backbone closer to its pretrained solution while the new head learns at
    the full rate; 1.0 is plain fine-tuning.
    """

    def __init__(self, backbone_lr_scale: float = 1.0):
        if not 0.0 < backbone_lr_scale <= 10.0:
            raise ValueError(f"backbone_lr_scale must be in (0, 10], got {backbone_lr_scale}")
        self.backbone_lr_scale = float(backbone_lr_scale)

    def param_groups(self, model: nn.Module) -> ParamGroups:
        model.requires_grad_(True)
        head, backbone = head_and_backbone(model)
        return [{"params": head, "lr_scale": 1.0}, {"params": backbone, "lr_scale": self.backbone_lr_scale}]
