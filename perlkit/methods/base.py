"""What every method shares: a frozen backbone, a config, its trainable parameters, and one calling convention.

The one training loop (``perlkit.engine``) calls ``forward`` for a loss and ``classifier``/``logits`` for
evaluation. Methods differ by what they return, never by owning a loop.
"""

from __future__ import annotations

import contextlib
import dataclasses
import types
import typing
from collections.abc import Iterator
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


class OptionError(ValueError):
    """A method option that does not exist, has the wrong type or lies out of range."""


def _matches(value: Any, hint: Any) -> bool:
    """Whether a (JSON-like) value fits a config field's type hint; bools are never ints or floats."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in typing.get_args(hint))
    if origin is list:
        (item,) = typing.get_args(hint) or (Any,)
        return isinstance(value, list) and bool(value) and all(_matches(v, item) for v in value)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, hint) if isinstance(hint, type) else True


def _hint_name(hint: Any) -> str:
    return str(hint).replace("typing.", "") if not isinstance(hint, type) else hint.__name__


def make_config(method: str, config_class: type, options: dict[str, Any]) -> Any:
    """Build a method's config dataclass from user options, checking names, types and the config's own ranges."""
    if not dataclasses.is_dataclass(config_class):
        if options:
            raise OptionError(f"{method}: takes no options, got {', '.join(sorted(options))}")
        return config_class()
    fields = {f.name: f for f in dataclasses.fields(config_class) if f.init}
    unknown = sorted(set(options) - set(fields))
    if unknown:
        raise OptionError(
            f"{method}: unknown option(s) {', '.join(unknown)}; valid options: {', '.join(sorted(fields))}"
        )
    hints = typing.get_type_hints(config_class)
    typed = {}
    for name, value in options.items():
        if not _matches(value, hints[name]):
            got = "an empty list" if value == [] else type(value).__name__
            raise OptionError(f"{method}: option {name}={value!r} must be of type {_hint_name(hints[name])}, got {got}")
        typed[name] = float(value) if hints[name] is float else value  # steps=2 stays int, lambda=1 becomes 1.0
    try:
        return config_class(**typed)
    except (ValueError, TypeError) as err:
        raise OptionError(f"{method}: {err}") from err


class Method(nn.Module):
    """Base class: a frozen CLIP plus a few trainable modules."""

    name: ClassVar[str] = "method"
    #: the config dataclass of the method; unknown keyword options are rejected against it
    Config: ClassVar[type] = object
    #: the method's own training recipe (``perlkit.engine.TrainConfig`` fields) as its paper or official config
    #: states it; keys not listed take ``TrainConfig``'s defaults. ``perlkit.engine.recipe`` reads it for both
    #: protocols ('unified' then overrides epochs, warm-up and schedule unit: ``engine.UNIFIED_OVERRIDES``)
    recipe: ClassVar[dict[str, Any]] = {}
    #: the prompt template of the method's official code, a ``perlkit.data.get_template`` kind ("coop": CoOp's
    #: per-dataset templates, "single": "a photo of a {}." everywhere); used under protocol='default' only
    own_template: ClassVar[str] = "coop"
    #: the ``RandomResizedCrop`` scale of the official training augmentation; used under protocol='default' only
    crop_scale: ClassVar[tuple[float, float]] = (0.5, 1.0)
    #: where the default recipe comes from (official repository, config file and line), keyed by setting
    #: ("all" for one recipe everywhere, or "b2n", "b2n_imagenet", "cross", "few_shot", "few_shot_imagenet"; plus
    #: "template", "crop", "schedule"); ``perlkit.report.recipe_table`` prints them
    recipe_sources: ClassVar[dict[str, str]] = {}

    @classmethod
    def dataset_options(cls, dataset: str, task: str = "b2n") -> dict[str, Any]:
        """Constructor options the official code sets per dataset and task (protocol='default'); none by default."""
        return {}

    @classmethod
    def dataset_recipe(cls, dataset: str, task: str = "b2n") -> dict[str, Any]:
        """Recipe keys the official configs change per dataset and task (protocol='default'); none by default."""
        return {}

    @classmethod
    def target_options(cls, dataset: str, target: str) -> dict[str, Any]:
        """Config values the official code changes at test time for one evaluation target (protocol='default').

        Only options that change no parameter qualify (e.g. MMRL++'s per-target beta), so one trained model serves
        every target; none by default.
        """
        return {}

    @contextlib.contextmanager
    def options_for(self, **values: Any) -> Iterator[None]:
        """Evaluate with some config values changed (``target_options``), restoring the trained ones afterwards."""
        if not values:
            yield
            return
        trained = self.config
        self.config = dataclasses.replace(trained, **values)
        try:
            yield
        finally:
            self.config = trained

    def __init__(self, backbone: FrozenCLIP, **options: Any) -> None:
        super().__init__()
        self.backbone = backbone
        self.config = self._make_config(options)

    def _make_config(self, options: dict[str, Any]) -> Any:
        """The typed config of this method, or an ``OptionError`` naming the option, its value and what is valid."""
        return make_config(self.name, self.Config, options)

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


class AdaptedEncoders(Method):
    """Methods that adapt blocks of both encoders in place (MMA, R-MMA): one encode pass a modality, from a cached
    frozen base up to ``first_adapted_block``, and one inference path for every target."""

    def first_adapted_block(self) -> int:
        """0-based index of the first block the method adapts; the frozen blocks below it run once, without grad."""
        raise NotImplementedError

    def encode(self, modality: str, state: EncodedTokens) -> torch.Tensor:
        """The adapted blocks from ``first_adapted_block`` on, then CLIP's pooling and frozen projection."""
        raise NotImplementedError

    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        """Adapted image embeddings (not normalised)."""
        with torch.no_grad():
            state = self.backbone.base("vision", images, self.first_adapted_block())
        return self.encode("vision", state)

    def text_features(self, classes: ClassSet) -> torch.Tensor:
        """Adapted class embeddings (not normalised) over the cached frozen text base."""
        return self.encode("text", self.text_base(classes, self.first_adapted_block()))

    @torch.no_grad()
    def classifier(self, classes: ClassSet, target: str = "base") -> Classifier:
        """Adapted class embeddings; independent of any image and the same for every target."""
        return Classifier(normalize(self.text_features(classes)), target)

    @torch.no_grad()
    def logits(self, images: torch.Tensor, classifier: Classifier) -> torch.Tensor:
        """tau * cos(adapted image, adapted text)."""
        return self.cosine_logits(self.image_features(images), classifier.text)
