"""The perlkit mini world: concept vocabularies, per-benchmark renderers and the caption generator."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from perlkit.mini import render as R
from perlkit.mini.render import Rng

WORLD_VERSION = "1"


@dataclass(frozen=True)
class Concept:
    """One class of one benchmark: its display name and the attributes the renderer needs."""

    name: str
    attrs: dict = field(default_factory=dict, hash=False, compare=False)


def _perm(n: int, mult: int) -> list[int]:
    """A fixed permutation of range(n) (mult coprime to n), so class ids interleave attributes."""
    assert math.gcd(n, mult) == 1
    return [(i * mult) % n for i in range(n)]


# ----------------------------------------------------------------------------------------------- vocabularies
def object_concepts() -> list[Concept]:
    """The 100 mini-ImageNet objects: body shape x characteristic part, each with a typical colour/pattern."""
    out = []
    for k in _perm(100, 37):
        body, part = R.BODIES[k // 10], R.PARTS[k % 10]
        out.append(Concept(f"{part} {body}", {"body": body, "part": part,
                                             "colour": R.COLOUR_NAMES[(k * 7 + k // 10) % 12],
                                             "pattern": R.OBJECT_PATTERNS[(k * 3 + k // 10) % 8]}))
    return out


def pet_concepts() -> list[Concept]:
    """24 pets: animal x ear type x coat pattern."""
    combos = [(a, e, c) for a in ("cat", "dog") for e in ("pointy", "floppy", "round")
              for c in ("spotted", "striped", "plain", "patched")]
    return [Concept(f"{c} {e}-eared {a}", {"animal": a, "ears": e, "coat": c})
            for a, e, c in (combos[i] for i in _perm(24, 5))]


CAR_BRANDS = {("spoked", False): "Volta", ("spoked", True): "Zenko", ("solid", False): "Marlo",
              ("solid", True): "Kestra"}


def car_concepts() -> list[Concept]:
    """40 car models: brand (wheels x spoiler) x body type x model year (body length)."""
    combos = [(w, sp, cab, lg) for w in ("spoked", "solid") for sp in (False, True)
              for cab in ("sedan", "coupe", "hatchback", "van", "pickup") for lg in (False, True)]
    out = []
    for i in _perm(40, 17):
        w, sp, cab, lg = combos[i]
        name = f"{2016 if lg else 2009} {CAR_BRANDS[(w, sp)]} {cab.capitalize()}"
        out.append(Concept(name, {"wheels": w, "spoiler": sp, "cabin": cab, "long": lg}))
    return out


FLOWER_GENUS = {4: "primula", 5: "rose", 6: "lily", 8: "daisy"}
FLOWER_COLOURS = ["red", "yellow", "purple", "white", "pink"]


def flower_concepts() -> list[Concept]:
    """40 flowers: petal colour x petal shape x petal count (genus)."""
    combos = [(c, sh, n) for c in FLOWER_COLOURS for sh in ("round", "spiky") for n in (4, 5, 6, 8)]
    return [Concept(f"{c} {sh} {FLOWER_GENUS[n]}", {"colour": c, "shape": sh, "petals": n})
            for c, sh, n in (combos[i] for i in _perm(40, 13))]


FOOD_SAUCES = {"tomato": (205, 45, 35), "herb": (70, 150, 50), "chocolate": (95, 55, 30), "cheese": (240, 200, 60),
               "cream": (235, 225, 200)}
FOOD_ITEMS = ["dumplings", "fries", "slices", "cubes", "rings", "noodles"]


def food_concepts() -> list[Concept]:
    """30 dishes: sauce colour x food item shape."""
    combos = [(s, it) for s in FOOD_SAUCES for it in FOOD_ITEMS]
    return [Concept(f"{s} {it}", {"sauce": s, "item": it}) for s, it in (combos[i] for i in _perm(30, 7))]


AIR_MAKERS = {"straight": "Strato", "swept": "Arrow", "delta": "Corvex"}


def aircraft_concepts() -> list[Concept]:
    """27 aircraft variants: maker (wing plan) x series (engine count) x tail type (A/B/C)."""
    combos = [(w, e, t) for w in ("straight", "swept", "delta") for e in (0, 2, 4) for t in ("A", "B", "C")]
    return [Concept(f"{AIR_MAKERS[w]} {e + 1}0{t}", {"wing": w, "engines": e, "tail": t})
            for w, e, t in (combos[i] for i in _perm(27, 10))]


def scene_concepts() -> list[Concept]:
    """50 places: ground type x landmark."""
    combos = [(g, lm) for g in R.GROUNDS for lm in R.LANDMARKS]
    return [Concept(f"{g} {lm}", {"ground": g, "landmark": lm}) for g, lm in (combos[i] for i in _perm(50, 13))]


def texture_concepts() -> list[Concept]:
    """24 describable textures."""
    names = list(R.TEXTURES)
    return [Concept(names[i], {"texture": names[i]}) for i in _perm(24, 5)]


EUROSAT_NAMES = {"AnnualCrop": "Annual Crop Land", "Forest": "Forest", "HerbaceousVegetation":
                 "Herbaceous Vegetation Land", "Highway": "Highway or Road", "Industrial": "Industrial Buildings",
                 "Pasture": "Pasture Land", "PermanentCrop": "Permanent Crop Land", "Residential":
                 "Residential Buildings", "River": "River", "SeaLake": "Sea or Lake"}


def eurosat_concepts() -> list[Concept]:
    """The 10 EuroSAT land-use classes (CoOp's renamed class names), in EuroSAT folder order."""
    return [Concept(EUROSAT_NAMES[k], {"kind": k}) for k in R.EUROSAT]


def action_concepts() -> list[Concept]:
    """30 actions: pose x prop (UCF-style CamelCase names joined by underscores)."""
    combos = [(p, q) for p in R.POSES for q in R.PROPS]
    return [Concept(f"{p}_{q}", {"pose": p, "prop": q}) for p, q in (combos[i] for i in _perm(30, 7))]


# ----------------------------------------------------------------------------------------------- renderers
def render_object(rng: Rng, c: Concept, mode: str, others: list[Concept] | None = None) -> Image.Image:
    """Render a mini-ImageNet object in a mode: photo, v2, caltech, sketch, a (cluttered), r (rendition)."""
    a = c.attrs
    col = R.jitter(R.COLOURS[a["colour"]], rng) if rng.random() < {"v2": 0.65, "a": 0.4, "caltech": 0.9}.get(
        mode, 0.75) else R.rand_colour(rng)
    pat = a["pattern"] if rng.random() < 0.65 else R.OBJECT_PATTERNS[int(rng.integers(8))]
    pcol = R.shade(col, 0.6) if rng.random() < 0.5 else R.rand_colour(rng)
    style = "photo"
    if mode == "caltech":
        img = R.background("white", rng)
        r, cx, cy, ang = rng.uniform(38, 44), 64 + rng.uniform(-4, 4), 64 + rng.uniform(-4, 4), 0.0
    elif mode == "sketch":
        img = R.background("white", rng)
        style = "sketch"
        r, cx, cy, ang = rng.uniform(30, 42), 64 + rng.uniform(-10, 10), 64 + rng.uniform(-10, 10), rng.uniform(-.4, .4)
    elif mode == "r":
        img = R.background(str(rng.choice(["white", "plain", "gradient"])), rng)
        style = "cartoon"
        col, pcol = R.rand_colour(rng), R.rand_colour(rng)
        r, cx, cy, ang = rng.uniform(30, 42), 64 + rng.uniform(-10, 10), 64 + rng.uniform(-10, 10), rng.uniform(-.5, .5)
    elif mode == "a":
        img = R.background("clutter", rng)
        r, cx, cy, ang = rng.uniform(26, 34), 64 + rng.uniform(-16, 16), 64 + rng.uniform(-16, 16), rng.uniform(-.8, .8)
    else:
        kinds = ["plain", "gradient", "noise", "outdoor", "indoor"] + (["clutter"] if mode == "v2" else [])
        img = R.background(str(rng.choice(kinds)), rng)
        lo = 26 if mode == "v2" else 30
        r, cx, cy, ang = rng.uniform(lo, 42), 64 + rng.uniform(-14, 14), 64 + rng.uniform(-14, 14), rng.uniform(-.3, .3)
    n_distract = {"a": int(rng.integers(2, 4)), "v2": int(rng.random() < 0.35), "photo": int(rng.random() < 0.2)}.get(
        mode, 0)
    if others and n_distract:
        for _ in range(n_distract):
            o = others[int(rng.integers(len(others)))]
            dx, dy = rng.uniform(14, 114, 2)
            rr = rng.uniform(10, 16 if mode == "a" else 13)
            R.draw_object(img, rng, o.attrs["body"], o.attrs["part"], dx, dy, rr, R.rand_colour(rng), "plain",
                          R.rand_colour(rng), style, rng.uniform(-1, 1))
    R.draw_object(img, rng, a["body"], a["part"], cx, cy, r, col, pat, pcol, style, ang)
    if mode == "a" and rng.random() < 0.5:  # occluding bar
        from PIL import ImageDraw
        x = cx + rng.uniform(-r, r)
        ImageDraw.Draw(img).rectangle([x - 4, 0, x + 4, 128], fill=R.rand_colour(rng))
    if mode == "r":
        img = R.restyle(img, rng, str(rng.choice(["pixel", "painting", "negative", "posterised", "none"])))
    return R.finish(img, rng, 3.0 if mode != "sketch" else 1.5)


def render_pet(rng: Rng, c: Concept, mode: str) -> Image.Image:
    """Render a pet on an indoor or garden background."""
    img = R.background(str(rng.choice(["indoor", "outdoor", "plain"])), rng)
    fur = [(160, 110, 60), (40, 35, 30), (235, 230, 220), (140, 140, 140), (225, 140, 50)]
    c1 = R.jitter(fur[int(rng.integers(5))], rng)
    c2 = R.jitter(fur[int(rng.integers(5))], rng)
    if np.abs(np.subtract(c1, c2)).sum() < 120:
        c2 = R.shade(c1, 0.45) if sum(c1) > 300 else R.shade(c1, 2.5)
    R.draw_pet(img, rng, c.attrs["animal"], c.attrs["ears"], c.attrs["coat"], c1, c2, 68 + rng.uniform(-8, 8),
               66 + rng.uniform(-6, 6), rng.uniform(36, 44), bool(rng.random() < 0.5))
    return R.finish(img, rng)


def render_car(rng: Rng, c: Concept, mode: str) -> Image.Image:
    """Render a car in side view on a street."""
    img = R.background("outdoor", rng)
    from PIL import ImageDraw
    ground = 100 + rng.uniform(-6, 6)
    ImageDraw.Draw(img).rectangle([0, ground - 4, 128, 128], fill=R.jitter((90, 90, 95), rng, 8))
    a = c.attrs
    R.draw_car(img, rng, a["cabin"], a["wheels"], a["spoiler"], a["long"], R.rand_colour(rng),
               64 + rng.uniform(-6, 6), ground + 6, bool(rng.random() < 0.5))
    return R.finish(img, rng)


def render_flower(rng: Rng, c: Concept, mode: str) -> Image.Image:
    """Render a flower close-up on foliage."""
    arr = R.blend(R.smooth_noise(rng, 10), R.jitter((40, 110, 40), rng), R.jitter((90, 150, 70), rng))
    img = Image.fromarray(arr, "RGB")
    a = c.attrs
    R.draw_flower(img, rng, a["petals"], a["shape"], R.COLOURS[a["colour"]], 64 + rng.uniform(-10, 10),
                  60 + rng.uniform(-10, 10), rng.uniform(38, 48))
    return R.finish(img, rng)


def render_food(rng: Rng, c: Concept, mode: str) -> Image.Image:
    """Render a dish on a table seen from above."""
    wood = R.blend(R.smooth_noise(rng, 6), R.jitter((150, 105, 60), rng), R.jitter((120, 80, 45), rng))
    img = Image.fromarray(wood, "RGB")
    R.draw_food(img, rng, c.attrs["item"], FOOD_SAUCES[c.attrs["sauce"]])
    return R.finish(img, rng)


def render_aircraft(rng: Rng, c: Concept, mode: str) -> Image.Image:
    """Render an aircraft from above over sky, runway or grass."""
    kind = str(rng.choice(["sky", "runway", "grass"]))
    base = {"sky": (150, 195, 235), "runway": (110, 110, 115), "grass": (95, 150, 75)}[kind]
    img = Image.fromarray(R.blend(R.smooth_noise(rng, 6), R.jitter(base, rng), R.shade(R.jitter(base, rng), 0.85)),
                          "RGB")
    livery = (235, 235, 240) if rng.random() < 0.6 else R.rand_colour(rng)
    a = c.attrs
    R.draw_aircraft(img, rng, a["wing"], a["engines"], a["tail"], livery, 64 + rng.uniform(-6, 6),
                    64 + rng.uniform(-6, 6), rng.uniform(50, 58), rng.uniform(-math.pi, math.pi))
    return R.finish(img, rng)


def render_scene(rng: Rng, c: Concept, mode: str) -> Image.Image:
    """Render a place."""
    return R.finish(R.scene_image(rng, c.attrs["ground"], c.attrs["landmark"]), rng)


def render_texture(rng: Rng, c: Concept, mode: str) -> Image.Image:
    """Render a full-frame texture in two random colours."""
    c1 = R.rand_colour(rng)
    c2 = R.rand_colour(rng)
    while np.abs(np.subtract(c1, c2)).sum() < 150:
        c2 = R.rand_colour(rng)
    return R.finish(R.texture_image(c.attrs["texture"], rng, c1, c2), rng)


def render_satellite(rng: Rng, c: Concept, mode: str) -> Image.Image:
    """Render a top-down land-use tile."""
    return R.finish(R.satellite_image(rng, c.attrs["kind"]), rng, 5.0)


def render_action(rng: Rng, c: Concept, mode: str) -> Image.Image:
    """Render a person doing an action (a video mid-frame)."""
    img = R.background(str(rng.choice(["indoor", "outdoor", "gradient"])), rng)
    R.draw_action(img, rng, c.attrs["pose"], c.attrs["prop"], 60 + rng.uniform(-10, 10), 112 + rng.uniform(-4, 4),
                  rng.uniform(80, 92))
    return R.finish(img, rng)


# ----------------------------------------------------------------------------------------------- benchmarks
@dataclass(frozen=True)
class Bench:
    """A mini benchmark: key, CoOp template, concepts, renderer mode and per-class split sizes."""

    key: str
    template: str
    domain: str
    mode: str
    classes: tuple[int, ...] | None  # subset of the domain's concepts (None = all)
    per_class: tuple[int, int, int]  # train, val, test images per class


DOMAINS: dict[str, Callable[[], list[Concept]]] = {
    "object": object_concepts, "pet": pet_concepts, "car": car_concepts, "flower": flower_concepts,
    "food": food_concepts, "aircraft": aircraft_concepts, "scene": scene_concepts, "texture": texture_concepts,
    "satellite": eurosat_concepts, "action": action_concepts,
}
RENDERERS: dict[str, Callable[[Rng, Concept, str], Image.Image]] = {
    "pet": render_pet, "car": render_car, "flower": render_flower, "food": render_food,
    "aircraft": render_aircraft, "scene": render_scene, "texture": render_texture,
    "satellite": render_satellite, "action": render_action,
}
AR_SUBSET = tuple(i for i in range(100) if i % 5 in (1, 3))  # 40 classes for imagenet_a / imagenet_r
CALTECH_SUBSET = tuple(range(0, 100, 2))  # 50 classes

BENCHMARKS: list[Bench] = [
    Bench("imagenet", "a photo of a {}.", "object", "photo", None, (20, 0, 10)),
    Bench("caltech101", "a photo of a {}.", "object", "caltech", CALTECH_SUBSET, (18, 5, 16)),
    Bench("oxford_pets", "a photo of a {}, a type of pet.", "pet", "photo", None, (18, 5, 25)),
    Bench("stanford_cars", "a photo of a {}.", "car", "photo", None, (18, 5, 20)),
    Bench("oxford_flowers", "a photo of a {}, a type of flower.", "flower", "photo", None, (18, 5, 16)),
    Bench("food101", "a photo of {}, a type of food.", "food", "photo", None, (18, 5, 20)),
    Bench("fgvc_aircraft", "a photo of a {}, a type of aircraft.", "aircraft", "photo", None, (18, 5, 20)),
    Bench("sun397", "a photo of a {}.", "scene", "photo", None, (18, 5, 16)),
    Bench("dtd", "{} texture.", "texture", "photo", None, (18, 5, 25)),
    Bench("eurosat", "a centered satellite photo of {}.", "satellite", "photo", None, (20, 8, 80)),
    Bench("ucf101", "a photo of a person doing {}.", "action", "photo", None, (18, 5, 20)),
    Bench("imagenet_v2", "a photo of a {}.", "object", "v2", None, (0, 0, 8)),
    Bench("imagenet_sketch", "a photo of a {}.", "object", "sketch", None, (0, 0, 10)),
    Bench("imagenet_a", "a photo of a {}.", "object", "a", AR_SUBSET, (0, 0, 15)),
    Bench("imagenet_r", "a photo of a {}.", "object", "r", AR_SUBSET, (0, 0, 20)),
]
BENCH_BY_KEY = {b.key: b for b in BENCHMARKS}


def bench_concepts(b: Bench) -> list[Concept]:
    """The concepts of a benchmark in label order."""
    allc = DOMAINS[b.domain]()
    return allc if b.classes is None else [allc[i] for i in b.classes]


def render_concept(rng: Rng, domain: str, c: Concept, mode: str) -> Image.Image:
    """Render one image of a concept of a domain in a mode (64x64 RGB)."""
    if domain == "object":
        return render_object(rng, c, mode, object_concepts_cached())
    return RENDERERS[domain](rng, c, mode)


_OBJ_CACHE: list[Concept] = []


def object_concepts_cached() -> list[Concept]:
    """Object concepts (cached; used for distractors)."""
    if not _OBJ_CACHE:
        _OBJ_CACHE.extend(object_concepts())
    return _OBJ_CACHE


def render_bench_image(seed: int, bench_index: int, split: int, label: int, i: int) -> Image.Image:
    """Render image i of a label of a benchmark split from its own RNG stream (seed, bench, split, label, i)."""
    b = BENCHMARKS[bench_index]
    c = bench_concepts_cached(bench_index)[label]
    rng = np.random.default_rng([seed, 1000 + bench_index, split, label, i])
    return render_concept(rng, b.domain, c, b.mode)


_BC_CACHE: dict[int, list[Concept]] = {}


def bench_concepts_cached(bench_index: int) -> list[Concept]:
    """Concepts of benchmark bench_index (cached)."""
    if bench_index not in _BC_CACHE:
        _BC_CACHE[bench_index] = bench_concepts(BENCHMARKS[bench_index])
    return _BC_CACHE[bench_index]
