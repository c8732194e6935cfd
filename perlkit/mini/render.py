"""Deterministic procedural renderer of the perlkit mini world (numpy + PIL, no global RNG state).

Every drawing function takes an explicit ``numpy.random.Generator``
images are drawn at ``S`` = 128 px and
box-reduced to 64x64 RGB, so the same generator state always gives byte-identical pixels.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

S = 128  # drawing canvas size; output is S // 2
OUT = 64
Rng = np.random.Generator
RGB = tuple[int, int, int]
Pts = list[tuple[float, float]]

COLOURS: dict[str, RGB] = {
    "red": (215, 40, 40), "orange": (245, 140, 30), "yellow": (238, 215, 45), "green": (50, 165, 60),
    "blue": (40, 90, 220), "purple": (135, 60, 185), "pink": (245, 135, 190), "brown": (125, 78, 40),
    "black": (28, 28, 28), "white": (242, 242, 242), "gray": (128, 128, 128), "cyan": (40, 195, 205),
}
COLOUR_NAMES = list(COLOURS)

_YY, _XX = np.mgrid[0:S, 0:S].astype(np.float32)


# ----------------------------------------------------------------------------------------------- helpers
def jitter(c: Sequence[int], rng: Rng, amt: float = 18.0) -> RGB:
    """Perturb a colour slightly so that instances of a class are not pixel-identical."""
    v = np.clip(np.asarray(c, np.float32) + rng.normal(0.0, amt, 3), 0, 255)
    return (int(v[0]), int(v[1]), int(v[2]))


def rand_colour(rng: Rng) -> RGB:
    """Draw a random named colour (jittered)."""
    return jitter(COLOURS[COLOUR_NAMES[int(rng.integers(len(COLOUR_NAMES)))]], rng)


def shade(c: Sequence[int], f: float) -> RGB:
    """Darken (f < 1) or lighten (f > 1) a colour."""
    if f <= 1:
        return (int(c[0] * f), int(c[1] * f), int(c[2] * f))
    return tuple(int(255 - (255 - v) / f) for v in c)  # type: ignore[return-value]


def tf(pts: Pts, cx: float, cy: float, s: float, ang: float = 0.0) -> Pts:
    """Scale, rotate (radians) and translate unit-frame polygon points onto the canvas."""
    ca, sa = math.cos(ang), math.sin(ang)
    return [(cx + s * (x * ca - y * sa), cy + s * (x * sa + y * ca)) for x, y in pts]


def regular(n: int, r: float = 1.0, phase: float = -math.pi / 2) -> Pts:
    """Vertices of a regular n-gon."""
    return [(r * math.cos(phase + 2 * math.pi * i / n), r * math.sin(phase + 2 * math.pi * i / n))
            for i in range(n)]


def star_pts(n: int = 5, r1: float = 1.0, r2: float = 0.45) -> Pts:
    """Vertices of an n-pointed star."""
    out: Pts = []
    for i in range(2 * n):
        r = r1 if i % 2 == 0 else r2
        a = -math.pi / 2 + math.pi * i / n
        out.append((r * math.cos(a), r * math.sin(a)))
    return out


def ellipse_pts(rx: float = 1.0, ry: float = 1.0, n: int = 28) -> Pts:
    """Polygon approximation of an ellipse (so that it can be rotated)."""
    return [(rx * math.cos(2 * math.pi * i / n), ry * math.sin(2 * math.pi * i / n)) for i in range(n)]


def smooth_noise(rng: Rng, cells: int = 8) -> np.ndarray:
    """Smooth value noise in [0, 1] of shape (S, S)."""
    small = (rng.random((cells, cells)) * 255).astype(np.uint8)
    big = Image.fromarray(small, "L").resize((S, S), Image.BICUBIC)
    return np.asarray(big, np.float32) / 255.0


def blend(mask: np.ndarray, c1: Sequence[int], c2: Sequence[int]) -> np.ndarray:
    """Two-colour image from a [0, 1] mask (1 -> c1)."""
    m = np.clip(mask, 0.0, 1.0)[..., None]
    return (m * np.asarray(c1, np.float32) + (1 - m) * np.asarray(c2, np.float32)).astype(np.uint8)


def finish(img: Image.Image, rng: Rng, noise: float = 4.0) -> Image.Image:
    """Box-reduce the canvas to 64x64 and add mild sensor noise."""
    small = np.asarray(img.convert("RGB").reduce(S // OUT), np.float32)
    if noise > 0:
        small = small + rng.normal(0.0, noise, small.shape)
    return Image.fromarray(np.clip(small, 0, 255).astype(np.uint8), "RGB")


# ----------------------------------------------------------------------------------------------- textures
def _rot(rng: Rng, choices: Sequence[float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    a = float(rng.choice(choices)) if choices is not None else float(rng.uniform(0, math.pi))
    return _XX * math.cos(a) + _YY * math.sin(a), -_XX * math.sin(a) + _YY * math.cos(a)


def _circles(rng: Rng, n: int, rmin: float, rmax: float, ring: bool = False) -> np.ndarray:
    m = np.zeros((S, S), np.float32)
    cx, cy, rr = rng.uniform(0, S, n), rng.uniform(0, S, n), rng.uniform(rmin, rmax, n)
    for x, y, r in zip(cx, cy, rr, strict=True):
        d = np.sqrt((_XX - x) ** 2 + (_YY - y) ** 2)
        m = np.maximum(m, (np.abs(d - r) < 1.8) if ring else (d < r))
    return m


def _tex_banded(rng: Rng) -> np.ndarray:
    u, _ = _rot(rng, [0.0, math.pi / 2])
    p = rng.uniform(26, 36)
    return ((u + rng.uniform(0, p)) % p < p * 0.5).astype(np.float32)


def _tex_striped(rng: Rng) -> np.ndarray:
    u, _ = _rot(rng, [0.0, math.pi / 2, math.pi / 4, 3 * math.pi / 4])
    p = rng.uniform(9, 13)
    return ((u + rng.uniform(0, p)) % p < p * 0.5).astype(np.float32)


def _tex_lined(rng: Rng) -> np.ndarray:
    u, _ = _rot(rng)
    p = rng.uniform(8, 12)
    return ((u + rng.uniform(0, p)) % p < 1.6).astype(np.float32)


def _tex_zigzagged(rng: Rng) -> np.ndarray:
    u, v = _rot(rng, [0.0, math.pi / 2])
    lam = rng.uniform(14, 22)
    a = rng.uniform(5, 9)
    p = rng.uniform(12, 16)
    tri = np.abs((u / lam) % 2 - 1) * a * 2
    return ((v + tri) % p < p * 0.45).astype(np.float32)


def _tex_swirly(rng: Rng) -> np.ndarray:
    n = smooth_noise(rng, 4)
    return (np.sin(_XX / 9 + 6 * n) * np.cos(_YY / 9 + 6 * n) > 0).astype(np.float32)


def _tex_chequered(rng: Rng) -> np.ndarray:
    u, v = _rot(rng, [0.0, math.pi / 4])
    p = rng.uniform(14, 22)
    return (((u // p) + (v // p)) % 2).astype(np.float32)


def _tex_grid(rng: Rng) -> np.ndarray:
    p = rng.uniform(14, 20)
    w = rng.uniform(2.5, 4)
    return (((_XX + rng.uniform(0, p)) % p < w) | ((_YY + rng.uniform(0, p)) % p < w)).astype(np.float32)


def _tex_crosshatched(rng: Rng) -> np.ndarray:
    p = rng.uniform(7, 10)
    a = ((_XX + _YY) % p < 1.6) | ((_XX - _YY + 4 * S) % p < 1.6)
    return a.astype(np.float32)


def _dots(rng: Rng, p: float, r: float, jit: float = 0.0) -> np.ndarray:
    ox, oy = rng.uniform(0, p, 2)
    dx = (_XX + ox) % p - p / 2
    dy = (_YY + oy) % p - p / 2
    if jit:
        dx = dx + jit * np.sin(_YY / 7.0)
    return (dx**2 + dy**2 < r * r).astype(np.float32)


def _tex_dotted(rng: Rng) -> np.ndarray:
    return _dots(rng, rng.uniform(9, 12), rng.uniform(1.8, 2.4))


def _tex_polka(rng: Rng) -> np.ndarray:
    return _dots(rng, rng.uniform(22, 28), rng.uniform(6.5, 8.5))


def _tex_sprinkled(rng: Rng) -> np.ndarray:
    m = np.zeros((S, S), np.float32)
    n = int(rng.integers(120, 200))
    xs, ys = rng.integers(0, S - 2, n), rng.integers(0, S - 2, n)
    for x, y in zip(xs, ys, strict=True):
        m[y:y + 2, x:x + 3] = 1.0
    return m


def _tex_blotchy(rng: Rng) -> np.ndarray:
    return (smooth_noise(rng, 6) > 0.55).astype(np.float32)


def _tex_bubbly(rng: Rng) -> np.ndarray:
    return _circles(rng, int(rng.integers(14, 22)), 5, 14, ring=True)


def _tex_honeycombed(rng: Rng) -> np.ndarray:
    p = rng.uniform(14, 18)
    q = _YY / (p * 0.866)
    row = np.floor(q)
    x = _XX / p + 0.5 * (row % 2)
    fx, fy = x - np.floor(x) - 0.5, q - row - 0.5
    edge = np.maximum(np.abs(fx) * 1.0, np.abs(fy) * 1.15)
    return (edge > 0.42).astype(np.float32)


def _tex_spiralled(rng: Rng) -> np.ndarray:
    cx, cy = rng.uniform(30, 98, 2)
    r = np.sqrt((_XX - cx) ** 2 + (_YY - cy) ** 2)
    th = np.arctan2(_YY - cy, _XX - cx)
    return (np.sin(r / 3.2 - 2 * th) > 0.2).astype(np.float32)


def _tex_marbled(rng: Rng) -> np.ndarray:
    n = smooth_noise(rng, 5)
    return (0.5 + 0.5 * np.sin(_XX / 10 + 14 * n)).astype(np.float32)


def _tex_cracked(rng: Rng) -> np.ndarray:
    k = 14
    px, py = rng.uniform(0, S, k), rng.uniform(0, S, k)
    d = np.sqrt((_XX[None] - px[:, None, None]) ** 2 + (_YY[None] - py[:, None, None]) ** 2)
    d.sort(axis=0)
    return 1.0 - (d[1] - d[0] < 2.2).astype(np.float32)


def _tex_woven(rng: Rng) -> np.ndarray:
    p = rng.uniform(14, 18)
    cu, cv = (_XX // p) % 2, (_YY // p) % 2
    fu, fv = (_XX % p) / p, (_YY % p) / p
    horiz = (cu == cv)
    a = np.where(horiz, np.abs(fv - 0.5) < 0.32, np.abs(fu - 0.5) < 0.32)
    return (a * np.where(horiz, 0.6 + 0.4 * np.sin(fu * math.pi), 0.6 + 0.4 * np.sin(fv * math.pi)))


def _tex_scaly(rng: Rng) -> np.ndarray:
    p = rng.uniform(14, 18)
    row = np.floor(_YY / (p * 0.5))
    x = (_XX / p + 0.5 * (row % 2)) % 1 - 0.5
    y = (_YY / (p * 0.5)) % 1
    return ((x * x * 4 + (1 - y) ** 2) < 0.8).astype(np.float32) * (0.4 + 0.6 * y)


def _tex_perforated(rng: Rng) -> np.ndarray:
    return 1.0 - _dots(rng, rng.uniform(11, 14), rng.uniform(2.5, 3.2))


def _tex_stratified(rng: Rng) -> np.ndarray:
    n = smooth_noise(rng, 4)
    y = _YY + 10 * n
    edges = np.cumsum(rng.uniform(5, 16, 30))
    return (np.searchsorted(edges, y) % 2).astype(np.float32) * 0.8 + 0.2 * n


def _tex_veined(rng: Rng) -> np.ndarray:
    n = smooth_noise(rng, 5)
    return 1.0 - (np.abs(np.sin(8 * math.pi * n)) < 0.18).astype(np.float32)


def _tex_meshed(rng: Rng) -> np.ndarray:
    p = rng.uniform(5, 7)
    return (((_XX + _YY) % p < 1.1) | ((_XX - _YY + 4 * S) % p < 1.1)).astype(np.float32) * 0.9


def _tex_studded(rng: Rng) -> np.ndarray:
    p = rng.uniform(16, 20)
    ox, oy = rng.uniform(0, p, 2)
    dx, dy = (_XX + ox) % p - p / 2, (_YY + oy) % p - p / 2
    d = np.sqrt(dx**2 + dy**2)
    return np.where(d < 5, 1.0 - 0.06 * (dx + dy), 0.15).astype(np.float32)


TEXTURES: dict[str, Callable[[Rng], np.ndarray]] = {
    "banded": _tex_banded, "striped": _tex_striped, "lined": _tex_lined, "zigzagged": _tex_zigzagged,
    "swirly": _tex_swirly, "chequered": _tex_chequered, "grid": _tex_grid, "crosshatched": _tex_crosshatched,
    "dotted": _tex_dotted, "polka-dotted": _tex_polka, "sprinkled": _tex_sprinkled, "blotchy": _tex_blotchy,
    "bubbly": _tex_bubbly, "honeycombed": _tex_honeycombed, "spiralled": _tex_spiralled,
    "marbled": _tex_marbled, "cracked": _tex_cracked, "woven": _tex_woven, "scaly": _tex_scaly,
    "perforated": _tex_perforated, "stratified": _tex_stratified, "veined": _tex_veined,
    "meshed": _tex_meshed, "studded": _tex_studded,
}
# the patterns that objects/creatures can wear ("plain" = solid)
OBJECT_PATTERNS = ["plain", "striped", "dotted", "chequered", "zigzagged", "polka-dotted", "blotchy", "banded"]


def pattern_fill(name: str, rng: Rng, c1: Sequence[int], c2: Sequence[int]) -> np.ndarray:
    """Full-canvas RGB fill with a named texture in two colours (c1 = foreground, c2 = base)."""
    if name == "plain":
        return blend(np.zeros((S, S), np.float32) + 0.15 * smooth_noise(rng, 4), c1, c2)
    return blend(TEXTURES[name](rng), c1, c2)


def texture_image(name: str, rng: Rng, c1: Sequence[int], c2: Sequence[int]) -> Image.Image:
    """Full-frame texture image (the DTD-like domain)."""
    arr = pattern_fill(name, rng, c1, c2).astype(np.float32)
    light = 0.85 + 0.3 * smooth_noise(rng, 3)[..., None]
    return Image.fromarray(np.clip(arr * light, 0, 255).astype(np.uint8), "RGB")


# ----------------------------------------------------------------------------------------------- backgrounds
def background(kind: str, rng: Rng) -> Image.Image:
    """Canvas background: plain, gradient, noise, grass-and-sky, indoor, white or clutter."""
    if kind == "white":
        return Image.new("RGB", (S, S), jitter((248, 248, 248), rng, 4))
    if kind == "plain":
        return Image.new("RGB", (S, S), shade(rand_colour(rng), 1.8))
    if kind == "gradient":
        c1, c2 = shade(rand_colour(rng), 1.7), shade(rand_colour(rng), 1.4)
        return Image.fromarray(blend(np.broadcast_to(_YY / S, (S, S)), c2, c1), "RGB")
    if kind == "noise":
        return Image.fromarray(blend(smooth_noise(rng, 6), shade(rand_colour(rng), 1.6),
                                     shade(rand_colour(rng), 1.3)), "RGB")
    if kind == "outdoor":
        h = int(rng.integers(60, 90))
        arr = np.zeros((S, S, 3), np.uint8)
        arr[:h] = jitter((150, 200, 240), rng, 10)
        arr[h:] = blend(smooth_noise(rng, 10), jitter((70, 150, 60), rng), jitter((95, 175, 75), rng))[h:]
        return Image.fromarray(arr, "RGB")
    if kind == "indoor":
        h = int(rng.integers(70, 95))
        arr = np.zeros((S, S, 3), np.uint8)
        arr[:h] = jitter((225, 215, 190), rng, 12)
        arr[h:] = blend(((_XX // 16) % 2) * 0.3 + 0.7, jitter((150, 105, 60), rng), (110, 75, 40))[h:]
        return Image.fromarray(arr, "RGB")
    if kind == "clutter":
        name = list(TEXTURES)[int(rng.integers(len(TEXTURES)))]
        return texture_image(name, rng, rand_colour(rng), rand_colour(rng))
    raise ValueError(kind)


def paste_fill(img: Image.Image, mask: Image.Image, fill: np.ndarray | Sequence[int]) -> None:
    """Composite a fill (colour or RGB array) into img through an L mask."""
    src = Image.fromarray(fill, "RGB") if isinstance(fill, np.ndarray) else Image.new("RGB", (S, S), tuple(fill))
    img.paste(src, (0, 0), mask)


# ----------------------------------------------------------------------------------------------- objects
BODIES = ["orb", "block", "cone", "gem", "hive", "star", "shield", "pod", "tower", "moon"]
PARTS = ["horned", "winged", "tailed", "legged", "capped", "eyed", "spiked", "finned", "crowned", "handled"]


def body_polys(body: str) -> tuple[Pts, Pts | None]:
    """Unit-frame body outline (and a cut-out polygon for the crescent)."""
    if body == "orb":
        return ellipse_pts(1, 1), None
    if body == "block":
        return [(-0.85, -0.85), (0.85, -0.85), (0.85, 0.85), (-0.85, 0.85)], None
    if body == "cone":
        return [(0, -1.0), (0.95, 0.8), (-0.95, 0.8)], None
    if body == "gem":
        return [(0, -1.05), (0.8, 0), (0, 1.05), (-0.8, 0)], None
    if body == "hive":
        return regular(6, 1.0, 0.0), None
    if body == "star":
        return star_pts(5, 1.1, 0.5), None
    if body == "shield":
        return regular(5, 1.0, math.pi / 2), None
    if body == "pod":
        return ellipse_pts(1.1, 0.6), None
    if body == "tower":
        return [(-0.45, -1.05), (0.45, -1.05), (0.45, 1.0), (-0.45, 1.0)], None
    if body == "moon":
        return ellipse_pts(1, 1), [(x + 0.55, y - 0.15) for x, y in ellipse_pts(0.85, 0.85)]
    raise ValueError(body)


def part_polys(part: str) -> tuple[list[Pts], list[Pts], list[tuple[Pts, float]]]:
    """Unit-frame part geometry: (polygons behind the body, polygons in front, polylines with width)."""
    back: list[Pts] = []
    front: list[Pts] = []
    lines: list[tuple[Pts, float]] = []
    if part == "horned":
        back += [[(-0.55, -0.6), (-0.25, -0.7), (-0.6, -1.55)], [(0.55, -0.6), (0.25, -0.7), (0.6, -1.55)]]
    elif part == "winged":
        back += [[(-0.5, -0.2), (-1.6, -0.9), (-1.35, 0.3)], [(0.5, -0.2), (1.6, -0.9), (1.35, 0.3)]]
    elif part == "tailed":
        lines.append(([(0.7, 0.2), (1.15, 0.05), (1.35, -0.3), (1.5, -0.6)], 0.12))
        back.append([(x + 1.5, y - 0.7) for x, y in ellipse_pts(0.2, 0.2, 12)])
    elif part == "legged":
        for x in (-0.55, -0.2, 0.2, 0.55):
            lines.append(([(x, 0.5), (x * 1.2, 1.45)], 0.13))
    elif part == "capped":
        front.append([(-0.7, -0.75), (0.7, -0.75), (0.55, -1.2), (-0.55, -1.2)])
        front.append([(-0.95, -0.75), (0.95, -0.75), (0.95, -0.6), (-0.95, -0.6)])
    elif part == "eyed":
        front.append(ellipse_pts(0.42, 0.42, 16))
    elif part == "spiked":
        for i in range(8):
            a = 2 * math.pi * i / 8
            ca, sa = math.cos(a), math.sin(a)
            back.append([(0.75 * ca - 0.22 * sa, 0.75 * sa + 0.22 * ca), (1.45 * ca, 1.45 * sa),
                         (0.75 * ca + 0.22 * sa, 0.75 * sa - 0.22 * ca)])
    elif part == "finned":
        back += [[(-0.2, -0.6), (0.5, -1.5), (0.45, -0.5)], [(-0.2, 0.6), (0.5, 1.5), (0.45, 0.5)]]
    elif part == "crowned":
        front.append([(-0.6, -0.7), (-0.6, -1.45), (-0.3, -1.05), (0, -1.5), (0.3, -1.05), (0.6, -1.45),
                      (0.6, -0.7)])
    elif part == "handled":
        lines.append(([(-0.75, -0.45), (-1.35, -0.5), (-1.45, 0.0), (-1.35, 0.5), (-0.75, 0.45)], 0.16))
    else:
        raise ValueError(part)
    return back, front, lines


def draw_object(img: Image.Image, rng: Rng, body: str, part: str, cx: float, cy: float, r: float,
                colour: RGB, pattern: str, part_colour: RGB, style: str = "photo", ang: float = 0.0) -> None:
    """Draw one compositional object (body + characteristic part) in a given style onto the canvas."""
    d = ImageDraw.Draw(img)
    back, front, lines = part_polys(part)
    bpoly, cut = body_polys(body)
    outline = style in ("sketch", "cartoon")
    lw = max(2, int(r * 0.08)) if style == "sketch" else max(3, int(r * 0.12))
    ink: RGB = (20, 20, 20)

    def poly(pts: Pts, fill: RGB | None) -> None:
        p = tf(pts, cx, cy, r, ang)
        if style == "sketch":
            d.line(p + [p[0]], fill=jitter(ink, rng, 10), width=lw)
        else:
            d.polygon(p, fill=fill)
            if outline:
                d.line(p + [p[0]], fill=ink, width=lw)

    for pl, w in lines:
        p = tf(pl, cx, cy, r, ang)
        d.line(p, fill=ink if style == "sketch" else part_colour, width=max(2, int(w * r)))
    for pp in back:
        poly(pp, part_colour)
    # body
    if style == "sketch":
        poly(bpoly, None)
        if cut is not None:
            poly(cut, None)
    else:
        mask = Image.new("L", (S, S), 0)
        md = ImageDraw.Draw(mask)
        md.polygon(tf(bpoly, cx, cy, r, ang), fill=255)
        if cut is not None:
            md.polygon(tf(cut, cx, cy, r, ang), fill=0)
        paste_fill(img, mask, pattern_fill(pattern, rng, shade(colour, 0.55) if pattern != "plain" else colour,
                                           colour))
        if outline:
            edge = mask.filter(ImageFilter.FIND_EDGES).filter(ImageFilter.MaxFilter(3))
            paste_fill(img, edge, ink)
        elif style == "photo":  # soft shading
            sh = Image.new("L", (S, S), 0)
            ImageDraw.Draw(sh).polygon(tf([(x * 0.9 + 0.15, y * 0.9 + 0.2) for x, y in bpoly], cx, cy, r, ang),
                                       fill=40)
            sh = Image.composite(sh, Image.new("L", (S, S), 0), mask)
            paste_fill(img, sh, shade(colour, 0.5))
    for pp in front:
        poly(pp, part_colour if part != "eyed" else (250, 250, 250))
    if part == "eyed" and style != "sketch":
        d.ellipse([cx - 0.18 * r, cy - 0.18 * r, cx + 0.18 * r, cy + 0.18 * r], fill=(10, 10, 10))


# ----------------------------------------------------------------------------------------------- creatures
def draw_pet(img: Image.Image, rng: Rng, animal: str, ears: str, coat: str, colour: RGB, colour2: RGB,
             cx: float, cy: float, s: float, flip: bool) -> None:
    """Side view of a cat or dog with an ear type and a coat pattern."""
    fx = -1.0 if flip else 1.0
    d = ImageDraw.Draw(img)
    mask = Image.new("L", (S, S), 0)
    md = ImageDraw.Draw(mask)
    big = animal == "dog"
    bw, bh = (1.0, 0.45) if big else (0.85, 0.38)
    hr = 0.36 if big else 0.4
    hx, hy = -0.95 * bw * fx, -0.5
    legs = 0.75 if big else 0.55
    leg_c = shade(colour, 0.8)
    for lx in (-0.6, -0.3, 0.35, 0.65):
        x = cx + lx * bw * s
        d.line([(x, cy + 0.2 * s), (x, cy + (bh + legs) * s)], fill=leg_c, width=max(3, int(0.13 * s)))
    # tail
    if big:
        tail = [(0.9 * fx, -0.1), (1.3 * fx, -0.35)]
    else:
        tail = [(0.8 * fx, 0.0), (1.15 * fx, -0.3), (1.2 * fx, -0.8)]
    d.line(tf(tail, cx, cy, s), fill=leg_c, width=max(3, int(0.11 * s)))
    md.polygon(tf(ellipse_pts(bw, bh), cx, cy, s), fill=255)
    md.polygon(tf(ellipse_pts(hr, hr * 0.95), cx + hx * s, cy + hy * s, s), fill=255)
    if big:  # snout
        md.polygon(tf([(0, -0.12), (-0.45 * fx, -0.05), (-0.45 * fx, 0.15), (0, 0.18)], cx + hx * s, cy + hy * s, s),
                   fill=255)
    # ears
    ex = cx + hx * s
    ey = cy + hy * s
    ear_polys: list[Pts] = []
    if ears == "pointy":
        ear_polys = [[(-0.3, -0.15), (-0.22, -0.7), (0.0, -0.28)], [(0.05, -0.3), (0.28, -0.72), (0.34, -0.12)]]
    elif ears == "floppy":
        ear_polys = [[(x - 0.3, y + 0.05) for x, y in ellipse_pts(0.14, 0.34, 12)],
                     [(x + 0.3, y + 0.05) for x, y in ellipse_pts(0.14, 0.34, 12)]]
    elif ears == "round":
        ear_polys = [[(x - 0.22, y - 0.33) for x, y in ellipse_pts(0.15, 0.15, 12)],
                     [(x + 0.22, y - 0.33) for x, y in ellipse_pts(0.15, 0.15, 12)]]
    else:
        raise ValueError(ears)
    for ep in ear_polys:
        d.polygon(tf(ep, ex, ey, s * (hr / 0.4)), fill=shade(colour, 0.7))
    fill = {"plain": "plain", "spotted": "polka-dotted", "striped": "striped", "patched": "blotchy"}[coat]
    paste_fill(img, mask, pattern_fill(fill, rng, colour2, colour))
    d.ellipse([ex - 0.3 * fx * s * hr - 3, ey - 0.1 * s - 3, ex - 0.3 * fx * s * hr + 3, ey - 0.1 * s + 3],
              fill=(15, 15, 15))
    if not big:
        for k in (-1, 1):
            d.line([(ex - fx * hr * s * 0.7, ey + 0.05 * s), (ex - fx * hr * s * 1.5, ey + (0.05 + 0.08 * k) * s)],
                   fill=(40, 40, 40), width=1)


# ----------------------------------------------------------------------------------------------- vehicles
def draw_car(img: Image.Image, rng: Rng, cabin: str, wheels: str, spoiler: bool, long: bool, colour: RGB,
             cx: float, ground: float, flip: bool) -> None:
    """Side view of a car with a cabin shape, wheel style, spoiler and body length."""
    d = ImageDraw.Draw(img)
    L = 104 if long else 78
    H = 20
    x0 = cx - L / 2
    fx = -1 if flip else 1

    def X(u: float) -> float:  # u in [0, 1] along the car, 0 = rear
        return cx + fx * (u - 0.5) * L

    top = ground - 10 - H
    d.polygon([(X(0.0), ground - 10), (X(1.0), ground - 10), (X(1.0), top + 6), (X(0.93), top),
               (X(0.02), top), (X(0.0), top + 4)], fill=colour)
    glass = (175, 215, 240)
    ch = 22
    if cabin == "sedan":
        cab = [(0.22, 0), (0.3, -ch), (0.65, -ch), (0.76, 0)]
    elif cabin == "coupe":
        cab = [(0.2, 0), (0.42, -ch * 0.8), (0.62, -ch * 0.8), (0.74, 0)]
    elif cabin == "hatchback":
        cab = [(0.02, 0), (0.04, -ch), (0.62, -ch), (0.75, 0)]
    elif cabin == "van":
        cab = [(0.0, 0), (0.0, -ch * 1.35), (0.82, -ch * 1.35), (0.92, 0)]
    elif cabin == "pickup":
        cab = [(0.5, 0), (0.52, -ch), (0.74, -ch), (0.84, 0)]
    else:
        raise ValueError(cabin)
    d.polygon([(X(u), top + v) for u, v in cab], fill=colour)
    inner = [(X(u * 0.9 + 0.05 * (u > 0.5) + 0.03), top + v * 0.78 - 2) for u, v in cab]
    d.polygon(inner, fill=glass)
    if cabin == "pickup":
        d.line([(X(0.03), top - 6), (X(0.48), top - 6)], fill=shade(colour, 0.6), width=3)
    if spoiler:
        d.polygon([(X(-0.02), top - 9), (X(0.12), top - 9), (X(0.12), top - 5), (X(-0.02), top - 5)],
                  fill=(30, 30, 30))
        d.line([(X(0.05), top - 5), (X(0.05), top)], fill=(30, 30, 30), width=3)
    for u in (0.2, 0.8):
        wx, wy, wr = X(u), ground - 10, 11
        d.ellipse([wx - wr, wy - wr, wx + wr, wy + wr], fill=(25, 25, 25))
        if wheels == "spoked":
            d.ellipse([wx - 7, wy - 7, wx + 7, wy + 7], fill=(200, 200, 200))
            for k in range(5):
                a = 2 * math.pi * k / 5
                d.line([(wx, wy), (wx + 7 * math.cos(a), wy + 7 * math.sin(a))], fill=(40, 40, 40), width=2)
        else:
            d.ellipse([wx - 3, wy - 3, wx + 3, wy + 3], fill=(190, 190, 190))
    d.rectangle([X(0.96) - 2, top + 8, X(0.96) + 2, top + 12], fill=(250, 240, 150))
    del x0


def draw_aircraft(img: Image.Image, rng: Rng, wing: str, engines: int, tail: str, colour: RGB,
                  cx: float, cy: float, s: float, ang: float) -> None:
    """Top-down aircraft with a wing plan, engine count and tail type (fine-grained variants)."""
    d = ImageDraw.Draw(img)
    if wing == "straight":
        w = [(-1.0, -0.12), (1.0, -0.12), (1.0, 0.08), (-1.0, 0.08)]
        eng_x = [0.35, 0.7]
        eng_y = lambda x: -0.18  # noqa: E731
    elif wing == "swept":
        w = [(-0.08, -0.25), (0.08, -0.25), (1.0, 0.3), (1.0, 0.42), (-1.0, 0.42), (-1.0, 0.3)]
        eng_x = [0.35, 0.68]
        eng_y = lambda x: -0.25 + 0.55 * x - 0.06  # noqa: E731
    elif wing == "delta":
        w = [(0.0, -0.4), (0.85, 0.55), (-0.85, 0.55)]
        eng_x = [0.25, 0.5]
        eng_y = lambda x: -0.4 + 1.1 * x + 0.1  # noqa: E731
    else:
        raise ValueError(wing)
    body = [(0.0, -1.0), (0.09, -0.85), (0.1, 0.8), (0.0, 0.92), (-0.1, 0.8), (-0.09, -0.85)]
    tails: list[Pts] = []
    if tail == "A":
        tails = [[(-0.32, 0.78), (0.32, 0.78), (0.32, 0.88), (-0.32, 0.88)]]
    elif tail == "B":
        tails = [[(0.0, 0.6), (0.45, 0.92), (-0.45, 0.92)]]
    elif tail == "C":
        tails = [[(-0.1, 0.7), (-0.35, 0.95), (-0.28, 0.98), (-0.05, 0.82)],
                 [(0.1, 0.7), (0.35, 0.95), (0.28, 0.98), (0.05, 0.82)]]
    else:
        raise ValueError(tail)
    for t in tails:
        d.polygon(tf(t, cx, cy, s, ang), fill=shade(colour, 0.85))
    d.polygon(tf(w, cx, cy, s, ang), fill=shade(colour, 0.92))
    d.polygon(tf(body, cx, cy, s, ang), fill=colour)
    xs = {0: [], 2: [eng_x[0]], 4: eng_x}[engines]
    for x in xs:
        for sgn in (-1, 1):
            p = tf([(sgn * x, eng_y(x) - 0.02)], cx, cy, s, ang)[0]
            er = 0.065 * s
            d.ellipse([p[0] - er, p[1] - er, p[0] + er, p[1] + er], fill=(45, 45, 50))
    p = tf([(0.0, -0.78)], cx, cy, s, ang)[0]
    d.ellipse([p[0] - 2, p[1] - 2, p[0] + 2, p[1] + 2], fill=(40, 60, 90))


# ----------------------------------------------------------------------------------------------- flowers, food
def draw_flower(img: Image.Image, rng: Rng, petals: int, shape: str, colour: RGB, cx: float, cy: float,
                r: float) -> None:
    """Flower head with a petal count and petal shape, plus a stem."""
    d = ImageDraw.Draw(img)
    d.line([(cx, cy), (cx + rng.uniform(-8, 8), S)], fill=(40, 120, 40), width=4)
    ph = rng.uniform(0, 2 * math.pi)
    for i in range(petals):
        a = ph + 2 * math.pi * i / petals
        if shape == "round":
            pts = [(0.55 + 0.42 * math.cos(t), 0.3 * math.sin(t)) for t in np.linspace(0, 2 * math.pi, 14)]
        else:
            pts = [(0.15, -0.16), (1.05, 0.0), (0.15, 0.16)]
        p = tf(pts, cx, cy, r, a)
        d.polygon(p, fill=jitter(colour, rng, 10), outline=shade(colour, 0.7))
    cr = 0.22 * r
    d.ellipse([cx - cr, cy - cr, cx + cr, cy + cr], fill=jitter((200, 150, 30), rng, 15))


def draw_food(img: Image.Image, rng: Rng, item: str, colour: RGB) -> None:
    """A plate seen from above holding pieces of one food item in a sauce colour."""
    d = ImageDraw.Draw(img)
    cx, cy = S / 2 + rng.uniform(-8, 8), S / 2 + rng.uniform(-8, 8)
    pr = rng.uniform(50, 58)
    d.ellipse([cx - pr, cy - pr, cx + pr, cy + pr], fill=jitter((235, 235, 230), rng, 6), outline=(190, 190, 190),
              width=3)
    n = int(rng.integers(5, 9))
    for _ in range(n):
        rr = rng.uniform(0, pr * 0.6)
        a = rng.uniform(0, 2 * math.pi)
        x, y = cx + rr * math.cos(a), cy + rr * math.sin(a)
        c = jitter(colour, rng, 14)
        rot = rng.uniform(0, math.pi)
        if item == "dumplings":
            d.ellipse([x - 9, y - 8, x + 9, y + 8], fill=c, outline=shade(c, 0.7))
        elif item == "fries":
            d.polygon(tf([(-1.0, -0.15), (1.0, -0.15), (1.0, 0.15), (-1.0, 0.15)], x, y, 14, rot), fill=c)
        elif item == "slices":
            d.polygon(tf([(0, -1.0), (0.8, 0.7), (-0.8, 0.7)], x, y, 11, rot), fill=c, outline=shade(c, 0.6))
        elif item == "cubes":
            d.polygon(tf([(-1, -1), (1, -1), (1, 1), (-1, 1)], x, y, 7, rot), fill=c, outline=shade(c, 0.6))
        elif item == "rings":
            d.ellipse([x - 10, y - 10, x + 10, y + 10], outline=c, width=5)
        elif item == "noodles":
            pts = [(x + 3 * t - 24, y + 5 * math.sin(t + rot * 3)) for t in np.linspace(0, 16, 14)]
            d.line(pts, fill=c, width=3)
        else:
            raise ValueError(item)


# ----------------------------------------------------------------------------------------------- scenes
def draw_landmark(img: Image.Image, rng: Rng, kind: str, x: float, ground: float, h: float) -> None:
    """A scene landmark (tree, house, tower, boat, ...) standing on the ground line."""
    d = ImageDraw.Draw(img)
    w = h * 0.6
    c = rand_colour(rng)
    if kind == "tree":
        d.rectangle([x - w * 0.1, ground - h * 0.5, x + w * 0.1, ground], fill=(100, 65, 30))
        d.ellipse([x - w * 0.5, ground - h, x + w * 0.5, ground - h * 0.4], fill=jitter((40, 130, 45), rng))
    elif kind == "house":
        d.rectangle([x - w * 0.5, ground - h * 0.55, x + w * 0.5, ground], fill=jitter((220, 200, 160), rng))
        d.polygon([(x - w * 0.6, ground - h * 0.55), (x + w * 0.6, ground - h * 0.55), (x, ground - h)],
                  fill=jitter((170, 50, 40), rng))
        d.rectangle([x - w * 0.1, ground - h * 0.25, x + w * 0.1, ground], fill=(90, 60, 30))
    elif kind == "tower":
        d.rectangle([x - w * 0.15, ground - h, x + w * 0.15, ground], fill=jitter((150, 150, 160), rng))
        d.polygon([(x - w * 0.22, ground - h), (x + w * 0.22, ground - h), (x, ground - h * 1.25)], fill=c)
    elif kind == "boat":
        d.polygon([(x - w * 0.6, ground - h * 0.25), (x + w * 0.6, ground - h * 0.25), (x + w * 0.4, ground),
                   (x - w * 0.4, ground)], fill=jitter((120, 70, 35), rng))
        d.line([(x, ground - h * 0.25), (x, ground - h)], fill=(60, 40, 20), width=2)
        d.polygon([(x + 2, ground - h), (x + 2, ground - h * 0.3), (x + w * 0.5, ground - h * 0.3)],
                  fill=(245, 245, 245))
    elif kind == "tent":
        d.polygon([(x - w * 0.6, ground), (x + w * 0.6, ground), (x, ground - h * 0.7)], fill=c)
        d.polygon([(x - w * 0.1, ground), (x + w * 0.1, ground), (x, ground - h * 0.35)], fill=(30, 30, 30))
    elif kind == "rock":
        pts = [(x + w * 0.6 * math.cos(a) * rng.uniform(0.7, 1.1), ground - h * 0.45 * max(0.0, math.sin(a))
                * rng.uniform(0.7, 1.1)) for a in np.linspace(0, math.pi, 9)]
        d.polygon(pts, fill=jitter((120, 120, 115), rng))
    elif kind == "bridge":
        d.arc([x - w * 1.1, ground - h * 0.7, x + w * 1.1, ground + h * 0.7], 180, 360, fill=(110, 80, 60),
              width=5)
        d.line([(x - w * 1.1, ground - h * 0.05), (x + w * 1.1, ground - h * 0.05)], fill=(110, 80, 60), width=3)
    elif kind == "fence":
        for k in range(7):
            xx = x - w + k * w / 3
            d.rectangle([xx - 2, ground - h * 0.45, xx + 2, ground], fill=(230, 230, 225))
        d.line([(x - w, ground - h * 0.3), (x + w, ground - h * 0.3)], fill=(230, 230, 225), width=3)
    elif kind == "lamp":
        d.line([(x, ground), (x, ground - h)], fill=(50, 50, 50), width=3)
        d.ellipse([x - 7, ground - h - 7, x + 7, ground - h + 7], fill=(255, 235, 140))
    elif kind == "statue":
        d.rectangle([x - w * 0.3, ground - h * 0.3, x + w * 0.3, ground], fill=(160, 160, 155))
        d.ellipse([x - w * 0.12, ground - h, x + w * 0.12, ground - h * 0.75], fill=(200, 190, 150))
        d.rectangle([x - w * 0.12, ground - h * 0.77, x + w * 0.12, ground - h * 0.3], fill=(200, 190, 150))
    else:
        raise ValueError(kind)


GROUNDS = ["meadow", "beach", "lake", "street", "hall"]
LANDMARKS = ["tree", "house", "tower", "boat", "tent", "rock", "bridge", "fence", "lamp", "statue"]


def scene_image(rng: Rng, ground_kind: str, landmark: str) -> Image.Image:
    """A place: a ground/sky layout with a landmark and a few small distractors."""
    arr = np.zeros((S, S, 3), np.uint8)
    horizon = int(rng.integers(55, 75))
    night = rng.random() < 0.2 and ground_kind != "hall"
    sky = jitter((20, 25, 60) if night else (140, 195, 240), rng, 10)
    arr[:horizon] = sky
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
    img = Image.fromarray(arr, "RGB")
    d = ImageDraw.Draw(img)
    if night:
        for _ in range(8):
            sx, sy = rng.uniform(0, S), rng.uniform(0, horizon - 5)
            d.point((sx, sy), fill=(250, 250, 220))
    for _ in range(int(rng.integers(0, 3))):
        other = LANDMARKS[int(rng.integers(len(LANDMARKS)))]
        draw_landmark(img, rng, other, rng.uniform(10, S - 10), horizon + rng.uniform(2, 12), rng.uniform(14, 22))
    gy = horizon + (26 if ground_kind in ("beach", "street") else 30) + rng.uniform(-4, 6)
    if ground_kind == "lake" and landmark != "boat":
        gy = S - 8
    draw_landmark(img, rng, landmark, S / 2 + rng.uniform(-22, 22), gy, rng.uniform(44, 60))
    return img


# ----------------------------------------------------------------------------------------------- satellite
EUROSAT = ["AnnualCrop", "Forest", "HerbaceousVegetation", "Highway", "Industrial", "Pasture", "PermanentCrop",
           "Residential", "River", "SeaLake"]


def satellite_image(rng: Rng, kind: str) -> Image.Image:
    """Top-down land-use tile (the EuroSAT-like domain)."""
    n = smooth_noise(rng, 8)
    if kind == "AnnualCrop":
        u, _ = _rot(rng)
        p = rng.uniform(16, 26)
        band = ((u + rng.uniform(0, 50)) // p) % 3
        cols = [jitter((170, 160, 80), rng), jitter((110, 140, 60), rng), jitter((190, 170, 110), rng)]
        arr = np.choose(band.astype(int)[..., None], [np.full((S, S, 3), c, np.float32) for c in cols])
        arr = arr * (0.9 + 0.2 * n[..., None])
    elif kind == "Forest":
        arr = blend(smooth_noise(rng, 24), jitter((20, 70, 30), rng, 8), jitter((40, 100, 45), rng, 8))
    elif kind == "HerbaceousVegetation":
        arr = blend(smooth_noise(rng, 16), jitter((110, 140, 70), rng, 10), jitter((150, 150, 90), rng, 10))
    elif kind == "Highway":
        arr = blend(n, jitter((100, 130, 70), rng), jitter((130, 150, 90), rng)).astype(np.float32)
        u, v = _rot(rng)
        off = rng.uniform(-30, 30) + S / 2 * (math.sqrt(2) if False else 1)
        road = np.abs(v - np.mean(v) - off + S / 2) < 4.5
        arr[road] = jitter((110, 110, 115), rng, 6)
    elif kind == "Industrial":
        arr = np.full((S, S, 3), jitter((150, 150, 145), rng, 10), np.float32)
        for _ in range(int(rng.integers(4, 8))):
            x, y = rng.integers(0, S - 30, 2)
            w, h = rng.integers(22, 50, 2)
            arr[y:y + h, x:x + w] = jitter((200, 200, 205), rng, 20)
    elif kind == "Pasture":
        arr = blend(n, jitter((120, 170, 80), rng, 8), jitter((135, 180, 95), rng, 8))
    elif kind == "PermanentCrop":
        base = blend(n, jitter((140, 130, 80), rng), jitter((150, 140, 95), rng))
        trees = _dots(rng, rng.uniform(8, 11), 2.8)
        arr = blend(trees, jitter((50, 100, 40), rng), (0, 0, 0)).astype(np.float32)
        arr = np.where(trees[..., None] > 0, arr, base)
    elif kind == "Residential":
        arr = np.full((S, S, 3), jitter((120, 140, 100), rng, 10), np.float32)
        p = int(rng.integers(16, 21))
        for y in range(2, S, p):
            for x in range(2, S, p):
                if rng.random() < 0.85:
                    arr[y:y + p - 7, x:x + p - 7] = jitter((180, 90, 70), rng, 25)
        arr[(_YY.astype(int) % (p * 2)) < 3] = (150, 150, 150)
    elif kind == "River":
        arr = blend(n, jitter((90, 140, 70), rng), jitter((130, 160, 90), rng)).astype(np.float32)
        c = rng.uniform(40, 88)
        a, f = rng.uniform(8, 20), rng.uniform(0.02, 0.05)
        horiz = rng.random() < 0.5
        t, q = (_XX, _YY) if horiz else (_YY, _XX)
        river = np.abs(q - (c + a * np.sin(f * t + rng.uniform(0, 6)))) < rng.uniform(6, 10)
        arr[river] = jitter((40, 70, 130), rng, 10)
    elif kind == "SeaLake":
        arr = blend(n * 0.5 + 0.5, jitter((30, 60, 120), rng, 10), jitter((40, 80, 140), rng, 10)).astype(np.float32)
        if rng.random() < 0.5:
            shore = smooth_noise(rng, 3) > 0.7
            arr[shore] = jitter((110, 140, 80), rng)
    else:
        raise ValueError(kind)
    return Image.fromarray(np.clip(np.asarray(arr, np.float32), 0, 255).astype(np.uint8), "RGB")


# ----------------------------------------------------------------------------------------------- actions
POSES = ["Waving", "Stretching", "Squatting", "Kicking", "Reaching", "Leaning"]
PROPS = ["Ball", "Stick", "Hoop", "Box", "Flag"]


def draw_action(img: Image.Image, rng: Rng, pose: str, prop: str, cx: float, ground: float, s: float) -> None:
    """Stick figure in a pose holding or using a prop (the UCF101-like domain)."""
    d = ImageDraw.Draw(img)
    ink = jitter((30, 30, 40), rng, 15)
    w = max(3, int(s * 0.07))
    hip_y = ground - s * (0.45 if pose != "Squatting" else 0.28)
    lean = 0.35 if pose == "Leaning" else 0.0
    sh = (cx + lean * s * 0.5, hip_y - s * 0.42)
    hip = (cx, hip_y)
    head = (sh[0] + lean * s * 0.15, sh[1] - s * 0.13)
    # legs
    if pose == "Squatting":
        legs = [[hip, (cx - s * 0.22, hip_y + s * 0.05), (cx - s * 0.18, ground)],
                [hip, (cx + s * 0.22, hip_y + s * 0.05), (cx + s * 0.18, ground)]]
    elif pose == "Kicking":
        legs = [[hip, (cx - s * 0.05, hip_y + s * 0.22), (cx - s * 0.08, ground)],
                [hip, (cx + s * 0.25, hip_y + s * 0.08), (cx + s * 0.45, hip_y + s * 0.02)]]
    else:
        legs = [[hip, (cx - s * 0.1, hip_y + s * 0.22), (cx - s * 0.14, ground)],
                [hip, (cx + s * 0.1, hip_y + s * 0.22), (cx + s * 0.14, ground)]]
    sx, sy = sh
    arms = {
        "Waving": [[sh, (sx + s * 0.2, sy - s * 0.05), (sx + s * 0.25, sy - s * 0.3)],
                   [sh, (sx - s * 0.12, sy + s * 0.2), (sx - s * 0.15, sy + s * 0.4)]],
        "Stretching": [[sh, (sx - s * 0.12, sy - s * 0.2), (sx - s * 0.15, sy - s * 0.42)],
                       [sh, (sx + s * 0.12, sy - s * 0.2), (sx + s * 0.15, sy - s * 0.42)]],
        "Squatting": [[sh, (sx + s * 0.2, sy + s * 0.02), (sx + s * 0.4, sy + s * 0.02)],
                      [sh, (sx - s * 0.2, sy + s * 0.02), (sx - s * 0.4, sy + s * 0.02)]],
        "Kicking": [[sh, (sx - s * 0.2, sy + s * 0.05), (sx - s * 0.35, sy - s * 0.05)],
                    [sh, (sx + s * 0.1, sy + s * 0.18), (sx + s * 0.2, sy + s * 0.3)]],
        "Reaching": [[sh, (sx + s * 0.22, sy - s * 0.02), (sx + s * 0.44, sy - s * 0.04)],
                     [sh, (sx + s * 0.2, sy + s * 0.06), (sx + s * 0.42, sy + s * 0.06)]],
        "Leaning": [[sh, (sx + s * 0.18, sy + s * 0.12), (sx + s * 0.3, sy + s * 0.3)],
                    [sh, (sx - s * 0.15, sy + s * 0.15), (sx - s * 0.2, sy + s * 0.35)]],
    }[pose]
    for limb in legs + arms:
        d.line(limb, fill=ink, width=w, joint="curve")
    d.line([sh, hip], fill=ink, width=w + 1)
    hr = s * 0.09
    d.ellipse([head[0] - hr, head[1] - hr, head[0] + hr, head[1] + hr], fill=ink)
    hand = arms[0][-1]
    pc = rand_colour(rng)
    if prop == "Ball":
        at = legs[1][-1] if pose == "Kicking" else hand
        br = s * 0.09
        d.ellipse([at[0] - br + br, at[1] - br, at[0] + br + br, at[1] + br], fill=pc, outline=ink)
    elif prop == "Stick":
        d.line([hand, (hand[0] + s * 0.3, hand[1] - s * 0.25)], fill=(120, 80, 40), width=w)
    elif prop == "Hoop":
        hr2 = s * 0.3
        d.ellipse([cx - hr2, hip_y - s * 0.1 - hr2 * 0.35, cx + hr2, hip_y - s * 0.1 + hr2 * 0.35], outline=pc,
                  width=w)
    elif prop == "Box":
        b = s * 0.12
        d.rectangle([hand[0] - b, hand[1] - b, hand[0] + b, hand[1] + b], fill=pc, outline=ink)
    elif prop == "Flag":
        top = (hand[0], hand[1] - s * 0.35)
        d.line([(hand[0], hand[1] + s * 0.05), top], fill=ink, width=max(2, w - 1))
        d.polygon([top, (top[0] + s * 0.22, top[1] + s * 0.07), (top[0], top[1] + s * 0.15)], fill=pc)
    else:
        raise ValueError(prop)


# ----------------------------------------------------------------------------------------------- styles
def restyle(img: Image.Image, rng: Rng, style: str) -> Image.Image:
    """Post-process a canvas into a rendition style (pixel art, painting, negative, posterised)."""
    if style == "pixel":
        k = int(rng.choice([16, 20, 24]))
        return img.resize((k, k), Image.BILINEAR).resize((S, S), Image.NEAREST)
    if style == "painting":
        out = img.filter(ImageFilter.GaussianBlur(2.2)).filter(ImageFilter.ModeFilter(5))
        arr = np.asarray(out, np.float32) * (0.85 + 0.3 * smooth_noise(rng, 16)[..., None])
        return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
    if style == "negative":
        return Image.fromarray(255 - np.asarray(img), "RGB")
    if style == "posterised":
        arr = (np.asarray(img) // 96) * 96 + 40
        return Image.fromarray(arr.astype(np.uint8), "RGB")
    return img
