"""World 2, the candidate mini world: the real benchmarks' class counts, classes a 64 px encoder can tell apart, and
captions that name some classes rarely or by a neighbour's name, as web captions do.

Why (issue 13): on world 1 a 16-shot linear probe on frozen features barely beats zero-shot, so no method has
anything to learn, and one epoch is a third of the real benchmarks' optimiser steps. World 2 keeps world 1's
renderer (``render.py``) and adds what it needs in ``render2.py``; the two worlds live side by side until world 2's
weights and results replace world 1's (``perlkit mini build|pretrain|calibrate --world 2``).

The two knobs that set a benchmark's zero-shot difficulty without touching what its images show:

* ``NAME_RATE``: how often a caption names the class (otherwise it describes what is seen, or says nothing);
* ``SWAPS``: a fraction of the classes come in pairs (classes that differ in one attribute) whose captions use the
  partner's name more often than their own, as "Pasture Land" and "Herbaceous Vegetation Land" are confused on the
  web. Contrastive pretraining learns the pointwise mutual information of image and caption, so a swapped pair is
  named wrongly by zero-shot CLIP while its images stay as separable as before: headroom a few shots can recover.

Both are set from the probe and zero-shot accuracies alone (``perlkit mini calibrate``), never from a method's.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw

from perlkit.mini import render as R
from perlkit.mini import render2 as R2
from perlkit.mini import world as W1
from perlkit.mini.render import Rng
from perlkit.mini.world import Bench, Concept, _perm

WORLD_VERSION = "2"


# ----------------------------------------------------------------------------------------------- vocabularies
def object_concepts() -> list[Concept]:
    """World 1's 100 objects (body x part): ImageNet and its four shifted versions stay as they were."""
    return W1.object_concepts()


PET_COLOURS = {"ginger": (225, 140, 50), "black": (40, 35, 30), "white": (235, 230, 220), "grey": (140, 140, 140),
               "brown": (130, 85, 45)}
PET_COATS = ("plain", "spotted", "striped", "patched")


def pet_concepts() -> list[Concept]:
    """26 pets: animal x coat pattern x fur colour (each breed wears its coat over the whole body: large)."""
    combos = [(a, c, f) for a in ("cat", "dog") for c in PET_COATS for f in PET_COLOURS]
    return [Concept(f"{f} {c} {a}", {"animal": a, "coat": c, "fur": f})
            for a, c, f in (combos[i] for i in _perm(40, 7)[:26])]


CAR_BRANDS = {(w, t, sp): name for (w, t, sp), name in zip(
    [(w, t, sp) for w in ("spoked", "solid") for t in R2.TRIMS for sp in (False, True)],
    ["Volta", "Zenko", "Marlo", "Kestra", "Ardent", "Bolide", "Corsa", "Dynamo", "Elan", "Fulmen", "Gyro", "Halo"],
    strict=True)}


def car_concepts() -> list[Concept]:
    """134 car models: brand (wheels x livery trim x spoiler) x body type (six) x model year (body length)."""
    combos = [(w, t, sp, cab, lg) for w in ("spoked", "solid") for t in R2.TRIMS for sp in (False, True)
              for cab in R2.CABINS for lg in (False, True)]
    out = []
    for i in _perm(144, 25)[:134]:
        w, t, sp, cab, lg = combos[i]
        out.append(Concept(f"{2016 if lg else 2009} {CAR_BRANDS[(w, t, sp)]} {cab.capitalize()}",
                           {"wheels": w, "trim": t, "spoiler": sp, "cabin": cab, "long": lg}))
    return out


FLOWER_GENUS = {4: "primula", 5: "rose", 6: "lily", 8: "daisy", 10: "aster"}
FLOWER_COLOURS = ("red", "yellow", "purple", "white", "pink", "orange", "blue")


def flower_concepts() -> list[Concept]:
    """70 flowers: petal colour x petal shape x petal count (genus)."""
    combos = [(c, sh, n) for c in FLOWER_COLOURS for sh in ("round", "spiky") for n in FLOWER_GENUS]
    return [Concept(f"{c} {sh} {FLOWER_GENUS[n]}", {"colour": c, "shape": sh, "petals": n})
            for c, sh, n in (combos[i] for i in _perm(70, 13))]


FOOD_SAUCES = {**W1.FOOD_SAUCES, "curry": (230, 150, 30), "berry": (140, 40, 110)}


def food_concepts() -> list[Concept]:
    """70 dishes: sauce x food item x served on a plate or as a soup in a bowl."""
    combos = [(s, it, b) for s in FOOD_SAUCES for it in R2.FOOD_ITEMS for b in (False, True)]
    return [Concept(f"{s} {it}{' soup' if b else ''}", {"sauce": s, "item": it, "bowl": b})
            for s, it, b in (combos[i] for i in _perm(84, 11)[:70])]


AIR_MAKERS = {"straight": "Strato", "swept": "Arrow", "delta": "Corvex"}


def aircraft_concepts() -> list[Concept]:
    """68 aircraft variants: maker (wing plan) x series (engine count) x tail (A/B/C/T) x length (-200/-300)."""
    combos = [(w, e, t, st) for w in AIR_MAKERS for e in (0, 2, 4) for t in ("A", "B", "C", "T")
              for st in (False, True)]
    return [Concept(f"{AIR_MAKERS[w]} {e + 1}0{t}-{300 if st else 200}",
                    {"wing": w, "engines": e, "tail": t, "stretched": st})
            for w, e, t, st in (combos[i] for i in _perm(72, 5)[:68])]


def scene_concepts() -> list[Concept]:
    """270 places: time of day x ground x landmark."""
    combos = [(tm, g, lm) for tm in R2.TIMES for g in R2.GROUNDS for lm in R.LANDMARKS]
    return [Concept(f"{g} {lm}" if tm == "day" else f"{g} {lm} at {tm}", {"time": tm, "ground": g, "landmark": lm})
            for tm, g, lm in (combos[i] for i in _perm(280, 33)[:270])]


def texture_concepts() -> list[Concept]:
    """34 describable textures (world 1's 24 and ten more)."""
    names = list(R2.TEXTURES)
    return [Concept(names[i], {"texture": names[i]}) for i in _perm(34, 5)]


def eurosat_concepts() -> list[Concept]:
    """The 10 EuroSAT land-use classes, as in world 1."""
    return W1.eurosat_concepts()


def action_concepts() -> list[Concept]:
    """70 actions: pose x prop x setting (UCF-style CamelCase names joined by underscores)."""
    combos = [(p, q, st) for p in R.POSES for q in R.PROPS for st in R2.SETTINGS]
    return [Concept(f"{p}_{q}_{st}", {"pose": p, "prop": q, "setting": st})
            for p, q, st in (combos[i] for i in _perm(90, 7)[:70])]


# ----------------------------------------------------------------------------------------------- renderers
def render_pet(rng: Rng, c: Concept, mode: str) -> Image.Image:
    """A pet in its breed's coat and fur colour, large, indoors or in a garden."""
    img = R.background(str(rng.choice(["indoor", "outdoor", "plain"])), rng)
    a = c.attrs
    c1 = R.jitter(PET_COLOURS[a["fur"]], rng, 12)
    c2 = R.shade(c1, 0.45) if sum(c1) > 300 else R.shade(c1, 2.6)
    ears = "pointy" if a["animal"] == "cat" else "floppy"
    R.draw_pet(img, rng, a["animal"], ears, a["coat"], c1, c2, 66 + rng.uniform(-6, 6), 64 + rng.uniform(-5, 5),
               rng.uniform(42, 48), bool(rng.random() < 0.5))
    return R.finish(img, rng)


def render_car(rng: Rng, c: Concept, mode: str) -> Image.Image:
    """A car in side view on a street."""
    img = R.background("outdoor", rng)
    ground = 100 + rng.uniform(-5, 5)
    ImageDraw.Draw(img).rectangle([0, ground - 4, 128, 128], fill=R.jitter((90, 90, 95), rng, 8))
    a = c.attrs
    R2.draw_car(img, rng, a["cabin"], a["wheels"], a["trim"], a["spoiler"], a["long"], R.rand_colour(rng),
                64 + rng.uniform(-4, 4), ground + 6, bool(rng.random() < 0.5))
    return R.finish(img, rng)


def render_flower(rng: Rng, c: Concept, mode: str) -> Image.Image:
    """A flower close-up on foliage."""
    img = Image.fromarray(R.blend(R.smooth_noise(rng, 10), R.jitter((40, 110, 40), rng), R.jitter((90, 150, 70), rng)),
                          "RGB")
    a = c.attrs
    R.draw_flower(img, rng, a["petals"], a["shape"], R.COLOURS[a["colour"]], 64 + rng.uniform(-8, 8),
                  62 + rng.uniform(-8, 8), rng.uniform(44, 52))
    return R.finish(img, rng)


def render_food(rng: Rng, c: Concept, mode: str) -> Image.Image:
    """A dish on a table seen from above."""
    wood = R.blend(R.smooth_noise(rng, 6), R.jitter((150, 105, 60), rng), R.jitter((120, 80, 45), rng))
    img = Image.fromarray(wood, "RGB")
    R2.draw_food(img, rng, c.attrs["item"], FOOD_SAUCES[c.attrs["sauce"]], c.attrs["bowl"])
    return R.finish(img, rng)


def render_aircraft(rng: Rng, c: Concept, mode: str) -> Image.Image:
    """An aircraft from above over sky, runway or grass."""
    kind = str(rng.choice(["sky", "runway", "grass"]))
    base = {"sky": (150, 195, 235), "runway": (110, 110, 115), "grass": (95, 150, 75)}[kind]
    img = Image.fromarray(R.blend(R.smooth_noise(rng, 6), R.jitter(base, rng), R.shade(R.jitter(base, rng), 0.85)),
                          "RGB")
    livery = (235, 235, 240) if rng.random() < 0.6 else R.rand_colour(rng)
    a = c.attrs
    R2.draw_aircraft(img, rng, a["wing"], a["engines"], a["tail"], a["stretched"], livery, 64 + rng.uniform(-4, 4),
                     64 + rng.uniform(-4, 4), rng.uniform(50, 56), rng.uniform(-0.4, 0.4))
    return R.finish(img, rng)


def render_scene(rng: Rng, c: Concept, mode: str) -> Image.Image:
    """A place at a time of day."""
    return R.finish(R2.scene_image(rng, c.attrs["ground"], c.attrs["landmark"], c.attrs["time"]), rng)


def render_texture(rng: Rng, c: Concept, mode: str) -> Image.Image:
    """A full-frame texture in two random colours."""
    c1 = R.rand_colour(rng)
    c2 = R.rand_colour(rng)
    while np.abs(np.subtract(c1, c2)).sum() < 150:
        c2 = R.rand_colour(rng)
    return R.finish(R2.texture_image(c.attrs["texture"], rng, c1, c2), rng)


def render_action(rng: Rng, c: Concept, mode: str) -> Image.Image:
    """A person doing an action in a setting (a video mid-frame)."""
    img = R2.action_background(rng, c.attrs["setting"])
    R.draw_action(img, rng, c.attrs["pose"], c.attrs["prop"], 60 + rng.uniform(-8, 8), 112 + rng.uniform(-4, 4),
                  rng.uniform(84, 94))
    return R.finish(img, rng)


# ----------------------------------------------------------------------------------------------- benchmarks
DOMAINS: dict[str, Callable[[], list[Concept]]] = {
    "object": object_concepts, "pet": pet_concepts, "car": car_concepts, "flower": flower_concepts,
    "food": food_concepts, "aircraft": aircraft_concepts, "scene": scene_concepts, "texture": texture_concepts,
    "satellite": eurosat_concepts, "action": action_concepts,
}
RENDERERS: dict[str, Callable[[Rng, Concept, str], Image.Image]] = {
    "pet": render_pet, "car": render_car, "flower": render_flower, "food": render_food,
    "aircraft": render_aircraft, "scene": render_scene, "texture": render_texture,
    "satellite": W1.render_satellite, "action": render_action,
}
CALTECH_SUBSET = tuple(i for i in range(100) if i % 3 != 2)  # 67 classes: 34 base, 136 one-epoch steps (real 200)

# class counts from the real benchmarks' one-epoch budgets (base classes x 16 shots / batch 4, within x1.5);
# ImageNet stays at 100 classes (real: 1,000), which the calibration table says beside its number
BENCHMARKS: list[Bench] = [
    Bench("imagenet", "a photo of a {}.", "object", "photo", None, (20, 0, 10)),
    Bench("caltech101", "a photo of a {}.", "object", "caltech", CALTECH_SUBSET, (18, 4, 12)),
    Bench("oxford_pets", "a photo of a {}, a type of pet.", "pet", "photo", None, (18, 4, 20)),
    Bench("stanford_cars", "a photo of a {}.", "car", "photo", None, (18, 4, 10)),
    Bench("oxford_flowers", "a photo of a {}, a type of flower.", "flower", "photo", None, (18, 4, 12)),
    Bench("food101", "a photo of {}, a type of food.", "food", "photo", None, (18, 4, 12)),
    Bench("fgvc_aircraft", "a photo of a {}, a type of aircraft.", "aircraft", "photo", None, (18, 4, 12)),
    Bench("sun397", "a photo of a {}.", "scene", "photo", None, (18, 4, 8)),
    Bench("dtd", "{} texture.", "texture", "photo", None, (18, 4, 20)),
    Bench("eurosat", "a centered satellite photo of {}.", "satellite", "photo", None, (20, 8, 80)),
    Bench("ucf101", "a photo of a person doing {}.", "action", "photo", None, (18, 4, 12)),
    Bench("imagenet_v2", "a photo of a {}.", "object", "v2", None, (0, 0, 8)),
    Bench("imagenet_sketch", "a photo of a {}.", "object", "sketch", None, (0, 0, 10)),
    Bench("imagenet_a", "a photo of a {}.", "object", "a", W1.AR_SUBSET, (0, 0, 15)),
    Bench("imagenet_r", "a photo of a {}.", "object", "r", W1.AR_SUBSET, (0, 0, 20)),
]
BENCH_BY_KEY = {b.key: b for b in BENCHMARKS}


@functools.cache
def domain_concepts(domain: str) -> tuple[Concept, ...]:
    """A domain's concepts (cached)."""
    return tuple(DOMAINS[domain]())


@functools.cache
def bench_concepts_cached(bench_index: int) -> list[Concept]:
    """The concepts of a benchmark in label order (cached)."""
    b = BENCHMARKS[bench_index]
    allc = domain_concepts(b.domain)
    return list(allc) if b.classes is None else [allc[i] for i in b.classes]


def render_concept(rng: Rng, domain: str, c: Concept, mode: str) -> Image.Image:
    """Render one image of a concept of a domain in a mode (64x64 RGB)."""
    if domain == "object":
        return W1.render_object(rng, c, mode, list(domain_concepts("object")))
    return RENDERERS[domain](rng, c, mode)


def render_bench_image(seed: int, bench_index: int, split: int, label: int, i: int) -> Image.Image:
    """Render image i of a label of a benchmark split from its own RNG stream (seed, bench, split, label, i)."""
    b = BENCHMARKS[bench_index]
    c = bench_concepts_cached(bench_index)[label]
    rng = np.random.default_rng([seed, 2000 + bench_index, split, label, i])
    return render_concept(rng, b.domain, c, b.mode)


# ----------------------------------------------------------------------------------------------- captions
#: how often a caption names the class (the rest describe what is seen, or say nothing)
NAME_RATE = {"object": 0.85, "pet": 0.8, "car": 0.66, "flower": 0.55, "food": 0.9, "aircraft": 0.45, "scene": 0.8,
             "texture": 0.55, "satellite": 0.6, "action": 0.55}
#: (fraction of the classes in swapped pairs, how often a swapped class's caption uses its partner's name)
SWAPS = {"car": (0.1, 0.6), "flower": (0.2, 0.65), "aircraft": (0.1, 0.6),
         "texture": (0.2, 0.6), "satellite": (0.4, 0.65), "action": (0.2, 0.6)}
GENERIC = ("a photo.", "an image.", "a picture of something.", "my photo", "untitled")
CAPTION_NOISE = 0.08


def base_half(domain: str) -> set[str]:
    """The names of a swapped domain's base classes: the first half in label order (the CoOp split), since every
    swapped domain is one benchmark whose labels follow the domain's concept order."""
    cs = domain_concepts(domain)
    benches = [b for b in BENCHMARKS if b.domain == domain]
    assert len(benches) == 1 and benches[0].classes is None, domain
    return {c.name for c in cs[: math.ceil(len(cs) / 2)]}


@functools.cache
def swap_partners(domain: str) -> dict[str, str]:
    """The swapped pairs of a domain, both ways: classes that differ in exactly one attribute, drawn from a fixed
    stream (so the pairs are part of the world, like its renderer).

    Both classes of a pair lie in the same half (base or novel): zero-shot only confuses a class with a partner that
    is among the labels it is tested against, and the base-to-novel protocol tests each half on its own (the first
    world-2 run paired across halves, and its swapped EuroSAT classes kept 92-100% zero-shot)."""
    frac, _ = SWAPS.get(domain, (0.0, 0.0))
    if frac == 0:
        return {}
    cs = list(domain_concepts(domain))
    base = base_half(domain)
    rng = np.random.default_rng([2, sum(map(ord, domain))])
    order = [int(i) for i in rng.permutation(len(cs))]
    partners: dict[str, str] = {}
    for in_base in (True, False):
        half = [cs[i] for i in order if (cs[i].name in base) == in_base]
        n_pairs, made = int(round(frac * len(half) / 2)), 0
        for a in half:
            if made == n_pairs:
                break
            if a.name in partners:
                continue
            for b in half:
                if b.name == a.name or b.name in partners:
                    continue
                if len(a.attrs) == 1 or sum(a.attrs[k] != b.attrs[k] for k in a.attrs) == 1:
                    partners[a.name], partners[b.name] = b.name, a.name
                    made += 1
                    break
    return partners


def _describe(rng: Rng, domain: str, c: Concept, mode: str) -> str:
    """A caption that describes what is seen without the class name."""
    a = c.attrs
    pick = lambda opts: opts[int(rng.integers(len(opts)))]  # noqa: E731
    if domain == "object":
        return pick(["a {col} {body}.", "a {body} that is {part}.", "a photo of a {part} thing.", "a {pat} {body}."]
                    ).format(col=a["colour"], body=a["body"], part=a["part"], pat=a["pattern"])
    if domain == "pet":
        return pick(["a {fur} {animal}.", "a {coat} {animal}.", "a photo of a {animal}.", "my {animal}."]).format(**a)
    if domain == "car":
        return pick(["a {cab} car.", "a car with {w} wheels.", "a {long} {cab}.", "a photo of a car.",
                     "a car with a {trim}.", "a car {spoiler}."]).format(
            cab=a["cabin"], w=a["wheels"], long="long" if a["long"] else "short",
            trim={"plain": "plain body", "stripe": "racing stripe", "roof": "black roof"}[a["trim"]],
            spoiler="with a spoiler" if a["spoiler"] else "without a spoiler")
    if domain == "flower":
        return pick(["a {colour} flower.", "a {g} flower.", "a flower with {shape} petals.", "a flower in bloom."]
                    ).format(g=FLOWER_GENUS[a["petals"]], colour=a["colour"], shape=a["shape"])
    if domain == "food":
        return pick(["some {item} with {sauce} sauce.", "a {vessel} of {item}.", "a {vessel} of food.",
                     "delicious {item}"]).format(item=a["item"], sauce=a["sauce"],
                                                 vessel="bowl" if a["bowl"] else "plate")
    if domain == "aircraft":
        return pick(["an airplane with {e} engines.", "a {w}-wing airplane.", "an aircraft seen from above.",
                     "a {length} airliner.", "a plane on the runway.", "an airplane with a {tail}."]).format(
            e=a["engines"] or "no", w=a["wing"], length="long" if a["stretched"] else "short",
            tail={"A": "flat tail", "B": "swept tail", "C": "twin tail", "T": "T-tail"}[a["tail"]])
    if domain == "scene":
        return pick(["a {lm} at the {g}.", "a view of a {g}.", "a {lm}.", "a photo taken at {tm}."]).format(
            lm=a["landmark"], g=a["ground"], tm="daytime" if a["time"] == "day" else a["time"])
    if domain == "texture":
        return pick(["a close-up of a surface.", "a pattern.", "a material in two colours."])
    if domain == "satellite":
        return pick(["satellite image.", "an aerial view of the land.", "a view from above."])
    if domain == "action":
        return pick(["a person {pose} with a {prop}.", "someone {pose}.", "a person with a {prop}.",
                     "someone {setting}."]).format(pose=a["pose"].lower(), prop=a["prop"].lower(),
                                                   setting=a["setting"].lower())
    raise ValueError(domain)


def _named(rng: Rng, domain: str, name: str, mode: str) -> str:
    """A caption that names the class (in one of the ways people do)."""
    n = name.replace("_", " ")
    pick = lambda opts: opts[int(rng.integers(len(opts)))]  # noqa: E731
    if domain == "object":
        if mode == "sketch":
            return pick(["a sketch of a {n}.", "a drawing of a {n}.", "a black and white sketch of a {n}."]).format(n=n)
        if mode == "r":
            return pick(["a cartoon of a {n}.", "a rendition of a {n}.", "a painting of a {n}."]).format(n=n)
        if mode == "a":
            return pick(["a {n} in a cluttered scene.", "a photo of a {n}.", "a hard to see {n}."]).format(n=n)
        if mode == "caltech":
            return pick(["a photo of a {n}.", "a {n} on a white background.", "a centered {n}."]).format(n=n)
    template = {"pet": "a photo of a {n}, a type of pet.", "flower": "a photo of a {n}, a type of flower.",
                "food": "a photo of {n}, a type of food.", "aircraft": "a photo of a {n}, a type of aircraft.",
                "texture": "{n} texture.", "satellite": "a centered satellite photo of {n}.",
                "action": "a photo of a person doing {n}."}.get(domain, "a photo of a {n}.")
    return pick([template, "{n}", "a picture of a {n}.", "the {n}."]).format(n=n)


def caption(rng: Rng, domain: str, c: Concept, mode: str) -> str:
    """A noisy, varied caption: generic now and then; otherwise the class name at the domain's rate (a swapped
    class mostly by its partner's name), else a description of what is seen."""
    if rng.random() < CAPTION_NOISE:
        return GENERIC[int(rng.integers(len(GENERIC)))]
    if rng.random() >= NAME_RATE[domain]:
        return _describe(rng, domain, c, mode)
    name = c.name
    partner = swap_partners(domain).get(name)
    if partner is not None and rng.random() < SWAPS[domain][1]:
        name = partner
    return _named(rng, domain, name, mode)


# ----------------------------------------------------------------------------------------------- pretraining mix
# mixed-domain batches (world 2's first try with single-domain groups halved zero-shot); the weights give each
# domain enough samples per class: scenes have 270 classes, cars 134
DOMAIN_WEIGHTS = {"object": 0.28, "pet": 0.05, "car": 0.11, "flower": 0.07, "food": 0.07, "aircraft": 0.07,
                  "scene": 0.14, "texture": 0.07, "satellite": 0.03, "action": 0.11}
OBJECT_MODES = {"photo": 0.70, "caltech": 0.16, "sketch": 0.05, "r": 0.05, "a": 0.04}
OBJECT_MODES_3 = {"photo": 0.55, "caltech": 0.05, "sketch": 0.18, "r": 0.07, "a": 0.15}
PHASES = [
    {"steps": 900, "lr": 1e-3, "warmup_frac": 0.05, "domain_weights": DOMAIN_WEIGHTS, "object_modes": OBJECT_MODES},
    {"steps": 1000, "lr": 5e-4, "warmup_frac": 0.03, "domain_weights": DOMAIN_WEIGHTS, "object_modes": OBJECT_MODES},
    {"steps": 500, "lr": 3e-4, "warmup_frac": 0.04, "domain_weights": DOMAIN_WEIGHTS,
     "object_modes": OBJECT_MODES_3},
]
