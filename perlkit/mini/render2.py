"""Drawing primitives that world 2 adds to the world-1 renderer (``render.py`` stays byte-identical, so results made
on world 1 keep their fingerprint beside world 2's).

World 2 needs more classes per benchmark (the real benchmarks' one-epoch budgets) that a 64 px encoder can still
tell apart, so what it adds is large: a wagon body and a livery trim for cars, a stretched fuselage and a T-tail for
aircraft, bowls for food, deserts, snowfields and four times of day for places, ten more textures, and three
settings for actions.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw

from perlkit.mini import render as R
from perlkit.mini.render import _XX, _YY, Pts, Rng, S, blend, jitter, shade, smooth_noise, tf

RGB = tuple[int, int, int]


# ----------------------------------------------------------------------------------------------- cars
CABINS = ("sedan", "coupe", "hatchback", "van", "pickup", "wagon")
TRIMS = ("plain", "stripe", "roof")


def draw_car(img: Image.Image, rng: Rng, cabin: str, wheels: str, trim: str, spoiler: bool, long: bool,
             colour: RGB, cx: float, ground: float, flip: bool) -> None:
    """Side view of a car: a cabin shape (six), a wheel style, a livery trim (a racing stripe along the body or a
    black roof, both large), a rear spoiler and a body length (the model year)."""
    d = ImageDraw.Draw(img)
    L = 112 if long else 84
    H = 18
    fx = -1 if flip else 1

    def X(u: float) -> float:  # u in [0, 1] along the car, 0 = rear
        return cx + fx * (u - 0.5) * L

    top = ground - 10 - H
    d.polygon([(X(0.0), ground - 10), (X(1.0), ground - 10), (X(1.0), top + 6), (X(0.93), top),
               (X(0.02), top), (X(0.0), top + 4)], fill=colour)
    ch = 30  # world 2 run 2: a class-mean probe told the cabins apart 43% of the time; silhouettes made larger
    cab = {"sedan": [(0.2, 0), (0.32, -ch), (0.62, -ch), (0.78, 0)],
           "coupe": [(0.16, 0), (0.46, -ch * 0.6), (0.58, -ch * 0.6), (0.8, 0)],
           "hatchback": [(0.02, 0), (0.14, -ch), (0.56, -ch), (0.76, 0)],
           "van": [(0.0, 0), (0.0, -ch * 1.7), (0.86, -ch * 1.7), (0.96, 0)],
           "pickup": [(0.55, 0), (0.57, -ch * 1.1), (0.76, -ch * 1.1), (0.86, 0)],
           "wagon": [(0.0, 0), (0.0, -ch), (0.7, -ch), (0.86, 0)]}[cabin]
    roof = (25, 25, 28) if trim == "roof" else colour
    d.polygon([(X(u), top + v) for u, v in cab], fill=roof)
    inner = [(X(u * 0.9 + 0.05 * (u > 0.5) + 0.03), top + v * 0.78 - 2) for u, v in cab]
    d.polygon(inner, fill=(175, 215, 240))
    if cabin == "wagon":  # the long rear side window
        d.line([(X(0.3), top - 2), (X(0.3), top - ch * 0.8)], fill=roof, width=3)
    if cabin == "pickup":
        d.line([(X(0.03), top - 6), (X(0.48), top - 6)], fill=shade(colour, 0.6), width=3)
    if trim == "stripe":
        stripe = (245, 245, 245) if sum(colour) < 450 else (30, 30, 30)
        d.rectangle([min(X(0.0), X(1.0)), top + 9, max(X(0.0), X(1.0)), top + 15], fill=stripe)
    if spoiler:
        d.polygon([(X(-0.04), top - 16), (X(0.2), top - 16), (X(0.2), top - 9), (X(-0.04), top - 9)],
                  fill=(30, 30, 30))
        d.line([(X(0.08), top - 9), (X(0.08), top)], fill=(30, 30, 30), width=5)
    for u in (0.2, 0.8):
        wx, wy, wr = X(u), ground - 10, 12
        d.ellipse([wx - wr, wy - wr, wx + wr, wy + wr], fill=(25, 25, 25))
        if wheels == "spoked":
            d.ellipse([wx - 8, wy - 8, wx + 8, wy + 8], fill=(205, 205, 205))
            for k in range(5):
                a = 2 * math.pi * k / 5
                d.line([(wx, wy), (wx + 8 * math.cos(a), wy + 8 * math.sin(a))], fill=(40, 40, 40), width=2)
        else:
            d.ellipse([wx - 3, wy - 3, wx + 3, wy + 3], fill=(190, 190, 190))
    d.rectangle([X(0.96) - 2, top + 8, X(0.96) + 2, top + 12], fill=(250, 240, 150))


# ----------------------------------------------------------------------------------------------- aircraft
def draw_aircraft(img: Image.Image, rng: Rng, wing: str, engines: int, tail: str, stretched: bool, colour: RGB,
                  cx: float, cy: float, s: float, ang: float) -> None:
    """Top-down aircraft: wing plan, engine count, tail type (A, B, C or a T-tail) and fuselage length."""
    d = ImageDraw.Draw(img)
    k = 1.25 if stretched else 1.0  # the -300 series: a longer fuselage, same wings
    if wing == "straight":
        w = [(-1.0, -0.12), (1.0, -0.12), (1.0, 0.08), (-1.0, 0.08)]
        eng_x, eng_y = [0.35, 0.7], (lambda x: -0.18)  # noqa: E731
    elif wing == "swept":
        w = [(-0.08, -0.25), (0.08, -0.25), (1.0, 0.3), (1.0, 0.42), (-1.0, 0.42), (-1.0, 0.3)]
        eng_x, eng_y = [0.35, 0.68], (lambda x: -0.25 + 0.55 * x - 0.06)  # noqa: E731
    elif wing == "delta":
        w = [(0.0, -0.4), (0.85, 0.55), (-0.85, 0.55)]
        eng_x, eng_y = [0.25, 0.5], (lambda x: -0.4 + 1.1 * x + 0.1)  # noqa: E731
    else:
        raise ValueError(wing)
    body = [(0.0, -1.0 * k), (0.11, -0.85 * k), (0.12, 0.8 * k), (0.0, 0.92 * k), (-0.12, 0.8 * k),
            (-0.11, -0.85 * k)]
    t = 0.8 * k
    tails: list[Pts] = {
        "A": [[(-0.34, t - 0.02), (0.34, t - 0.02), (0.34, t + 0.1), (-0.34, t + 0.1)]],
        "B": [[(0.0, t - 0.2), (0.48, t + 0.12), (-0.48, t + 0.12)]],
        "C": [[(-0.1, t - 0.1), (-0.38, t + 0.15), (-0.3, t + 0.18), (-0.05, t + 0.02)],
              [(0.1, t - 0.1), (0.38, t + 0.15), (0.3, t + 0.18), (0.05, t + 0.02)]],
        "T": [[(-0.5, t + 0.02), (0.5, t + 0.02), (0.5, t + 0.14), (-0.5, t + 0.14)]],
    }[tail]
    # world 2 run 3: a class-mean probe told the tails apart 44% and the engine counts 51%: larger, darker tails
    tails = [[(1.4 * x, t + 1.4 * (y - t)) for x, y in p] for p in tails]
    for p in tails:
        d.polygon(tf(p, cx, cy, s, ang), fill=(30, 30, 35) if tail == "T" else shade(colour, 0.7))
    d.polygon(tf(w, cx, cy, s, ang), fill=shade(colour, 0.92))
    d.polygon(tf(body, cx, cy, s, ang), fill=colour)
    for x in {0: [], 2: [eng_x[0]], 4: eng_x}[engines]:
        for sgn in (-1, 1):
            p = tf([(sgn * x, eng_y(x) - 0.02)], cx, cy, s, ang)[0]
            er = 0.11 * s
            d.ellipse([p[0] - er, p[1] - er, p[0] + er, p[1] + er], fill=(45, 45, 50))
    p = tf([(0.0, -0.78 * k)], cx, cy, s, ang)[0]
    d.ellipse([p[0] - 2, p[1] - 2, p[0] + 2, p[1] + 2], fill=(40, 60, 90))


# ----------------------------------------------------------------------------------------------- food
FOOD_ITEMS = ("dumplings", "fries", "slices", "cubes", "rings", "noodles")


def draw_food(img: Image.Image, rng: Rng, item: str, colour: RGB, bowl: bool) -> None:
    """A plate (flat, white, wide) or a bowl (dark rim, a pool of the sauce) seen from above, holding one item."""
    d = ImageDraw.Draw(img)
    cx, cy = S / 2 + rng.uniform(-6, 6), S / 2 + rng.uniform(-6, 6)
    if bowl:
        pr = rng.uniform(44, 50)
        d.ellipse([cx - pr - 6, cy - pr - 6, cx + pr + 6, cy + pr + 6], fill=jitter((60, 45, 40), rng, 10))
        d.ellipse([cx - pr, cy - pr, cx + pr, cy + pr], fill=shade(jitter(colour, rng, 10), 0.8))
    else:
        pr = rng.uniform(52, 58)
        d.ellipse([cx - pr, cy - pr, cx + pr, cy + pr], fill=jitter((238, 238, 232), rng, 5), outline=(190, 190, 190),
                  width=3)
    z = 1.7  # run 3: 1.4 (a class-mean probe told the items apart 64% of the time); run 5: 1.7 (72% on run 4)
    for _ in range(int(rng.integers(3, 6))):
        rr, a = rng.uniform(0, pr * 0.5), rng.uniform(0, 2 * math.pi)
        x, y = cx + rr * math.cos(a), cy + rr * math.sin(a)
        c = jitter(colour, rng, 14) if not bowl else jitter((235, 215, 170), rng, 14)
        rot = rng.uniform(0, math.pi)
        if item == "dumplings":
            d.ellipse([x - 10 * z, y - 9 * z, x + 10 * z, y + 9 * z], fill=c, outline=shade(c, 0.7))
        elif item == "fries":
            d.polygon(tf([(-1.0, -0.17), (1.0, -0.17), (1.0, 0.17), (-1.0, 0.17)], x, y, 15 * z, rot), fill=c)
        elif item == "slices":
            d.polygon(tf([(0, -1.0), (0.8, 0.7), (-0.8, 0.7)], x, y, 12 * z, rot), fill=c, outline=shade(c, 0.6))
        elif item == "cubes":
            d.polygon(tf([(-1, -1), (1, -1), (1, 1), (-1, 1)], x, y, 8 * z, rot), fill=c, outline=shade(c, 0.6))
        elif item == "rings":
            d.ellipse([x - 11 * z, y - 11 * z, x + 11 * z, y + 11 * z], outline=c, width=8)
        elif item == "noodles":
            d.line([(x + 3 * z * t - 34, y + 7 * math.sin(t + rot * 3)) for t in np.linspace(0, 16, 14)], fill=c,
                   width=5)
        else:
            raise ValueError(item)


# ----------------------------------------------------------------------------------------------- places
GROUNDS = ("meadow", "beach", "lake", "street", "hall", "desert", "snowfield")
TIMES = ("day", "dusk", "night", "fog")
_SKY = {"day": (140, 195, 240), "dusk": (235, 130, 70), "night": (20, 25, 60), "fog": (200, 200, 205)}


def scene_image(rng: Rng, ground_kind: str, landmark: str, time: str) -> Image.Image:
    """A place at a time of day: a ground/sky layout, a landmark and a few small distractors, then the light of the
    time (dusk warms, night darkens, fog washes out): large areas of colour that a small encoder sees."""
    arr = np.zeros((S, S, 3), np.uint8)
    horizon = int(rng.integers(55, 75))
    arr[:horizon] = jitter(_SKY[time], rng, 10)
    n = smooth_noise(rng, 10)
    if ground_kind == "meadow":
        arr[horizon:] = blend(n, jitter((60, 150, 55), rng), jitter((110, 180, 80), rng))[horizon:]
    elif ground_kind == "beach":
        sea = horizon + 14
        arr[horizon:sea] = jitter((40, 110, 190), rng, 10)
        arr[sea:] = blend(n, jitter((230, 205, 150), rng), jitter((215, 190, 130), rng))[sea:]
    elif ground_kind == "lake":
        arr[horizon:] = blend(n, jitter((35, 90, 170), rng), jitter((60, 120, 200), rng))[horizon:]
        arr[S - 14:] = jitter((80, 140, 60), rng)
    elif ground_kind == "street":
        arr[horizon:] = jitter((95, 95, 100), rng, 8)
        for xx in range(4, S, 28):
            arr[horizon + 30:horizon + 33, xx:xx + 14] = (240, 240, 240)
        for bx in range(0, S, 26):
            bh = int(rng.integers(12, 30))
            arr[horizon - bh:horizon, bx:bx + 22] = jitter((170, 160, 150), rng, 20)
    elif ground_kind == "hall":
        arr[:horizon] = jitter((225, 210, 185), rng, 12)
        arr[horizon:] = blend(((_XX // 16) % 2) * 0.3 + 0.6 + 0.1 * n, jitter((150, 100, 60), rng),
                              (100, 70, 40))[horizon:]
    elif ground_kind == "desert":
        dunes = 0.5 + 0.5 * np.sin(_XX / 14.0 + 3 * n)
        arr[horizon:] = blend(dunes, jitter((225, 180, 110), rng), jitter((200, 150, 85), rng))[horizon:]
    elif ground_kind == "snowfield":
        arr[horizon:] = blend(n, jitter((245, 248, 252), rng, 4), jitter((205, 215, 230), rng, 6))[horizon:]
    else:
        raise ValueError(ground_kind)
    img = Image.fromarray(arr, "RGB")
    for _ in range(int(rng.integers(0, 2))):  # run 5: at most one small distractor (was two)
        other = R.LANDMARKS[int(rng.integers(len(R.LANDMARKS)))]
        R.draw_landmark(img, rng, other, rng.uniform(10, S - 10), horizon + rng.uniform(2, 12), rng.uniform(12, 18))
    gy = horizon + (26 if ground_kind in ("beach", "street") else 30) + rng.uniform(-4, 6)
    if ground_kind == "lake" and landmark != "boat":
        gy = S - 8
    R.draw_landmark(img, rng, landmark, S / 2 + rng.uniform(-18, 18), gy, rng.uniform(58, 70))  # run 5: was 46-60
    out = np.asarray(img, np.float32)
    if time == "dusk":
        out = out * np.array([1.05, 0.8, 0.65], np.float32)
    elif time == "night":
        out = out * 0.5 + np.array([0, 0, 25], np.float32)  # run 5: 0.35 hid the landmark
    elif time == "fog":
        out = 0.45 * out + 0.55 * np.array([205, 205, 210], np.float32)
    return Image.fromarray(np.clip(out, 0, 255).astype(np.uint8), "RGB")


# ----------------------------------------------------------------------------------------------- textures
def _wavy(rng: Rng) -> np.ndarray:
    u, v = R._rot(rng, [0.0, math.pi / 2])
    p = rng.uniform(14, 20)
    return (((v + 6 * np.sin(u / rng.uniform(8, 12))) % p) < p * 0.45).astype(np.float32)


def _pleated(rng: Rng) -> np.ndarray:
    u, _ = R._rot(rng, [0.0, math.pi / 2])
    p = rng.uniform(12, 18)
    return (np.abs(((u / p) % 1.0) - 0.5) * 2).astype(np.float32)


def _grooved(rng: Rng) -> np.ndarray:
    u, _ = R._rot(rng)
    p = rng.uniform(5, 7)
    return ((u % p) < 2.2).astype(np.float32) * 0.8 + 0.2 * smooth_noise(rng, 12)


def _wrinkled(rng: Rng) -> np.ndarray:
    n = smooth_noise(rng, 12)
    return np.clip(np.abs(np.gradient(n, axis=0)) * 40 + np.abs(np.gradient(n, axis=1)) * 40, 0, 1)


def _fibrous(rng: Rng) -> np.ndarray:
    m = Image.new("L", (S, S), 0)
    d = ImageDraw.Draw(m)
    a0 = rng.uniform(0, math.pi)
    for _ in range(90):
        x, y, a = rng.uniform(0, S), rng.uniform(0, S), a0 + rng.normal(0, 0.25)
        ln = rng.uniform(20, 50)
        d.line([(x, y), (x + ln * math.cos(a), y + ln * math.sin(a))], fill=255, width=1)
    return np.asarray(m, np.float32) / 255


def _flecked(rng: Rng) -> np.ndarray:
    return (rng.random((S, S)) < 0.06).astype(np.float32)


def _porous(rng: Rng) -> np.ndarray:
    return 1.0 - R._circles(rng, 140, 1.5, 4.0)


def _knitted(rng: Rng) -> np.ndarray:
    p = rng.uniform(10, 13)
    x, y = _XX % p, (_YY % (p * 1.2))
    return (np.abs(np.abs(x - p / 2) - y * 0.42) < 1.6).astype(np.float32)


def _braided(rng: Rng) -> np.ndarray:
    u, v = R._rot(rng, [0.0, math.pi / 2])
    p = rng.uniform(16, 22)
    band = np.floor(v / p) % 2
    w = np.sin((u + band * p / 2) / p * 2 * math.pi) * 0.5 + 0.5
    return (w * (np.abs(((v / p) % 1.0) - 0.5) < 0.4)).astype(np.float32)


def _matted(rng: Rng) -> np.ndarray:
    return (smooth_noise(rng, 40) > 0.5).astype(np.float32) * 0.7 + 0.3 * smooth_noise(rng, 8)


TEXTURES: dict[str, Callable[[Rng], np.ndarray]] = {
    **R.TEXTURES, "wavy": _wavy, "pleated": _pleated, "grooved": _grooved, "wrinkled": _wrinkled,
    "fibrous": _fibrous, "flecked": _flecked, "porous": _porous, "knitted": _knitted, "braided": _braided,
    "matted": _matted,
}


def texture_image(name: str, rng: Rng, c1: RGB, c2: RGB) -> Image.Image:
    """Full-frame texture image (the DTD-like domain), from world 1's 24 textures and the ten above."""
    arr = blend(TEXTURES[name](rng), c1, c2).astype(np.float32)
    light = 0.85 + 0.3 * smooth_noise(rng, 3)[..., None]
    return Image.fromarray(np.clip(arr * light, 0, 255).astype(np.uint8), "RGB")


# ----------------------------------------------------------------------------------------------- actions
SETTINGS = ("Indoors", "Outdoors", "Poolside")


def action_background(rng: Rng, setting: str) -> Image.Image:
    """Where an action happens: a gym hall, a field under the sky, or the edge of a pool (large areas of colour)."""
    if setting == "Indoors":
        return R.background("indoor", rng)
    if setting == "Outdoors":
        return R.background("outdoor", rng)
    if setting == "Poolside":
        h = int(rng.integers(78, 96))
        arr = np.zeros((S, S, 3), np.uint8)
        arr[:h] = blend(smooth_noise(rng, 12), jitter((40, 150, 210), rng, 10), jitter((80, 190, 230), rng, 10))[:h]
        arr[h:] = jitter((225, 225, 220), rng, 8)
        return Image.fromarray(arr, "RGB")
    raise ValueError(setting)
