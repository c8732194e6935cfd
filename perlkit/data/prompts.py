"""Class-name clean-up and prompt templates, exactly as CoOp builds its zero-shot text inputs."""

from __future__ import annotations

from .core import DatasetError
from .registry import COOP_TEMPLATES, RENAMES, SINGLE_TEMPLATE, canonical_name

TEMPLATE_KINDS: tuple[str, ...] = ("coop", "single")


def clean_classname(name: str, dataset: str | None = None) -> str:
    """Return the class name CoOp would put in a prompt.

    Applies the Caltech101 / EuroSAT folder-name renames CoOp uses for those datasets, then replaces
    underscores by spaces (CoOp's trainers do ``name.replace("_", " ")`` before formatting a prompt).
    """
    if dataset is not None:
        name = RENAMES.get(canonical_name(dataset), {}).get(name, name)
    return name.replace("_", " ").strip()


def get_template(name: str, kind: str = "coop") -> str:
    """Return the prompt template for a dataset.

    ``coop`` is CoOp's hand-written per-dataset template (``CUSTOM_TEMPLATES``); ``single`` is the plain
    ``"a photo of a {}."`` that MMA and the prompt-learning initialisations use for every dataset.
    """
    key = canonical_name(name)
    if kind == "coop":
        return COOP_TEMPLATES[key]
    if kind == "single":
        return SINGLE_TEMPLATE
    raise DatasetError(f"unknown template kind {kind!r}; use one of {', '.join(TEMPLATE_KINDS)}")


def format_prompts(classnames: list[str], template: str) -> list[str]:
    """Fill ``template`` with every class name, one prompt per class (index == label).

    Exists so that every method builds its text classifier from the very same strings.
    """
    if template.count("{}") != 1:
        raise DatasetError(f"prompt template {template!r} must contain exactly one '{{}}' placeholder")
    return [template.format(c.replace("_", " ").strip()) for c in classnames]
