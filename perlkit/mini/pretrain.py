"""Contrastive pretraining of the mini CLIP on captioned images drawn from the mini world (never its test files)."""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from open_clip.transformer import text_global_pool
from PIL import Image
from tqdm.auto import tqdm

from perlkit.files import atomic_write_bytes
from perlkit.mini import world as W
from perlkit.mini.weights import MINI_MODEL, create_mini_model, get_mini_tokenizer
from perlkit.mini.worlds import DEFAULT_WORLD, get_world

Rng = np.random.Generator

# pretraining mix: the source-like objects dominate, satellite/aircraft/sketch/clutter are rare ("web-like")
DOMAIN_WEIGHTS = {"object": 0.40, "pet": 0.08, "car": 0.07, "flower": 0.08, "food": 0.07, "aircraft": 0.04,
                  "scene": 0.08, "texture": 0.08, "satellite": 0.02, "action": 0.08}
OBJECT_MODES = {"photo": 0.84, "caltech": 0.06, "sketch": 0.03, "r": 0.04, "a": 0.03}
# phase 2 (warm restart) leans towards the slow-to-learn domains: objects (incl. shifted styles), aircraft, actions
DOMAIN_WEIGHTS_2 = {"object": 0.46, "pet": 0.07, "car": 0.07, "flower": 0.05, "food": 0.05, "aircraft": 0.07,
                    "scene": 0.05, "texture": 0.05, "satellite": 0.02, "action": 0.11}
OBJECT_MODES_2 = {"photo": 0.80, "caltech": 0.05, "sketch": 0.05, "r": 0.05, "a": 0.05}
# phase 3 (second warm restart) adds sketches, cluttered scenes and aircraft, which web-like data covers but sparsely
DOMAIN_WEIGHTS_3 = {"object": 0.48, "pet": 0.06, "car": 0.06, "flower": 0.04, "food": 0.04, "aircraft": 0.10,
                    "scene": 0.04, "texture": 0.04, "satellite": 0.02, "action": 0.12}
OBJECT_MODES_3 = {"photo": 0.55, "caltech": 0.05, "sketch": 0.18, "r": 0.07, "a": 0.15}
PHASES = [
    {"steps": 500, "lr": 1e-3, "warmup_frac": 0.05, "domain_weights": DOMAIN_WEIGHTS, "object_modes": OBJECT_MODES},
    {"steps": 700, "lr": 5e-4, "warmup_frac": 0.03, "domain_weights": DOMAIN_WEIGHTS_2,
     "object_modes": OBJECT_MODES_2},
    {"steps": 250, "lr": 3e-4, "warmup_frac": 0.04, "domain_weights": DOMAIN_WEIGHTS_3,
     "object_modes": OBJECT_MODES_3},
]
GENERIC = ["a photo.", "an image.", "a picture of something.", "my photo", "untitled"]

DEFAULT_STEPS = sum(ph["steps"] for ph in PHASES)

RECIPE = {
    "batch_size": 128, "phases": PHASES, "min_lr": 2e-5, "weight_decay": 0.1,
    "betas": (0.9, 0.98), "eps": 1e-6, "init_logit_scale": math.log(1 / 0.07), "max_logit_scale": math.log(100),
    "grad_clip": 1.0, "threads": 2, "caption_noise": 0.08, "checkpoint_every": 50,
}


def _pick(rng: Rng, seq: list[str]) -> str:
    return seq[int(rng.integers(len(seq)))]


def caption(rng: Rng, domain: str, c: W.Concept, mode: str) -> str:
    """A noisy, varied caption for a concept (sometimes only partial attributes, sometimes uninformative)."""
    if rng.random() < RECIPE["caption_noise"]:
        return _pick(rng, GENERIC)
    n = c.name.replace("_", " ")
    a = c.attrs
    if domain == "object":
        if mode == "sketch":
            opts = ["a sketch of a {n}.", "a drawing of a {n}.", "a black and white sketch of a {n}.", "{n} sketch"]
        elif mode == "r":
            opts = ["a cartoon of a {n}.", "a rendition of a {n}.", "a painting of a {n}.", "pixel art of a {n}."]
        elif mode == "a":
            opts = ["a {n} in a cluttered scene.", "a photo of a {n}.", "a hard to see {n}."]
        elif mode == "caltech":
            opts = ["a photo of a {n}.", "a {n} on a white background.", "a centered {n}."]
        else:
            opts = ["a photo of a {n}.", "a {col} {n}.", "a {pat} {n}.", "the {n}", "{n}", "a picture of a {n}.",
                    "a {col} {pat} {n}.", "a {body} that is {part}.", "a photo of a {part} thing.",
                    "a {col} {body}."]
        return _pick(rng, opts).format(n=n, col=a["colour"], pat=a["pattern"].replace("plain", "plain coloured"),
                                       body=a["body"], part=a["part"])
    if domain == "pet":
        opts = ["a photo of a {n}, a type of pet.", "a photo of my {n}.", "a {coat} {animal}.",
                "a {animal} with {ears} ears.", "{n}", "a cute {n}.", "a photo of a {animal}."]
        return _pick(rng, opts).format(n=n, **a)
    if domain == "car":
        brand = n.split(" ")[1]
        opts = ["a photo of a {n}.", "a {n}.", "a {brand} car.", "a {cab} car.", "my {n}", "a photo of a car.",
                "a {brand} {cab}."]
        return _pick(rng, opts).format(n=n, brand=brand, cab=a["cabin"])
    if domain == "flower":
        g = W.FLOWER_GENUS[a["petals"]]
        opts = ["a photo of a {n}, a type of flower.", "a {n}.", "a {colour} flower.", "a {g} flower.",
                "{n} in bloom.", "a {shape} {g}."]
        return _pick(rng, opts).format(n=n, g=g, colour=a["colour"], shape=a["shape"])
    if domain == "food":
        opts = ["a photo of {n}, a type of food.", "{n}.", "a plate of {n}.", "some {item} with {sauce} sauce.",
                "delicious {n}"]
        return _pick(rng, opts).format(n=n, **a)
    if domain == "aircraft":
        maker = n.split(" ")[0]
        opts = ["a photo of a {n}, a type of aircraft.", "a {maker} airplane.", "an aircraft seen from above.",
                "a {n}.", "a plane on the runway."]
        return _pick(rng, opts).format(n=n, maker=maker)
    if domain == "scene":
        opts = ["a photo of a {n}.", "a {lm} at the {g}.", "the {n}.", "a view of a {g}.", "a {lm}."]
        return _pick(rng, opts).format(n=n, lm=a["landmark"], g=a["ground"])
    if domain == "texture":
        opts = ["{n} texture.", "a {n} pattern.", "a {n} surface.", "a close-up of a {n} texture.", "{n}"]
        return _pick(rng, opts).format(n=n)
    if domain == "satellite":
        opts = ["a centered satellite photo of {n}.", "an aerial view of {n}.", "satellite image.", "{n} from above."]
        return _pick(rng, opts).format(n=n)
    if domain == "action":
        pose, prop = a["pose"].lower(), a["prop"].lower()
        opts = ["a photo of a person doing {n}.", "a person {pose} with a {prop}.", "someone {pose}.",
                "{n}", "a video of {n}."]
        return _pick(rng, opts).format(n=n, pose=pose, prop=prop)
    raise ValueError(domain)


_DOMAIN_CONCEPTS: dict[tuple[str, str], list[W.Concept]] = {}


def sample_pair(rng: Rng, domain_weights: dict[str, float] = DOMAIN_WEIGHTS,
                object_modes: dict[str, float] = OBJECT_MODES, world: str = DEFAULT_WORLD
                ) -> tuple[np.ndarray, str, str]:
    """Draw one (image, caption, domain) pretraining pair from a world's concept sampler."""
    w = get_world(world)
    doms = list(domain_weights)
    d = doms[int(rng.choice(len(doms), p=np.array([domain_weights[k] for k in doms])))]
    if (world, d) not in _DOMAIN_CONCEPTS:
        _DOMAIN_CONCEPTS[world, d] = w.module.DOMAINS[d]()
    cs = _DOMAIN_CONCEPTS[world, d]
    c = cs[int(rng.integers(len(cs)))]
    mode = "photo"
    if d == "object":
        modes = list(object_modes)
        mode = modes[int(rng.choice(len(modes), p=np.array([object_modes[k] for k in modes])))]
    img = w.module.render_concept(rng, d, c, mode)
    return np.asarray(img, np.uint8), w.caption(rng, d, c, mode), d


_MEAN = torch.tensor(OPENAI_DATASET_MEAN).view(1, 3, 1, 1)
_STD = torch.tensor(OPENAI_DATASET_STD).view(1, 3, 1, 1)


def to_tensor(images: list[np.ndarray]) -> torch.Tensor:
    """uint8 HWC images -> CLIP-normalised float NCHW tensor (what open_clip's preprocess gives at 64 px)."""
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255.0
    return (x - _MEAN) / _STD


def pretrain_view(rng: Rng, image: np.ndarray, views: dict, domain: str | None = None) -> np.ndarray:
    """A random framing of a rendered image: with probability ``crop_p`` a crop of ``crop_scale`` of its area
    (aspect 3:4 to 4:3, as RandomResizedCrop) resized back bicubically, then a mirror image with ``flip_p``. Images
    of a domain in ``uncropped_domains`` are only mirrored (world 4 keeps texture periods as rendered)."""
    h, w = image.shape[:2]
    out = image
    if rng.random() < views["crop_p"] and domain not in views.get("uncropped_domains", ()):
        area = rng.uniform(*views["crop_scale"]) * h * w
        ratio = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
        cw = min(w, max(1, round(math.sqrt(area * ratio))))
        ch = min(h, max(1, round(math.sqrt(area / ratio))))
        top, left = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        crop = Image.fromarray(image[top:top + ch, left:left + cw])
        out = np.asarray(crop.resize((w, h), Image.Resampling.BICUBIC))
    if rng.random() < views["flip_p"]:
        out = out[:, ::-1]
    return np.ascontiguousarray(out)


def make_batch(seed: int, step: int, batch_size: int, tokenizer,  # noqa: ANN001
               world: str = DEFAULT_WORLD) -> tuple[torch.Tensor, torch.Tensor]:
    """The deterministic batch of a step: its own RNG stream (seed, step), so a resumed run sees the same data.
    A world's views are drawn after all its pairs, so the pairs are those of the same world without views, and a
    phase before the world's ``views_from`` gets exactly the batches of a world without views."""
    rng = np.random.default_rng([seed, 7, step])
    w = get_world(world)
    phase = _phase(step, w.phases)[0]
    ph = w.phases[phase]
    pairs = [sample_pair(rng, ph["domain_weights"], ph["object_modes"], world) for _ in range(batch_size)]
    images = [p[0] for p in pairs]
    if w.views and phase >= w.views_from:
        images = [pretrain_view(rng, im, w.views, domain) for im, _, domain in pairs]
    return to_tensor(images), tokenizer([p[1] for p in pairs])


class _StepBatches(torch.utils.data.Dataset):
    """Batches indexed by step (rendered in a worker process so that drawing overlaps the model step)."""

    def __init__(self, seed: int, start: int, steps: int, batch_size: int, world: str = DEFAULT_WORLD) -> None:
        self.seed, self.start, self.steps, self.bs, self.world = seed, start, steps, batch_size, world
        self.tok = None

    def __len__(self) -> int:
        return self.steps - self.start

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.tok is None:
            self.tok = get_mini_tokenizer()
        torch.set_num_threads(1)
        return make_batch(self.seed, self.start + i, self.bs, self.tok, self.world)


def encode_text_trunc(model, text: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
    """model.encode_text(normalize=True) on tokens cut after the longest EOT (identical output, faster)."""
    L = int(text.argmax(dim=-1).max()) + 1
    text = text[:, :L]
    x = model.token_embedding(text) + model.positional_embedding[:L]
    x = model.transformer(x, attn_mask=model.attn_mask[:L, :L])
    x = model.ln_final(x)
    x = text_global_pool(x, text, "argmax")
    return F.normalize(x @ model.text_projection, dim=-1)


# ----------------------------------------------------------------------------------------------- zero-shot
@torch.no_grad()
def quick_zeroshot(model, tokenizer, per_class: int | None = None, seed: int = 0,  # noqa: ANN001
                   keys: list[str] | None = None, cache: dict | None = None,
                   world: str = DEFAULT_WORLD) -> dict[str, float]:
    """Private sanity check: zero-shot top-1 (%) of the model on each benchmark's test split (CoOp templates)."""
    W = get_world(world).module  # noqa: N806
    model.eval()
    out = {}
    for bi, b in enumerate(W.BENCHMARKS):
        if keys is not None and b.key not in keys:
            continue
        concepts = W.bench_concepts_cached(bi)
        n_test = b.per_class[2] if per_class is None else min(per_class, b.per_class[2])
        ck = (b.key, n_test)
        if cache is not None and ck in cache:
            x, y = cache[ck]
        else:
            imgs, labels = [], []
            for label in range(len(concepts)):
                for i in range(n_test):
                    imgs.append(np.asarray(W.render_bench_image(seed, bi, 2, label, i), np.uint8))
                    labels.append(label)
            x, y = to_tensor(imgs), torch.tensor(labels)
            if cache is not None:
                cache[ck] = (x, y)
        prompts = [b.template.format(c.name.replace("_", " ")) for c in concepts]
        t = model.encode_text(tokenizer(prompts), normalize=True)
        correct = 0
        for s in range(0, len(y), 256):
            f = model.encode_image(x[s:s + 256], normalize=True)
            correct += int(((f @ t.T).argmax(-1) == y[s:s + 256]).sum())
        out[b.key] = round(100.0 * correct / len(y), 2)
    model.train()
    return out


def chance_levels(world: str = DEFAULT_WORLD) -> dict[str, float]:
    """Chance accuracy (%) per benchmark."""
    W = get_world(world).module  # noqa: N806
    return {b.key: round(100.0 / len(W.bench_concepts_cached(i)), 2) for i, b in enumerate(W.BENCHMARKS)}


# ----------------------------------------------------------------------------------------------- training
def _phase(step: int, phases: list[dict] = PHASES) -> tuple[int, int]:
    """(phase index, step within the phase) of a global step."""
    start = 0
    for i, ph in enumerate(phases):
        if step < start + ph["steps"]:
            return i, step - start
        start += ph["steps"]
    return len(phases) - 1, step - (start - phases[-1]["steps"])


def _boundaries(phases: list[dict] = PHASES) -> list[int]:
    return [sum(ph["steps"] for ph in phases[: i + 1]) for i in range(len(phases))]


def _lr(step: int, phases: list[dict] = PHASES) -> float:
    """Linear warm-up then cosine decay to min_lr, restarted at each phase."""
    i, s = _phase(step, phases)
    ph = phases[i]
    steps, lr = ph["steps"], ph["lr"]
    warm = max(1, int(ph["warmup_frac"] * steps))
    if s < warm:
        return lr * (s + 1) / warm
    p = (s - warm) / max(1, steps - warm)
    return RECIPE["min_lr"] + 0.5 * (lr - RECIPE["min_lr"]) * (1 + math.cos(math.pi * p))


def save_fp16_state_dict(model, path: Path) -> str:  # noqa: ANN001
    """Save a plain float16 state_dict (loadable by open_clip.create_model(pretrained=path)); return its sha256."""
    sd = {k: v.detach().to(torch.float16).contiguous().clone() for k, v in model.state_dict().items()}
    tmp = path.with_suffix(".tmp")
    torch.save(sd, tmp)
    os.replace(tmp, path)
    return hashlib.sha256(path.read_bytes()).hexdigest()


RESUME_KEYS = ("model", "opt", "step", "seed", "steps", "batch_size", "curve", "evals", "elapsed")


def load_resume_state(path: Path) -> dict:
    """The pretraining resume file, unpickled safely (tensors and plain types only), or an error naming the file."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises UnpicklingError, RuntimeError, EOFError, OSError... for a bad file
        raise ValueError(f"cannot read the pretraining resume file {path} ({type(err).__name__}: {err}); delete it "
                         "to start pretraining from step 0") from err
    missing = [k for k in RESUME_KEYS if not isinstance(state, dict) or k not in state]
    if missing:
        raise ValueError(f"pretraining resume file {path} lacks {', '.join(missing)}; it is not a perlkit mini "
                         "pretraining checkpoint, delete it to start pretraining from step 0")
    return state


def save_resume_state(path: Path, state: dict) -> None:
    """Write the resume file atomically (a kill leaves the previous one), holding tensors and plain types only."""
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def pretrain_mini_clip(out_dir: Path | str, seed: int = 0, steps: int | None = None, progress: bool = True,
                       batch_size: int | None = None, eval_every: int = 0, final_eval: bool = True,
                       world: str = DEFAULT_WORLD) -> dict:
    """Pretrain the mini CLIP from scratch (deterministic, resumable) and write weights, sha256 and log.

    The learning-rate/data schedule is the world's fixed list of phases (steps = its total by default); a smaller
    ``steps`` stops early on the same schedule (smoke runs), and a checkpoint left at a phase boundary resumes.
    """
    w = get_world(world)
    phases = w.phases
    total = sum(ph["steps"] for ph in phases)
    steps = total if steps is None else steps
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= total:
        raise ValueError(f"steps must be an integer in 1..{total} (world {world}'s schedule), got {steps!r}")
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 2):
        raise ValueError(f"batch_size must be an integer >= 2 (a contrastive batch), got {batch_size!r}")
    if isinstance(eval_every, bool) or not isinstance(eval_every, int) or eval_every < 0:
        raise ValueError(f"eval_every must be a non-negative integer (0: only at the end), got {eval_every!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    bs = batch_size or RECIPE["batch_size"]
    torch.set_num_threads(RECIPE["threads"])
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.manual_seed(seed)
    model = create_mini_model()
    with torch.no_grad():
        model.logit_scale.fill_(RECIPE["init_logit_scale"])
    tokenizer = get_mini_tokenizer()
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": RECIPE["weight_decay"]},
                             {"params": no_decay, "weight_decay": 0.0}], lr=phases[0]["lr"], betas=RECIPE["betas"],
                            eps=RECIPE["eps"])
    ckpt = out_dir / "pretrain_ckpt.pt"
    start, curve, evals, elapsed = 0, [], [], 0.0
    if ckpt.exists():
        st = load_resume_state(ckpt)
        # resume a run of the same seed/batch and world whose checkpoint lies on this schedule (a phase-boundary run
        # counts); a checkpoint recording no world is world 1's (older code recorded only other worlds)
        if st["seed"] == seed and st["batch_size"] == bs and st["step"] <= steps and (
                st["steps"] == steps or st["steps"] in _boundaries(phases)) and st.get("world", "1") == world:
            model.load_state_dict(st["model"])
            opt.load_state_dict(st["opt"])
            start, curve, evals, elapsed = st["step"], st["curve"], st["evals"], st["elapsed"]
            if isinstance(st.get("torch_rng"), torch.Tensor):
                torch.set_rng_state(st["torch_rng"])
    model.train()
    t0 = time.time() - elapsed
    bar = tqdm(range(start, steps), desc="pretrain mini-clip", disable=not progress, initial=start, total=steps)
    zs_cache: dict = {}
    run_loss = None
    # the loader gets its own generator, so that the global RNG (restored on resume) is the model's alone
    loader = torch.utils.data.DataLoader(_StepBatches(seed, start, steps, bs, world), batch_size=None, shuffle=False,
                                         num_workers=1, prefetch_factor=3, persistent_workers=False,
                                         generator=torch.Generator().manual_seed(seed))
    for step, (x, t) in zip(bar, loader, strict=False):
        for g in opt.param_groups:
            g["lr"] = _lr(step, phases)
        fi = model.encode_image(x, normalize=True)
        ft = encode_text_trunc(model, t)
        logits = model.logit_scale.exp() * fi @ ft.T
        y = torch.arange(len(x))
        loss = 0.5 * (F.cross_entropy(logits, y) + F.cross_entropy(logits.T, y))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), RECIPE["grad_clip"])
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, RECIPE["max_logit_scale"])
        lv = float(loss.detach())
        run_loss = lv if run_loss is None else 0.9 * run_loss + 0.1 * lv
        curve.append([step + 1, round(lv, 4)])
        bar.set_postfix(loss=f"{run_loss:.3f}", ls=f"{float(model.logit_scale.detach().exp()):.1f}")
        done = step + 1
        if eval_every and (done % eval_every == 0) and done < steps:
            zs = quick_zeroshot(model, tokenizer, per_class=4, seed=0, cache=zs_cache, world=world)
            evals.append({"step": done, "zeroshot_quick": zs, "mean": round(float(np.mean(list(zs.values()))), 2)})
            print(json.dumps(evals[-1]), flush=True)
        if done % RECIPE["checkpoint_every"] == 0 or done == steps:
            save_resume_state(ckpt, {"model": model.state_dict(), "opt": opt.state_dict(), "step": done,
                                     "seed": seed, "steps": steps, "batch_size": bs, "curve": curve,
                                     "evals": evals, "elapsed": time.time() - t0, "torch_rng": torch.get_rng_state(),
                                     "world": world})
    wall = time.time() - t0
    weights = out_dir / "mini-clip.pt"
    sha = save_fp16_state_dict(model, weights)
    atomic_write_bytes(out_dir / "mini-clip.sha256", (sha + "\n").encode())
    # final zero-shot with the float16-rounded weights exactly as shipped
    from perlkit.mini.weights import load_mini_model
    shipped = load_mini_model(weights, verify=False)
    zs = quick_zeroshot(shipped, tokenizer, seed=0, world=world) if final_eval else {}
    chance = chance_levels(world)
    log = {
        "model": MINI_MODEL, "seed": seed, "steps": steps, "batch_size": bs, "samples_seen": steps * bs,
        "recipe": {**RECIPE, "phases": phases},
        **({"views": w.views, "views_from": w.views_from} if w.views else {}), "wall_time_s": round(wall, 1),
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpu_count": os.cpu_count(),
                    "torch_threads": torch.get_num_threads(),
                    "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "")},
        "torch_version": torch.__version__, "open_clip_version": __import__("open_clip").__version__,
        "numpy_version": np.__version__, "world_version": w.module.WORLD_VERSION, "world": w.version,
        "weights_sha256": sha, "weights_bytes": weights.stat().st_size,
        "loss_curve": curve, "intermediate_evals": evals,
        "zeroshot_test_top1": zs, "zeroshot_mean": round(float(np.mean(list(zs.values()))), 2) if zs else None,
        "chance": chance, "zeroshot_over_chance": {k: round(zs[k] / chance[k], 2) for k in zs},
    }
    atomic_write_bytes(out_dir / "pretrain_log.json", (json.dumps(log, indent=1) + "\n").encode())
    return log
