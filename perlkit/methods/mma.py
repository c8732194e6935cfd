"""MMA: Multi-Modal Adapter (Yang et al., CVPR 2024; code github.com/ZjjConan/Multi-Modal-Adapter).

In blocks ``adapter_start..adapter_end`` (1-based, default 5..12) of both frozen encoders a bottleneck adapter runs
*parallel* to the block: ``y = up_m(shared_l(down_m(ln_1(x)))) * scale`` is computed from the block input with the
block's own frozen ``ln_1`` and added to the block output. ``down_m`` = Linear(d_m, 32) + ReLU and ``up_m`` =
Linear(32, d_m) are per modality and per block; ``shared_l`` = Linear(32, 32) + ReLU is per block and used by both
encoders (the "shared feature space"). Logits use CLIP's own temperature; the loss is plain cross-entropy; there is
one inference path for every target.

Parameters (ViT-B/16): 8 x (16,416 + 16,896 + 24,608 + 25,344 + 1,056) = 674,560, as the reference computes.

Choices the sources leave open, made here:

* ``scale = 0.001`` with the official gradient-scale trick: the adapter input passes a layer that multiplies
  backward gradients by ``scale`` and the output one that multiplies them by ``1/scale``, so the forward contribution
  is scaled by 1e-3 while the adapter weights get gradients as if unscaled (``gradient_scale=False`` switches the
  trick off; tests check the exact 1/scale ratio).
* Initialisation as in the official code: Kaiming-normal (fan_out, ReLU) weights, zero biases, for every Linear.
* Prompts: the official MMA builds "a photo of a {class}." for every dataset (``TEXT_CTX_INIT``,
  ``own_template = "single"``); perlkit uses it under protocol='default'. Under the unified protocol the harness
  gives MMA CoOp's per-dataset templates instead, as for every method there (the PERL paper's App. D); they differ
  from MMA's sentence on 7 of the 11 datasets.
* Augmentation: MMA's configs leave Dassl's ``RandomResizedCrop`` scale at its default (0.08, 1)
  (``crop_scale``), used under protocol='default'; the unified protocol crops every method with (0.5, 1).
* Schedule: Dassl's cosine stepped once an epoch (``T_max`` = 5 epochs, no warm-up) under protocol='default'; the
  unified protocol runs its one epoch with a cosine decaying every step.
* Encoders of unequal depth (ViT-L/14: 24 vision, 12 text blocks): as in the official code, ``adapter_start`` and
  ``adapter_end`` are block numbers of each encoder (its ``_build_adapter`` takes each tower's own block count), and
  ``shared_l`` pairs block l of both encoders, so the range must exist in both; the defaults adapt blocks 5..12 of
  both encoders and leave vision blocks 13..24 frozen.
* The official code also supports an adapter on the embedding layer (index 0); its configs never use it and perlkit
  does not implement it (``adapter_start`` must be >= 1).
* The per-dataset batch/epoch table in the official ``run_examples.sh`` comment is not what its scripts run (they
  use the 5-epoch yaml for every dataset), so ``recipe`` follows the yaml; ImageNet uses batch 128
  (``dataset_recipe``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from perlkit.backbone import MODALITIES, EncodedTokens, FrozenCLIP
from perlkit.methods.base import AdaptedEncoders, ClassSet, TrainOutput
from perlkit.methods.registry import register_method


class _GradScale(torch.autograd.Function):
    """Identity forward, gradient multiplied by a constant backward (MMA's ``gsl.py``)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, scale: float) -> torch.Tensor:  # noqa: D401
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad * ctx.scale, None


def grad_scale(x: torch.Tensor, scale: float) -> torch.Tensor:
    """Leave ``x`` unchanged but scale the gradient flowing back through it by ``scale``."""
    return _GradScale.apply(x, scale)


@dataclass
class MMAConfig:
    """MMA's options; defaults are the official ``vit_b16_ep5.yaml``."""

    adapter_start: int = 5  # first adapted block, 1-based as in the official code
    adapter_end: int = 12  # last adapted block, 1-based, inclusive
    adapter_dim: int = 32
    adapter_scale: float = 0.001
    gradient_scale: bool = True  # the official gradient-scale trick

    def __post_init__(self) -> None:
        if not 1 <= self.adapter_start <= self.adapter_end:
            raise ValueError(f"need 1 <= adapter_start <= adapter_end, got {self.adapter_start}..{self.adapter_end}")
        if self.adapter_scale <= 0:
            raise ValueError(f"adapter_scale must be > 0, got {self.adapter_scale}")


def _kaiming(module: nn.Module) -> nn.Module:
    """Kaiming-normal (fan_out, relu) weights and zero biases, as MMA initialises every adapter Linear."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(m.bias)
    return module


@register_method("mma")
class MMA(AdaptedEncoders):
    """Multi-modal adapters in blocks 5-12 of both encoders with a per-block shared projection."""

    Config = MMAConfig
    #: official ``vit_b16_ep5.yaml`` (Dassl defaults for momentum and weight decay)
    recipe: ClassVar[dict] = {
        "epochs": 5,
        "lr": 0.0015,
        "batch_size": 16,
        "optimizer": "sgd",
        "momentum": 0.9,
        "weight_decay": 5e-4,
        "scheduler": "cosine",
        "schedule_unit": "epoch",
        "warmup_epochs": 0,
    }
    recipe_sources: ClassVar[dict[str, str]] = {
        "b2n": "MMA configs/trainers/MultiModalAdapter/vit_b16_ep5.yaml:3 (batch 16), :16-20 (sgd, lr 0.0015, "
        "5 epochs, cosine, WARMUP_EPOCH 0); Dassl defaults.py momentum 0.9, weight decay 5e-4",
        "b2n_imagenet": "MMA configs/trainers/MultiModalAdapter/vit_b16_ep5_imnet.yaml:3 (batch 128); "
        "run_examples.sh trains ImageNet with it",
        "cross": "MMA scripts/mmadapter/xd_train.sh (config passed as an argument; perlkit: vit_b16_ep5_imnet.yaml, "
        "the ImageNet config, batch 128)",
        "template": "MMA configs/trainers/MultiModalAdapter/vit_b16_ep5.yaml:33 TEXT_CTX_INIT \"a photo of a\"; "
        "trainers/mmadapter.py _build_text_embedding: \"a photo of a {class}.\"",
        "crop": "MMA configs set no RRCROP_SCALE: Dassl dassl/config/defaults.py _C.INPUT.RRCROP_SCALE (0.08, 1.0)",
        "schedule": "Dassl dassl/optim/lr_scheduler.py build_lr_scheduler (CosineAnnealingLR(T_max=MAX_EPOCH)); "
        "trainers/mmadapter.py forward_backward: update_lr() after the last batch of each epoch",
    }
    own_template: ClassVar[str] = "single"  # "a photo of a {}." for every dataset
    crop_scale: ClassVar[tuple[float, float]] = (0.08, 1.0)  # Dassl's default: MMA's configs do not set it

    def __init__(self, backbone: FrozenCLIP, **options: Any) -> None:
        super().__init__(backbone, **options)
        cfg = self.config
        for m in MODALITIES:  # block numbers of each encoder; shared_l pairs block l of both, so both must have it
            if cfg.adapter_end > backbone.depth(m):
                raise ValueError(
                    f"adapter_end {cfg.adapter_end} is out of range for the {m} encoder of "
                    f"{backbone.model_name or 'the backbone'} (blocks 1..{backbone.depth(m)})"
                )
        n, r = cfg.adapter_end - cfg.adapter_start + 1, cfg.adapter_dim
        self.down = nn.ModuleDict(
            {
                m: nn.ModuleList(_kaiming(nn.Sequential(nn.Linear(backbone.width(m), r), nn.ReLU())) for _ in range(n))
                for m in MODALITIES
            }
        )
        self.up = nn.ModuleDict(
            {m: nn.ModuleList(_kaiming(nn.Linear(r, backbone.width(m))) for _ in range(n)) for m in MODALITIES}
        )
        self.shared = nn.ModuleList(_kaiming(nn.Sequential(nn.Linear(r, r), nn.ReLU())) for _ in range(n))

    @classmethod
    def dataset_recipe(cls, dataset: str, task: str = "b2n") -> dict:
        """Recipe overrides of the official configs per dataset: ImageNet (B2N and the cross-dataset source) trains
        with ``vit_b16_ep5_imnet.yaml``, batch 128."""
        return {"batch_size": 128} if dataset == "imagenet" else {}

    # ----------------------------------------------------------------- encoder pass
    def _adapter(self, modality: str, index: int, block: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """y for one block, from the block input through the frozen ln_1 (scaled, with the gradient trick)."""
        scale, trick = self.config.adapter_scale, self.config.gradient_scale
        y = grad_scale(x, scale) if trick else x
        y = self.up[modality][index](self.shared[index](self.down[modality][index](block.ln_1(y))))
        y = y * scale
        return grad_scale(y, 1.0 / scale) if trick else y

    def encode(self, modality: str, state: EncodedTokens) -> torch.Tensor:
        """Adapted blocks from ``adapter_start`` on, then CLIP's pooling and frozen projection."""
        cfg = self.config
        blocks = self.backbone.blocks(modality)
        hidden = state.hidden
        for i in range(cfg.adapter_start - 1, len(blocks)):
            out = self.backbone.run_blocks(modality, hidden, i, i + 1)
            if i < cfg.adapter_end:
                out = out + self._adapter(modality, i - cfg.adapter_start + 1, blocks[i], hidden)
            hidden = out
        return self.backbone.project(modality, FrozenCLIP.readout(hidden, state.readout))

    def first_adapted_block(self) -> int:
        """The official ``adapter_start`` is 1-based."""
        return self.config.adapter_start - 1

    # ----------------------------------------------------------------- calling convention
    def forward(self, images: torch.Tensor, labels: torch.Tensor, classes: ClassSet) -> TrainOutput:
        """Cross-entropy on tau * cos(image, text) with both encoders adapted."""
        logits = self.cosine_logits(self.image_features(images), self.text_features(classes))
        loss = F.cross_entropy(logits, labels)
        return TrainOutput(loss, logits.detach(), {"ce": loss.item()})
