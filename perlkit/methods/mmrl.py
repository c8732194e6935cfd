"""MMRL: Multi-Modal Representation Learning (Guo & Gu, CVPR 2025; code github.com/yunncheng/MMRL).

A shared, modality-agnostic representation space ``R`` (K = 5 tokens of dimension d_r = 512, normal(0.02) init) is
mapped by one aligner per insertion layer and modality (``Linear(d_r, d_m)``, 7 + 7 of them, all starting from the
same default init as the official ``_get_clones``) into tokens that enter both frozen encoders at the input of block
``start_layer`` (1-based, default 6) right after CLS / BOS, and are *replaced* by the next aligner's output at the
input of every later block (6..12, 7 insertion points). No positional embedding is added to them; the text causal
mask covers the longer sequence and EOS is read 5 positions later.

Outputs: class feature ``f_c = ln_post(x_CLS) @ proj`` (frozen projection), representation feature
``f_r = mean_k ln_post(x_rep_k) @ proj_rep`` (``proj_rep`` trainable, random ``width**-0.5 * randn`` init, *not*
CLIP's projection), text ``w = ln_final(x_EOS) @ text_projection``. ``logits = 100 cos(f_c, w)``,
``logits_rep = 100 cos(f_r, w)``, fused ``alpha * logits + (1 - alpha) * logits_rep`` with alpha = 0.7.
Loss: ``alpha CE(logits) + (1 - alpha) CE(logits_rep) + lambda (1 - cos(f_c, f_c^CLIP)) + lambda (1 - cos(w, w^CLIP))``
against the frozen zero-shot features of the same image and prompts.

Decoupled inference (official ``test()``), driven by ``Classifier.target``: ``"base"`` (B2N base classes, few-shot,
the cross-dataset source) -> fused logits; ``"novel"`` and ``"transfer"`` -> class-token logits only (the class token
still attends to the representation tokens, so this is not frozen CLIP).

Parameters (ViT-B/16, d_r = 512): 5*512 + 7*(512*768 + 768) + 7*(512*512 + 512) + 768*512 = 4,992,256.

Choices the sources leave open or that differ from the reference summary, made here:

* ``f_r`` applies ``ln_post`` to each representation token and then averages (the official code's order; the
  reference's one-line summary writes the mean first).
* Logit scale is the fixed 100 of the official code, not CLIP's learned temperature (``logit_scale`` option).
* Prompts: the official code uses the per-dataset CoOp template (``CUSTOM_TEMPLATES``, ``own_template = "coop"``);
  the harness puts the same prompts in the ``ClassSet`` under both protocols. No context is learned.
* The frozen image feature of the alignment loss is computed from the same input batch (the harness's augmentation).
* Encoders of unequal depth (ViT-L/14: 24 vision, 12 text blocks): the official ``REP_LAYERS`` list names the same
  block numbers in both encoders, one aligner pair per entry, so the insertion blocks are ``start_layer`` up to the
  last block of the *shallower* encoder (6..12 on L/14: 7 + 7 aligners, as on B/16); the deeper encoder runs its
  remaining blocks (13..24) with the tokens in place, as the official encoder does at blocks outside the list.
* Recipe (protocol='default', ``recipe`` and ``dataset_recipe``, sources in ``recipe_sources``): as the official
  configs, per task; the lr follows Dassl's scheduler, stepped once an epoch (``schedule_unit='epoch'``): one
  warm-up epoch at the constant 1e-5, then a cosine over ``T_max = MAX_EPOCH`` restarted after the warm-up.
  Cross-dataset training has no warm-up (``WARMUP_EPOCH: 0``): 1e-3 for its whole single epoch.
  Under the unified 1-epoch protocol the warm-up is dropped (it would be the whole run) and the cosine decays per
  step, as perlkit has always run it; prompts and augmentation (CoOp templates, crop scale (0.5, 1)) are the
  official ones under both protocols.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from perlkit.backbone import MODALITIES, FrozenCLIP, normalize
from perlkit.methods.base import TARGETS, Classifier, ClassSet, Method, TrainOutput
from perlkit.methods.registry import register_method

#: perlkit dataset key -> MMRL's per-dataset REG_WEIGHT (``trainers/config.py``); EuroSAT also uses d_r = 2048
MMRL_REG_WEIGHT: dict[str, float] = {
    "stanford_cars": 7.0,
    "fgvc_aircraft": 6.0,
    "sun397": 6.0,
    "dtd": 6.0,
    "food101": 5.0,
    "oxford_flowers": 4.0,
    "ucf101": 3.0,
    "imagenet": 0.5,
    "caltech101": 0.5,
    "oxford_pets": 0.2,
    "eurosat": 0.01,
}
TASKS = ("b2n", "few_shot", "cross")


def official_dataset(dataset: str, task: str) -> str:
    """The dataset whose official settings a run takes: ImageNet's for its test-only variants (checks the task)."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    return "imagenet" if dataset.startswith("imagenet_") else dataset


@dataclass
class MMRLConfig:
    """MMRL's options; defaults are the official ``vit_b16.yaml``."""

    n_tokens: int = 5  # K
    rep_dim: int = 512  # d_r
    start_layer: int = 6  # first insertion block, 1-based; tokens are (re)inserted at every block from here on
    alpha: float = 0.7  # fusion weight of the class-token logits (SCALE in the code)
    reg_weight: float = 1.0  # lambda (REG_WEIGHT); per dataset via ``dataset_options``
    logit_scale: float = 100.0

    def __post_init__(self) -> None:
        if self.n_tokens < 1 or self.rep_dim < 1:
            raise ValueError(f"n_tokens and rep_dim must be >= 1, got {self.n_tokens}, {self.rep_dim}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha must lie in [0, 1], got {self.alpha}")


def _check_target(target: str) -> str:
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
    return target


@register_method("mmrl")
class MMRL(Method):
    """Shared representation tokens in the upper blocks of both encoders, fused logits, decoupled inference."""

    Config = MMRLConfig
    #: official ``vit_b16.yaml`` (B2N, 10 datasets); Dassl default weight decay; Dassl's per-epoch schedule
    recipe: ClassVar[dict] = {
        "epochs": 10,
        "lr": 1e-3,
        "batch_size": 4,
        "optimizer": "adamw",
        "weight_decay": 5e-4,
        "scheduler": "cosine",
        "schedule_unit": "epoch",
        "warmup_epochs": 1,
        "warmup_lr": 1e-5,
    }
    recipe_sources: ClassVar[dict[str, str]] = {
        "b2n": "MMRL configs/trainers/MMRL/vit_b16.yaml:3 (batch 4), :17-23 (adamw, lr 0.001, 10 epochs, cosine, "
        "1 constant warm-up epoch at 1e-5); Dassl defaults.py _C.OPTIM.WEIGHT_DECAY 5e-4",
        "b2n_imagenet": "MMRL configs/trainers/MMRL/vit_b16_imagenet.yaml:3 (batch 32), :19 (5 epochs); "
        "scripts/mmrl/base2new_train.sh:9-13 picks it for ImageNet",
        "cross": "MMRL configs/trainers/MMRL/vit_b16_cross_datasets.yaml:3 (batch 32), :19 (1 epoch), "
        ":21 (WARMUP_EPOCH 0)",
        "few_shot": "MMRL configs/trainers/MMRL/vit_b16_few_shot.yaml:3 (batch 32), :19 (50 epochs)",
        "few_shot_imagenet": "MMRL scripts/mmrl/few_shot.sh:12-16 (ImageNet: vit_b16_imagenet.yaml, batch 32, "
        "5 epochs)",
        "template": "MMRL trainers/mmrl.py:22-38 CUSTOM_TEMPLATES (CoOp's per-dataset templates)",
        "crop": "MMRL configs/trainers/MMRL/vit_b16.yaml:10 RRCROP_SCALE (0.5, 1)",
        "schedule": "Dassl dassl/optim/lr_scheduler.py build_lr_scheduler (CosineAnnealingLR(T_max=MAX_EPOCH), "
        "ConstantWarmupScheduler, WARMUP_RECOUNT True); trainers/mmrl.py forward_backward: update_lr() after the "
        "last batch of each epoch",
    }
    own_template: ClassVar[str] = "coop"  # CUSTOM_TEMPLATES
    crop_scale: ClassVar[tuple[float, float]] = (0.5, 1.0)  # RRCROP_SCALE of every MMRL config

    def __init__(self, backbone: FrozenCLIP, **options: Any) -> None:
        super().__init__(backbone, **options)
        cfg = self.config
        # insertion blocks start_layer..L in both encoders; with unequal depths L is the shallower encoder's (see
        # module docstring), and the deeper one runs its remaining blocks with the tokens in place
        shallow = min(MODALITIES, key=backbone.depth)
        last = backbone.depth(shallow)
        if not 1 <= cfg.start_layer <= last:
            raise ValueError(
                f"start_layer {cfg.start_layer} is out of range for the {shallow} encoder of "
                f"{backbone.model_name or 'the backbone'} (blocks 1..{last})"
            )
        self.n_layers = last - cfg.start_layer + 1
        self.rep_tokens = nn.Parameter(torch.empty(cfg.n_tokens, cfg.rep_dim))
        nn.init.normal_(self.rep_tokens, std=0.02)
        self._build_heads()

    def _build_heads(self) -> None:
        """Per-layer aligners (clones of one Linear) and the randomly initialised ``proj_rep``."""
        backbone, d_r = self.backbone, self.config.rep_dim
        self.aligners = nn.ModuleDict()
        for m in ("vision", "text"):
            single = nn.Linear(d_r, backbone.width(m))
            self.aligners[m] = nn.ModuleList(copy.deepcopy(single) for _ in range(self.n_layers))
        width = backbone.width("vision")
        self.proj_rep = nn.Parameter(width**-0.5 * torch.randn(width, backbone.embed_dim))

    # ----------------------------------------------------------------- tokens per layer
    def layer_tokens(self, modality: str, index: int) -> torch.Tensor:
        """F_m^i(R): the K tokens for insertion point ``index`` (0 = block ``start_layer``)."""
        return self.aligners[modality][index](self.rep_tokens)

    def compose(self, index: int, new: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
        """What fills the token slots at a later insertion point: MMRL replaces them."""
        return new.expand_as(previous)

    def rep_projection(self) -> torch.Tensor:
        """The (trainable) projection of the representation feature."""
        return self.proj_rep

    # ----------------------------------------------------------------- encoder pass
    def _run(self, modality: str, hidden: torch.Tensor) -> torch.Tensor:
        """Blocks ``start_layer..L`` with representation tokens at slots 1..K, (re)filled before each block."""
        k, start = self.config.n_tokens, self.config.start_layer - 1
        for index in range(self.n_layers):
            tokens = self.layer_tokens(modality, index).to(hidden.dtype)
            if index == 0:
                slots = tokens.expand(hidden.shape[0], -1, -1)
                hidden = torch.cat([hidden[:, :1], slots, hidden[:, 1:]], dim=1)
            else:
                slots = self.compose(index, tokens.unsqueeze(0), hidden[:, 1 : 1 + k])
                hidden = torch.cat([hidden[:, :1], slots, hidden[:, 1 + k :]], dim=1)
            hidden = self.backbone.run_blocks(modality, hidden, start + index, start + index + 1)
        if start + self.n_layers < self.backbone.depth(modality):  # the deeper encoder: blocks past the last insertion
            hidden = self.backbone.run_blocks(modality, hidden, start + self.n_layers)
        return hidden

    def _image_features(self, images: torch.Tensor, frozen: bool = False):
        """(f_c, f_r) and, with ``frozen``, the zero-shot CLIP feature of the same images."""
        start = self.config.start_layer - 1
        with torch.no_grad():
            state = self.backbone.base("vision", images, start)
            clip_feature = None
            if frozen:
                clip_feature = self.backbone.project("vision", self.backbone.refine("vision", state, start))
        hidden = self._run("vision", state.hidden)
        f_c = self.backbone.project("vision", hidden[:, 0])
        rep = self.backbone.model.visual.ln_post(hidden[:, 1 : 1 + self.config.n_tokens]).mean(dim=1)
        f_r = rep @ self.rep_projection().to(rep.dtype)
        return f_c, f_r, clip_feature

    def _text_features(self, classes: ClassSet) -> torch.Tensor:
        state = self.text_base(classes, self.config.start_layer - 1)
        hidden = self._run("text", state.hidden)
        return self.backbone.project("text", FrozenCLIP.readout(hidden, state.readout, self.config.n_tokens))

    def _logits(self, image: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        return self.config.logit_scale * normalize(image) @ normalize(text).t()

    # ----------------------------------------------------------------- calling convention
    def forward(self, images: torch.Tensor, labels: torch.Tensor, classes: ClassSet) -> TrainOutput:
        """MMRL loss: alpha-weighted CE on both heads plus lambda-weighted alignment to frozen CLIP features."""
        cfg = self.config
        f_c, f_r, f_clip = self._image_features(images, frozen=True)
        text = self._text_features(classes)
        logits, logits_rep = self._logits(f_c, text), self._logits(f_r, text)
        ce = F.cross_entropy(logits, labels)
        ce_rep = F.cross_entropy(logits_rep, labels)
        align_image = 1.0 - F.cosine_similarity(f_c, f_clip, dim=-1).mean()
        align_text = 1.0 - F.cosine_similarity(text, self.zeroshot_text(classes), dim=-1).mean()
        loss = cfg.alpha * ce + (1 - cfg.alpha) * ce_rep + cfg.reg_weight * (align_image + align_text)
        fused = cfg.alpha * logits + (1 - cfg.alpha) * logits_rep
        terms = {
            "ce": ce.item(),
            "ce_rep": ce_rep.item(),
            "align_image": align_image.item(),
            "align_text": align_text.item(),
        }
        return TrainOutput(loss, fused.detach(), terms)

    @torch.no_grad()
    def classifier(self, classes: ClassSet, target: str = "base") -> Classifier:
        """Class embeddings with representation tokens; the target selects the logits path later."""
        return Classifier(normalize(self._text_features(classes)), _check_target(target))

    @torch.no_grad()
    def logits(self, images: torch.Tensor, classifier: Classifier) -> torch.Tensor:
        """Decoupled inference: fused logits for ``base``, class-token logits for ``novel`` and ``transfer``."""
        f_c, f_r, _ = self._image_features(images)
        logits = self._logits(f_c, classifier.text)
        if classifier.target != "base":
            return logits
        return self.config.alpha * logits + (1 - self.config.alpha) * self._logits(f_r, classifier.text)

    # ----------------------------------------------------------------- published per-dataset settings
    @classmethod
    def dataset_options(cls, dataset: str, task: str = "b2n") -> dict:
        """Per-dataset lambda (and EuroSAT's d_r = 2048) of ``trainers/config.py``; cross-dataset training: 0.2."""
        dataset = official_dataset(dataset, task)
        if task == "cross":
            # one model trained on ImageNet with lambda 0.2 and d_r 512 (the test script forces 512 for every target)
            return {"reg_weight": 0.2, "rep_dim": 512}
        options: dict[str, Any] = {}
        if dataset in MMRL_REG_WEIGHT:
            options["reg_weight"] = MMRL_REG_WEIGHT[dataset]
        if dataset == "eurosat":
            options["rep_dim"] = 2048
        return options

    @classmethod
    def dataset_recipe(cls, dataset: str, task: str = "b2n") -> dict:
        """The official config of a task (``recipe_sources``): ``vit_b16_cross_datasets.yaml`` (1 epoch, batch 32,
        no warm-up), ``vit_b16_imagenet.yaml`` for B2N and few-shot on ImageNet (5 epochs, batch 32),
        ``vit_b16_few_shot.yaml`` (50 epochs, batch 32) for few-shot elsewhere."""
        if task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {task!r}")
        if task == "cross":
            return {"epochs": 1, "batch_size": 32, "warmup_epochs": 0}
        if dataset == "imagenet":
            return {"epochs": 5, "batch_size": 32}
        if task == "few_shot":
            return {"epochs": 50, "batch_size": 32}
        return {}
