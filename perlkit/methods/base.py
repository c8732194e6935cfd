"""What every method shares: a frozen backbone, a config, its trainable parameters, and one calling convention.

The one training loop (``perlkit.engine``) calls ``forward`` for a loss and ``classifier``/``logits`` for
evaluation. Methods differ by what they return, never by owning a loop.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from perlkit.backbone import EncodedTokens, FrozenCLIP, normalize

#: what a classifier is evaluated on: the classes it was trained on, held-out classes of the same dataset, or
#: another dataset altogether (methods with a decoupled inference path, like MMRL, branch on this)
TARGETS = ("base", "novel", "transfer")


@dataclass
class ClassSet:
    """Prompts of one closed-set problem, tokenised once; frozen text states are cached per split depth."""

    prompts: list[str]
    token_ids: torch.Tensor
    cache: dict[Any, Any] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.prompts)


@dataclass
class TrainOutput:
    """A training forward pass: the loss to minimise, the logits, and named loss terms for logging."""

    loss: torch.Tensor
    logits: torch.Tensor
    terms: dict[str, float]


@dataclass
class Classifier:
    """The text side of a method for one class set, computed once (no grad) before evaluating images."""

    text: torch.Tensor  # [C, D] normalised class embeddings
    target: str = "base"
    extras: dict[str, Any] = field(default_factory=dict)


class Method(nn.Module):
    """Base class: a frozen CLIP plus a few trainable modules."""

    name: ClassVar[str] = "method"
    #: the config dataclass of the method; unknown keyword options are rejected against it
    Config: ClassVar[type] = object

    def __init__(self, backbone: FrozenCLIP, **options: Any) -> None:
        super().__init__()
        self.backbone = backbone
        self.config = self._make_config(options)

    def _make_config(self, options: dict[str, Any]) -> Any:
        valid = {f.name for f in dataclasses.fields(self.Config)} if dataclasses.is_dataclass(self.Config) else set()
        unknown = sorted(set(options) - valid)
        if unknown:
            raise ValueError(
                f"{self.name}: unknown option(s) {', '.join(unknown)}; valid options: {', '.join(sorted(valid))}"
            )
        return self.Config(**options)

    # -------------------------------------------------------------- parameters
    def trainable_parameters(self) -> list[tuple[str, nn.Parameter]]:
        """Named parameters the optimiser updates (never any of CLIP's)."""
        return [(n, p) for n, p in self.named_parameters() if p.requires_grad and not n.startswith("backbone.")]

    def num_trainable(self) -> int:
        """Count of trainable scalars, the 'parameter budget' every table reports."""
        return sum(p.numel() for _, p in self.trainable_parameters())

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """Only the trainable tensors: what a checkpoint stores."""
        names = {n for n, _ in self.trainable_parameters()}
        return {k: v.detach().cpu() for k, v in self.state_dict().items() if k in names}

    def config_dict(self) -> dict[str, Any]:
        """The method's options as plain JSON-able data, for checkpoints and result files."""
        return dataclasses.asdict(self.config) if dataclasses.is_dataclass(self.config) else {}

    def train(self, mode: bool = True) -> Method:
        """Switch the method's own modules; the backbone stays in eval mode."""
        super().train(mode)
        self.backbone.train(False)
        return self

    # -------------------------------------------------------------- shared helpers
    def class_set(self, prompts: list[str]) -> ClassSet:
        """Tokenise prompts once for a closed-set problem."""
        return ClassSet(list(prompts), self.backbone.tokenize(prompts))

    def text_base(self, classes: ClassSet, split: int) -> EncodedTokens:
        """Frozen text base B_t for a class set, cached in the class set (it never changes)."""
        key = ("text_base", id(self.backbone), split)
        if key not in classes.cache:
            with torch.no_grad():
                classes.cache[key] = self.backbone.base("text", classes.token_ids, split)
        return classes.cache[key]

    def zeroshot_text(self, classes: ClassSet) -> torch.Tensor:
        """Normalised zero-shot class embeddings T(0), cached in the class set."""
        key = ("zeroshot_text", id(self.backbone))
        if key not in classes.cache:
            with torch.no_grad():
                classes.cache[key] = normalize(self.backbone.encode("text", classes.token_ids))
        return classes.cache[key]

    def cosine_logits(self, image: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """CLIP logits with the frozen temperature: tau * norm(v) @ norm(T).T."""
        return self.backbone.logit_scale * normalize(image) @ normalize(text).t()

    # -------------------------------------------------------------- the calling convention
    def forward(self, images: torch.Tensor, labels: torch.Tensor, classes: ClassSet) -> TrainOutput:
        """Training pass: loss and logits for a batch over a class set."""
        raise NotImplementedError(f"{self.name} has nothing to train")

    @torch.no_grad()
    def classifier(self, classes: ClassSet, target: str = "base") -> Classifier:
        """The text side for evaluation, computed once per class set."""
        raise NotImplementedError

    @torch.no_grad()
    def logits(self, images: torch.Tensor, classifier: Classifier) -> torch.Tensor:
        """Evaluation logits of a batch of images against a prepared classifier."""
        raise NotImplementedError
