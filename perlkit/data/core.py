"""Core value types shared by every part of ``perlkit.data``."""

from __future__ import annotations

from dataclasses import dataclass, field


class DatasetError(Exception):
    """Every bad-input problem with a dataset on disk.

    The message always names the offending path, field or value and says how to fix it, so that a user
    never has to read perlkit's source to understand why a run refused to start.
    """


@dataclass(frozen=True)
class Datum:
    """One labelled image, as Dassl's ``Datum`` (path, integer label, cleaned class name)."""

    impath: str
    label: int
    classname: str


@dataclass(frozen=True)
class DatasetSplits:
    """The train / val / test lists of one benchmark plus what is needed to build its classifier.

    ``subset``, ``shots`` and ``seed`` record what was applied to the lists (class subsampling and few-shot
    sampling) so that later steps can refuse to apply them twice or in the wrong order.
    """

    name: str
    root: str
    classnames: list[str]
    train: list[Datum]
    val: list[Datum]
    test: list[Datum]
    template: str
    subset: str = "all"
    shots: int = 0
    seed: int | None = field(default=None)

    @property
    def num_classes(self) -> int:
        """Number of classes of the (possibly subsampled) label space, i.e. the classifier width."""
        return len(self.classnames)
