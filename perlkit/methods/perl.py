"""PERL: Parameter Efficient Reasoning in CLIP Latent Space (Carnemolla et al., arXiv 2605.18464).

Each encoder of a frozen CLIP is split at depth J. The lower J blocks run once (B_m). A per-encoder thought
projector phi_m = LN -> Linear(d, r) -> GELU -> Linear(r, d) turns the pooled CLS/EOS state h(k-1) into a token
z(k); all tokens so far are prepended to the cached base output and the upper blocks R_m are re-run (Eq. 2-3).
After K steps the final pooled states go through CLIP's frozen projections; logits use CLIP's frozen scale; the loss
is CE + lambda * (1 - cos(v0, vK)) on the image embedding (Eq. 4).

Choices the paper leaves open ([NS]/[INF] in the reference), made here and recorded in the book:

* phi's input is the raw last-block residual state at CLS/EOS (before ln_post/ln_final); phi starts with its own LN.
* Thought tokens are prepended (Eq. 3 order z1..zk, S), get no positional embedding, and the text causal mask is
  rebuilt for the longer sequence, so EOS (after them) attends to every thought token.
* Default PyTorch initialisation for phi (no zero-init), full back-propagation through the recurrence
  (``detach_steps=False``), no gating or residual scale.
* J is a block index of each encoder and nothing needs equal depths: on ViT-L/14 (24 vision, 12 text blocks) J = 7
  leaves 17 upper vision blocks and 5 upper text blocks to re-run; every J must be below each encoder's depth. The
  parameter count 5 (d_v + d_t) + 2 does not depend on depth (8,962 on L/14).
* Multi-depth variants (PERL-Deep / -Layer / -LayerStep of Table 4): at step k one token per listed depth is made
  from the same h(k-1); the tokens of depth d are prepended when the sequence reaches block d, so the sequence
  grows by k tokens at each depth. The base runs up to the first depth. Layer-specific = one projector per depth,
  step-specific = one per step. This gives n x (5 d_v + 5 d_t + 2) parameters with n = 1 projector pair when
  projectors are shared, and n = (depths if layer-specific else 1) x (steps if step-specific else 1) otherwise.
  For the step-, layer- and layer-step-specific variants Table 4 prints one pair more than that (32K, 26K, 83K vs
  25,608, 19,206, 76,824 here); the book shows the difference.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from perlkit.backbone import MODALITIES, EncodedTokens, FrozenCLIP, normalize
from perlkit.methods.base import Classifier, ClassSet, Method, TrainOutput
from perlkit.methods.registry import register_method

#: the loop configurations of the paper's Table 4, as option overrides
PERL_VARIANTS: dict[str, dict] = {
    "early": {"split": 0},
    "deep": {"split": [3, 7, 11]},
    "shared": {},
    "step": {"step_specific": True},
    "layer": {"split": [7, 9, 11], "layer_specific": True},
    "layerstep": {"split": [7, 9, 11], "layer_specific": True, "step_specific": True},
}


@dataclass
class PERLConfig:
    """PERL's options; defaults are the paper's (App. A)."""

    steps: int = 4  # K refinement steps
    split: int | list[int] = 7  # J, or several depths for multi-depth variants
    rank: int = 1  # r, bottleneck of the thought projector
    modalities: str = "both"  # "vision" | "text" | "both"
    step_specific: bool = False
    layer_specific: bool = False
    anchor_weight: float = 1.0  # lambda
    detach_steps: bool = False
    text_chunk_size: int = 0  # >0: refine classes in chunks with activation checkpointing (memory for 1000 classes)
    depths: list[int] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        self.depths = sorted({self.split} if isinstance(self.split, int) else set(self.split))
        if self.steps < 0:
            raise ValueError(f"steps must be >= 0, got {self.steps}")
        if self.rank < 1:
            raise ValueError(f"rank must be >= 1, got {self.rank}")
        if self.modalities not in ("vision", "text", "both"):
            raise ValueError(f"modalities must be 'vision', 'text' or 'both', got {self.modalities!r}")


class ThoughtProjector(nn.Sequential):
    """phi_m(h) = W2 GELU(W1 LN(h)) with biases (Eq. 1): 5d + 1 parameters at r = 1."""

    def __init__(self, width: int, rank: int = 1) -> None:
        super().__init__(nn.LayerNorm(width), nn.Linear(width, rank), nn.GELU(), nn.Linear(rank, width))


@register_method("perl")
class PERL(Method):
    """PERL with its ablation options (steps K, split J, rank r, modality, Table 4 loop variants)."""

    Config = PERLConfig
    #: App. A: AdamW, lr 1e-4, batch 4, one epoch (16 shots); weight decay, schedule and warm-up are not stated
    #: ([NS]): torch's AdamW weight decay, a constant lr, no warm-up. The same under both protocols.
    recipe: ClassVar[dict] = {
        "epochs": 1,
        "lr": 1e-4,
        "batch_size": 4,
        "optimizer": "adamw",
        "weight_decay": 0.01,
        "scheduler": "constant",
    }
    recipe_sources: ClassVar[dict[str, str]] = {
        "all": "PERL paper App. A (AdamW, lr 1e-4, batch 4, one epoch); weight decay, schedule, warm-up [NS]: "
        "torch's AdamW default decay, constant lr, none",
        "template": "[NS] in the paper; perlkit: CoOp's per-dataset templates (the unified protocol's)",
        "crop": "[NS] in the paper; perlkit: the CoOp-protocol random resized crop, scale (0.5, 1) as MMRL",
    }

    def __init__(self, backbone: FrozenCLIP, **options) -> None:
        super().__init__(backbone, **options)
        cfg = self.config
        self.active = ("vision", "text") if cfg.modalities == "both" else (cfg.modalities,)
        for m in MODALITIES:  # J is a block index of each encoder; both run their base up to depths[0]
            depth = backbone.depth(m)
            checked = cfg.depths if m in self.active else cfg.depths[:1]
            if checked[0] < 0 or checked[-1] >= depth:
                raise ValueError(
                    f"split {cfg.split} is out of range for the {m} encoder of {backbone.model_name or 'the backbone'}"
                    f" (blocks 0..{depth - 1} of {depth})"
                )
        n_depth = len(cfg.depths) if cfg.layer_specific else 1
        n_step = max(cfg.steps, 1) if cfg.step_specific else 1
        self.projectors = nn.ModuleDict(
            {
                m: nn.ModuleList(ThoughtProjector(backbone.width(m), cfg.rank) for _ in range(n_depth * n_step))
                for m in self.active
            }
        )

    # ----------------------------------------------------------------- the recurrence
    def projector(self, modality: str, depth_index: int, step: int) -> ThoughtProjector:
        """phi for a depth and a step, shared unless the variant is layer- or step-specific."""
        cfg = self.config
        d = depth_index if cfg.layer_specific else 0
        s = step if cfg.step_specific else 0
        n_step = max(cfg.steps, 1) if cfg.step_specific else 1
        return self.projectors[modality][d * n_step + s]

    def _refine_at_depths(
        self, modality: str, state: EncodedTokens, tokens: Sequence[list[torch.Tensor]]
    ) -> torch.Tensor:
        """One pass of R_m (``FrozenCLIP.refine``) with the tokens of each depth prepended where the sequence
        reaches that depth; with one depth this is ``refine`` with all tokens so far."""
        depths = self.config.depths
        hidden, shift = state.hidden, 0
        for i, depth in enumerate(depths):
            if tokens[i]:
                stacked = torch.stack(tokens[i], dim=1)
                hidden = FrozenCLIP.prepend(hidden, stacked)
                shift += stacked.shape[1]
            if i + 1 == len(depths):  # only the readout position leaves the last block
                return self.backbone.refine(modality, EncodedTokens(hidden, state.readout + shift), depth)
            hidden = self.backbone.run_blocks(modality, hidden, depth, depths[i + 1])
        raise AssertionError("unreachable: depths is never empty")

    def reason(
        self, modality: str, state: EncodedTokens, h0: torch.Tensor, steps: int | None = None
    ) -> list[torch.Tensor]:
        """Pooled states h(0..K) of one encoder (Eq. 2-3); only the last one feeds the logits."""
        steps = self.config.steps if steps is None else steps
        tokens: list[list[torch.Tensor]] = [[] for _ in self.config.depths]
        states = [h0]
        h = h0
        for k in range(steps):
            source = h.detach() if self.config.detach_steps else h
            for i in range(len(self.config.depths)):
                tokens[i].append(self.projector(modality, i, k)(source))
            h = self._refine_at_depths(modality, state, tokens)
            states.append(h)
        return states

    # ----------------------------------------------------------------- frozen pieces, cached
    def _zeroshot_state(self, modality: str, x: torch.Tensor) -> tuple[EncodedTokens, torch.Tensor]:
        """Base output and the zero-shot pooled state h(0); both frozen, so no graph is kept."""
        split = self.config.depths[0]
        with torch.no_grad():
            state = self.backbone.base(modality, x, split)
            h0 = self.backbone.refine(modality, state, split)
        return state, h0

    def _text_zeroshot_state(self, classes: ClassSet) -> tuple[EncodedTokens, torch.Tensor]:
        key = ("perl_text_state", id(self.backbone), self.config.depths[0])
        if key not in classes.cache:
            classes.cache[key] = self._zeroshot_state("text", classes.token_ids)
        return classes.cache[key]

    def _text_embeddings(self, classes: ClassSet, all_steps: bool = False) -> list[torch.Tensor]:
        """Projected class embeddings after each step (only the last unless ``all_steps``)."""
        state, h0 = self._text_zeroshot_state(classes)
        if "text" not in self.active:
            return [self.backbone.project("text", h0)]
        chunk = self.config.text_chunk_size
        if chunk <= 0 or len(classes) <= chunk or not torch.is_grad_enabled():
            states = self.reason("text", state, h0)
            return [self.backbone.project("text", h) for h in (states if all_steps else states[-1:])]
        pieces = []
        for start in range(0, len(classes), chunk):
            part = slice(start, start + chunk)
            sub = EncodedTokens(state.hidden[part], state.readout[part])
            pieces.append(checkpoint(self._refine_text_chunk, sub.hidden, sub.readout, h0[part], use_reentrant=False))
        return [torch.cat(pieces)]

    def _refine_text_chunk(self, hidden: torch.Tensor, readout: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
        return self.backbone.project("text", self.reason("text", EncodedTokens(hidden, readout), h0)[-1])

    def _image_embeddings(self, images: torch.Tensor, all_steps: bool = False) -> list[torch.Tensor]:
        """v(0) and the refined image embeddings (v(K), or every step with ``all_steps``)."""
        state, h0 = self._zeroshot_state("vision", images)
        v0 = self.backbone.project("vision", h0)
        if "vision" not in self.active:
            return [v0, v0]
        states = self.reason("vision", state, h0)
        refined = [self.backbone.project("vision", h) for h in (states[1:] if all_steps else states[-1:])]
        return [v0, *refined] if refined else [v0, v0]

    # ----------------------------------------------------------------- calling convention
    def forward(self, images: torch.Tensor, labels: torch.Tensor, classes: ClassSet) -> TrainOutput:
        """CE on the final step's logits plus lambda * (1 - mean cos(v0, vK)) on the image side (Eq. 4)."""
        embeddings = self._image_embeddings(images)
        v0, v_final = embeddings[0], embeddings[-1]
        text = self._text_embeddings(classes)[-1]
        logits = self.cosine_logits(v_final, text)
        ce = F.cross_entropy(logits, labels)
        anchor = 1.0 - F.cosine_similarity(v0, v_final, dim=-1).mean()
        loss = ce + self.config.anchor_weight * anchor
        return TrainOutput(loss, logits.detach(), {"ce": ce.item(), "anchor": anchor.item()})

    @torch.no_grad()
    def classifier(self, classes: ClassSet, target: str = "base") -> Classifier:
        """Refined class embeddings T(K), computed once per class set (text refinement ignores the image)."""
        return Classifier(normalize(self._text_embeddings(classes)[-1]), target)

    @torch.no_grad()
    def logits(self, images: torch.Tensor, classifier: Classifier) -> torch.Tensor:
        """tau * cos(vK, T(K))."""
        return self.cosine_logits(self._image_embeddings(images)[-1], classifier.text)

    @torch.no_grad()
    def step_classifiers(self, classes: ClassSet) -> list[torch.Tensor]:
        """Normalised class embeddings after each step 0..K, for the reasoning-dynamics chapter."""
        return [normalize(t) for t in self._text_embeddings(classes, all_steps=True)]

    @torch.no_grad()
    def step_logits(self, images: torch.Tensor, step_texts: list[torch.Tensor]) -> list[torch.Tensor]:
        """Logits after each step 0..K (step 0 is zero-shot CLIP), pairing image and text of the same step."""
        images_per_step = self._image_embeddings(images, all_steps=True)
        if "vision" not in self.active:
            images_per_step = [images_per_step[0]] * (self.config.steps + 1)
        texts = step_texts if len(step_texts) > 1 else step_texts * (self.config.steps + 1)
        return [self.cosine_logits(v, t) for v, t in zip(images_per_step, texts, strict=True)]
