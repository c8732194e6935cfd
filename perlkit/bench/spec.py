"""What a bench run measures: which methods under which labels, in which order, at which sizes."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from perlkit.methods import get_method_class, list_methods
from perlkit.methods.perl import PERLConfig

#: PERL's defaults (the paper's J and K): the label ``perl`` is PERL at ``PAPER_STEPS``
PAPER_SPLIT, PAPER_STEPS = PERLConfig().split, PERLConfig().steps
#: the depths of reasoning ``perl`` expands to
PERL_STEPS = (1, 2, 3, 4, 5)
#: the batch of a bench record's top-level training numbers: PERL's own recipe batch
HEADLINE_BATCH = get_method_class("perl").recipe["batch_size"]
#: the bench's column order: these methods first (PERL by K), then every other registered method by name
METHOD_ORDER = ("zeroshot", "perl")

_ADJECTIVES = (
    "red", "small", "striped", "wild", "golden", "spotted", "giant", "common", "northern", "little",
    "black", "white", "great", "spiny", "grey", "long-tailed", "American", "African", "electric", "wooden",
)  # fmt: skip
_NOUNS = (
    "fox", "heron", "beetle", "terrier", "shark", "lizard", "owl", "spider", "crab", "monkey", "kettle", "piano",
    "umbrella", "canoe", "lamp", "tractor", "violin", "bucket", "helmet", "bridge", "teapot", "bicycle", "cannon",
    "necklace", "guitar", "jellyfish", "snail", "lobster", "pelican", "flamingo", "moth", "leopard", "rabbit",
    "hamster", "sloth", "jaguar", "orange", "mushroom", "pretzel", "bagel", "pizza", "volcano", "geyser",
    "lighthouse", "mailbox", "padlock", "sandal", "scarf", "thimble", "wallet",
)  # fmt: skip


def method_order(method: str, steps: int | None, label: str) -> tuple[int, int, str]:
    """Sort key of a bench column (``METHOD_ORDER``, then PERL's K, then the label), for the run and every table."""
    rank = METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER)
    return rank, steps or 0, label


@dataclass(frozen=True)
class MethodSpec:
    """One column of the bench: a registered method with options, under a label."""

    label: str
    method: str
    options: dict[str, Any] = field(default_factory=dict)


def available_methods() -> list[str]:
    """Names ``--methods`` accepts: registered methods, plus ``perl-k<K>`` for one PERL depth of reasoning (and any
    method with options, ``method:key=value[,key=value]``, e.g. ``rmma:mar=false``)."""
    return sorted(set(list_methods()) | {f"perl-k{k}" for k in PERL_STEPS})


def _variant(name: str) -> MethodSpec:
    """``method:key=value[,key=value]`` as a spec labelled by the name, so that the bench can time a method with a
    part switched off (``rmma:attention=false``) beside the method itself: the difference is that part's cost."""
    from perlkit.methods.registry import parse_option

    method, _, text = name.partition(":")
    if method not in list_methods():
        raise ValueError(f"unknown method {method!r} in {name!r} for the bench; available: {', '.join(list_methods())}")
    try:
        options = dict(parse_option(item) for item in text.split(",") if item)
    except Exception as err:  # argparse.ArgumentTypeError: an item without '='
        raise ValueError(f"bad method options in {name!r}: {err} (expected method:key=value[,key=value])") from err
    if not options:
        raise ValueError(f"no options after ':' in {name!r} (expected method:key=value[,key=value])")
    return MethodSpec(name, method, options)


def resolve_methods(names: Sequence[str] | None = None) -> list[MethodSpec]:
    """Expand names into specs ('perl' means K = 1..5, 'rmma:mar=false' a method with options); unknown names raise
    with the available ones listed."""
    names = list(names) if names else list_methods()
    specs: dict[str, MethodSpec] = {}
    for name in names:
        if ":" in name:
            specs.setdefault(name, _variant(name))
            continue
        match = re.fullmatch(r"perl-k(\d+)", name)
        if name == "perl":
            steps = list(PERL_STEPS)
        elif match:
            steps = [int(match.group(1))]
        elif name in list_methods():
            specs.setdefault(name, MethodSpec(name, name))
            continue
        else:
            raise ValueError(f"unknown method {name!r} for the bench; available: {', '.join(available_methods())}")
        for k in steps:
            label = "perl" if k == PAPER_STEPS else f"perl-k{k}"
            specs.setdefault(label, MethodSpec(label, "perl", {"steps": k}))
    return sorted(specs.values(), key=lambda s: method_order(s.method, s.options.get("steps"), s.label))


def cost_model_blocks(spec: MethodSpec, num_layers: int, split: int) -> int | None:
    """The paper's count: L for zero-shot, J + (K+1)(L-J) for single-depth PERL, None where it does not apply."""
    if spec.method == "zeroshot":
        return num_layers
    if spec.method == "perl" and isinstance(spec.options.get("split", split), int):
        j = spec.options.get("split", split)
        return j + (spec.options.get("steps", PAPER_STEPS) + 1) * (num_layers - j)
    return None


def bench_split(num_layers: int) -> int:
    """J for a backbone of ``num_layers`` blocks: the paper's, or half the depth of a model too shallow for it."""
    return PAPER_SPLIT if PAPER_SPLIT < num_layers else num_layers // 2


@dataclass(frozen=True)
class BenchSettings:
    """Sizes of one bench run; ``settings_for`` picks them per profile and ``--quick``."""

    train_batches: tuple[int, ...] = (4, 32)
    train_classes: int = 50
    train_repeats: int = 5
    warmup: int = 1
    eval_batch: int = 256
    eval_rounds: int = 7
    memory_classes: int = 1000
    memory_batch: int = 4
    memory_chunk: int = 100
    memory_unchunked: bool = True


def settings_for(profile: str, quick: bool, device: torch.device) -> BenchSettings:
    """Sizes that keep ``--quick`` to minutes on 2 CPU cores (ViT-B/16 on CPU gets fewer, smaller batches)."""
    cuda = device.type == "cuda"
    if profile == "mini":
        if quick:
            return BenchSettings(train_repeats=3, eval_batch=128, eval_rounds=5)
        return BenchSettings()
    if cuda:
        return BenchSettings(eval_batch=128, train_repeats=3 if quick else 10, eval_rounds=5 if quick else 10)
    if quick:  # ViT-B/16 on CPU: ~0.35 s a zero-shot image; the 1,000-class step alone would take minutes
        return BenchSettings(
            train_batches=(4,), train_classes=20, train_repeats=2, eval_batch=8, eval_rounds=3, memory_classes=0,
            memory_unchunked=False,
        )
    # an unchunked 1,000-class ViT-B/16 step needs ~30 GB in fp32: only the chunked one is run on CPU
    return BenchSettings(train_repeats=3, eval_batch=32, eval_rounds=3, memory_unchunked=False)


def synthetic_prompts(n: int) -> list[str]:
    """``n`` distinct ImageNet-like prompts ('a photo of a <adjective> <noun>.'), deterministic."""
    names = [f"{adj} {noun}" for noun in _NOUNS for adj in _ADJECTIVES]
    return [f"a photo of a {names[i % len(names)]}" + (f" {i // len(names)}" if i >= len(names) else "") + "."
            for i in range(n)]
