"""Profiles: the only place where `mini` and `paper` differ, and only by configuration.

A profile names a backbone (open_clip model + weights), a data root, a device and evaluation sizes. Everything
downstream (readers, methods, experiments) is the same code for both.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from perlkit.backbone import FrozenCLIP, create_backbone

PROFILE_NAMES = ("mini", "paper")
#: values of ``pretrained`` that ask for randomly initialised weights (no file, no download)
RANDOM_WEIGHTS = ("random", "none")


@dataclass(frozen=True)
class Profile:
    """Everything that distinguishes a run on the mini world from a run on the real benchmarks."""

    name: str
    model: str
    pretrained: str | None
    sha256: str | None
    data_root: str | None
    device: str
    eval_batch_size: int
    num_workers: int
    label: str
    threads: int | None = None  # torch intra-op threads; None keeps torch's default
    #: the mini world version (``perlkit.mini.worlds``) whose folder and shipped weights a mini profile uses; None
    #: for the paper profile
    world: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain data for result provenance."""
        return asdict(self)

    @property
    def store_name(self) -> str:
        """The result-store folder of this profile: its name (``mini-world1`` for the mini profile on a world other
        than the default one, with that world's shipped weights), or name + model + a digest when the weights (or, for
        mini, the data) are not the profile's own, so runs on other weights never mix with these.

        The paper profile's data root is not part of it: it differs per machine but holds the same benchmarks, so a
        sweep run once (``perlkit results --profile paper``) is what every chapter then reads.
        """
        from perlkit.mini.worlds import DEFAULT_WORLD

        default = get_profile(self.name, world=self.world)
        same_weights = (self.model, self.pretrained) == (default.model, default.pretrained)
        same_data = self.name == "paper" or self.data_root == default.data_root
        other_world = [] if self.world in (None, DEFAULT_WORLD) else [self.world]
        if same_weights and same_data:
            return f"{self.name}-world{self.world}" if other_world else self.name
        identity = json.dumps([self.model, self.pretrained, None if self.name == "paper" else self.data_root,
                               *other_world])
        slug = re.sub(r"[^A-Za-z0-9.]+", "-", self.model).strip("-")
        return f"{self.name}-{slug}-{hashlib.sha1(identity.encode()).hexdigest()[:8]}"

    def data_identity(self) -> str:
        """What identifies the data a result was computed on, beyond its dataset name: the mini world's fingerprint
        for the world perlkit builds itself, nothing for real benchmarks (fixed by their CoOp split files)."""
        if self.name == "mini" and self.data_root is None:
            from perlkit.mini.build import world_fingerprint

            return world_fingerprint(self.world)
        return ""

    def backbone(self) -> FrozenCLIP:
        """The frozen CLIP of this profile, on its device (the shipped mini weights are checked first, so a damaged
        file is answered with how to restore it)."""
        if self.name == "mini" and self.sha256 is not None:
            from perlkit.mini.weights import verify_mini_weights

            verify_mini_weights(self.pretrained, self.world)  # hashes the file once and says how to restore it
            return create_backbone(self.model, self.pretrained, device=self.device)
        return create_backbone(self.model, self.pretrained, sha256=self.sha256, device=self.device)

    def resolve_data_root(self) -> Path:
        """The data root, building the mini world on first use (the paper profile needs real folders)."""
        if self.name == "mini" and self.data_root is None:
            from perlkit.mini import ensure_mini_world

            return Path(ensure_mini_world(world=self.world))
        from perlkit.data import resolve_data_root

        return resolve_data_root(self.data_root)


def default_device() -> str:
    """CUDA when present, else CPU."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def get_profile(name: str = "mini", **overrides: Any) -> Profile:
    """A named profile with optional overrides (``data_root``, ``pretrained``, ``model``, ``device``, ``world``,
    ...). A mini ``world`` other than the default brings its own shipped weights and world folder."""
    if name not in PROFILE_NAMES:
        raise ValueError(f"unknown profile {name!r}; choose one of {', '.join(PROFILE_NAMES)}")
    world = overrides.pop("world", None)
    if world is not None and name != "mini":
        raise ValueError(f"world {world!r} is a mini world version; the {name} profile reads the real benchmarks")
    if name == "mini":
        from perlkit.mini.weights import MINI_MODEL, expected_sha256, mini_weights_path
        from perlkit.mini.worlds import DEFAULT_WORLD, get_world

        world = get_world(DEFAULT_WORLD if world is None else world).version  # an unknown version lists the others
        profile = Profile(
            name="mini",
            model=MINI_MODEL,
            pretrained=str(mini_weights_path(world)),
            sha256=expected_sha256(world),
            data_root=None,
            device="cpu",
            eval_batch_size=256,
            num_workers=0,
            label="mini profile: perlkit's synthetic world and mini CLIP (not comparable with the paper's numbers)",
            # the mini model's matrices are tiny: a second OpenMP thread buys little and, on a shared 2-core
            # machine, spin-waiting threads made each step up to 30x slower (measured)
            threads=1,
            world=world,
        )
    else:
        profile = Profile(
            name="paper",
            model="ViT-B-16",
            pretrained="openai",
            sha256=None,
            data_root=os.environ.get("PERLKIT_DATA"),
            device=default_device(),
            eval_batch_size=128,
            num_workers=min(4, os.cpu_count() or 1),
            label="paper profile: OpenAI ViT-B/16 on the real CoOp benchmarks",
        )
    unknown = set(overrides) - set(Profile.__dataclass_fields__)
    if unknown:
        raise ValueError(f"unknown profile field(s) {sorted(unknown)}; valid: {sorted(Profile.__dataclass_fields__)}")
    clean = {k: v for k, v in overrides.items() if v is not None}
    if "pretrained" in clean and "sha256" not in clean:
        clean["sha256"] = None  # a user-supplied file has no shipped checksum
    if str(clean.get("device", "")).startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {clean['device']!r} asked for, but torch sees no CUDA device here; use device 'cpu'")
    if clean.get("pretrained") in RANDOM_WEIGHTS:
        clean["pretrained"] = None  # random weights: smoke runs, speed and memory, parameter counts
    return replace(profile, **clean)
