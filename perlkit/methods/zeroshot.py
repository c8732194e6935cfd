"""Zero-shot CLIP: the frozen model with hand-written prompts, the floor every method must beat."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from perlkit.methods.base import Classifier, ClassSet, Method
from perlkit.methods.registry import register_method


@dataclass
class ZeroShotConfig:
    """Zero-shot CLIP has no options; the dataclass keeps the uniform constructor."""


@register_method("zeroshot")
class ZeroShotCLIP(Method):
    """CLIP as released: no trainable parameter, logits = tau * cos(image, prompt)."""

    Config = ZeroShotConfig

    @torch.no_grad()
    def classifier(self, classes: ClassSet, target: str = "base") -> Classifier:
        """T(0): the frozen text embeddings of the prompts."""
        return Classifier(self.zeroshot_text(classes), target)

    @torch.no_grad()
    def logits(self, images: torch.Tensor, classifier: Classifier) -> torch.Tensor:
        """tau * cos(v0, T0)."""
        return self.cosine_logits(self.backbone.encode("vision", images), classifier.text)
