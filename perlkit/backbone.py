"""A frozen open_clip model split at depth J, with token-aware refinement.

Every method in perlkit sees CLIP through this wrapper. It exposes, per encoder, the three pieces PERL's
equations need:

* ``base(modality, x, split)``: embeddings and blocks ``0..split-1``. Its output never changes, so callers cache it
  (once per image batch, once per class set).
* ``run_blocks(modality, x, start, end)``: any contiguous range of frozen blocks on a sequence that may carry extra
  tokens *prepended* to it (Eq. 3 of the paper). For text the causal mask is rebuilt for the new length, so the EOS
  token, which sits after the prepended tokens, attends to all of them.
* ``readout`` and ``project``: pooled state at the original CLS/EOS position (shifted by the number of prepended
  tokens), then CLIP's own final LayerNorm and frozen projection.

With no extra tokens, ``project(readout(run_blocks(base(x))))`` equals open_clip's ``encode_image`` /
``encode_text``; tests hold that to ``allclose``.

Two exact shortcuts keep the text side cheap: (1) text sequences are trimmed after the last EOS of the class set,
because under the causal mask no token after EOS can influence it; (2) the base output of a class set is cached by
the caller. Both leave results unchanged.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import open_clip
import torch
import torch.nn.functional as F
from open_clip.transformer import CustomResidualAttentionBlock, ResidualAttentionBlock
from torch import nn

from perlkit.files import sha256_file

MODALITIES = ("vision", "text")
CONFIG_DIR = Path(__file__).resolve().parent / "configs"

open_clip.add_model_config(CONFIG_DIR)


class BackboneError(RuntimeError):
    """Raised when a model cannot be built or loaded, with the reason and the way out."""


@dataclass
class EncodedTokens:
    """A sequence state of one encoder: hidden tokens and the readout (CLS/EOS) index of each row."""

    hidden: torch.Tensor  # [N, L, d]
    readout: torch.Tensor  # [N] long, index of CLS (vision) or EOS (text) before any prepended token


def list_models() -> list[str]:
    """Model names the factory accepts: open_clip's built-ins plus the configs shipped with perlkit."""
    return sorted(open_clip.list_models())


@contextlib.contextmanager
def _quiet_random_init():
    """Silence open_clip's 'initialized randomly' warning: random weights are asked for on purpose here."""
    class _Drop(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return "No pretrained weights loaded" not in record.getMessage()

    drop, root = _Drop(), logging.getLogger()
    root.addFilter(drop)
    try:
        yield
    finally:
        root.removeFilter(drop)


def _load_open_clip(model: str, pretrained: str | None, sha256: str | None) -> nn.Module:
    if model not in open_clip.list_models():
        raise BackboneError(
            f"unknown model {model!r}: expected an open_clip model name (e.g. 'ViT-B-16') or a config in "
            f"{CONFIG_DIR}. Known: {', '.join(list_models()[:12])}, ..."
        )
    looks_like_file = pretrained is not None and (
        os.path.sep in pretrained or pretrained.endswith((".pt", ".pth", ".bin", ".safetensors"))
    )
    if looks_like_file:
        path = Path(pretrained)
        if not path.is_file():
            raise BackboneError(f"checkpoint file not found: {path}")
        if sha256 is not None:
            actual = sha256_file(path)
            if actual != sha256:
                raise BackboneError(
                    f"checksum mismatch for {path}: expected sha256 {sha256}, found {actual}. The file is corrupt "
                    "or from another version: restore it from where it came (a shipped perlkit file: "
                    "`git checkout -- <that path>` in the perlkit checkout, or reinstall perlkit)."
                )
        pretrained = str(path)
    try:
        with _quiet_random_init():
            return open_clip.create_model(model, pretrained=pretrained or None, device="cpu")
    except (RuntimeError, OSError, ValueError) as err:  # network or file problems surface here
        if looks_like_file:  # a readable file that failed to load: most often one saved from another architecture
            mismatch = _weights_mismatch(model, pretrained)
            if mismatch:
                raise BackboneError(
                    f"weights file {pretrained} does not fit model {model!r} ({mismatch}): pass the model it was "
                    "saved from, or weights made for this model"
                ) from err
            raise BackboneError(f"could not load weights file {pretrained} into model {model!r}: {err}") from err
        if not pretrained:  # random weights: nothing was loaded, so the model itself could not be built
            raise BackboneError(f"could not build model {model!r}: {err}") from err
        raise BackboneError(
            f"could not load weights {pretrained!r} for {model!r}: {err}. Offline machines cannot download "
            "pretrained tags; pass a local checkpoint file instead (for OpenAI's ViT-B/16 use model "
            "'ViT-B-16-quickgelu' with the path to ViT-B-16.pt), or pretrained=None for random weights."
        ) from err


def _weights_mismatch(model: str, path: str) -> str:
    """How a state-dict file's tensor names and shapes differ from a model's ('' when they agree or it can't tell).

    Positional embeddings are left out (open_clip resizes them on load), and so is ``logit_bias`` (it fills it in).
    """
    from open_clip.factory import load_state_dict
    from open_clip.model import convert_to_custom_text_state_dict

    try:
        with _quiet_random_init():
            built = open_clip.create_model(model, pretrained=None)
        state = load_state_dict(path)
        if "positional_embedding" in state and not hasattr(built, "positional_embedding"):
            state = convert_to_custom_text_state_dict(state)  # as open_clip does for CustomTextCLIP models
    except Exception:  # noqa: BLE001 - unreadable or exotic files keep open_clip's own message
        return ""
    expected = {k: tuple(v.shape) for k, v in built.state_dict().items() if k != "logit_bias"}
    found = {k: tuple(v.shape) for k, v in state.items() if k != "logit_bias"}
    shapes = sorted(k for k in expected.keys() & found.keys()
                    if expected[k] != found[k] and not k.endswith("positional_embedding"))
    missing, unexpected = sorted(expected.keys() - found.keys()), sorted(found.keys() - expected.keys())
    parts = []
    if shapes:
        parts.append(f"{len(shapes)} tensors differ in shape, e.g. {shapes[0]} {list(found[shapes[0]])} in the file "
                     f"vs {list(expected[shapes[0]])} in the model")
    if missing:
        parts.append(f"{len(missing)} missing, e.g. {missing[0]}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected, e.g. {unexpected[0]}")
    return "; ".join(parts)


def _plain_block(block: nn.Module) -> bool:
    """Whether a block is open_clip's plain self-attention block, whose forward ``_block_forward`` restates."""
    if type(block) is not ResidualAttentionBlock or hasattr(block, "ln_1_kv"):
        return False
    attn = block.attn
    return bool(
        attn._qkv_same_embed_dim and attn.in_proj_bias is not None and attn.bias_k is None and not attn.add_zero_attn
    )


def _self_attention(attn: nn.MultiheadAttention, x: torch.Tensor, causal: bool) -> torch.Tensor:
    """nn.MultiheadAttention's math on a batch-first sequence, straight into F.scaled_dot_product_attention.

    Same weights and formula as the module; it skips the module's seq-first transposes and copies, which on CPU made
    attention ~1.6x slower without grad and ~3x slower with grad (ViT-B/16). A causal mask becomes ``is_causal``.
    """
    n, t, e = x.shape
    heads = attn.num_heads
    qkv = F.linear(x, attn.in_proj_weight, attn.in_proj_bias)
    q, k, v = qkv.view(n, t, 3, heads, e // heads).permute(2, 0, 3, 1, 4).unbind(0)  # [N, H, T, e/H] each
    out = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    return attn.out_proj(out.transpose(1, 2).reshape(n, t, e))


def _block_forward(block: nn.Module, x: torch.Tensor, causal: bool) -> torch.Tensor:
    """open_clip's ResidualAttentionBlock.forward (pre-LN, layer scale) with ``_self_attention``."""
    x = x + block.ls_1(_self_attention(block.attn, block.ln_1(x), causal))
    return x + block.ls_2(block.mlp(block.ln_2(x)))


def _unsupported_parts(model: nn.Module) -> list[str]:
    """What in an open_clip model the split-at-J wrapper cannot run, one phrase each (empty: supported).

    Supported: ViT towers of open_clip's ``ResidualAttentionBlock`` (self-attention) or
    ``CustomResidualAttentionBlock``, CLS readout with ``ln_post`` then ``proj``, a causal text transformer read at
    its argmax (EOS) token. Encoders may differ in depth and width (ViT-L/14: 24 vision, 12 text blocks).
    """
    problems = []
    visual = getattr(model, "visual", None)
    if not hasattr(getattr(visual, "transformer", None), "resblocks"):
        problems.append(f"vision tower {type(visual).__name__} is not an open_clip ViT (timm and ResNet towers lack "
                        "the transformer blocks that methods run one by one)")
    else:
        if getattr(visual, "attn_pool", None) is not None:
            problems.append("vision attentional pooling (attn_pool, CoCa) replaces the CLS readout")
        if getattr(visual, "final_ln_after_pool", False):
            problems.append("vision final_ln_after_pool (CLIPA) changes the readout")
        if getattr(visual, "pool_type", "tok") != "tok":
            problems.append(f"vision pool_type {visual.pool_type!r} (only 'tok', the CLS readout)")
    text = getattr(model, "text", model)
    if not hasattr(getattr(text, "transformer", None), "resblocks") or not hasattr(text, "token_embedding"):
        problems.append(f"text tower {type(text).__name__} is not an open_clip text transformer (Hugging Face towers "
                        "are not supported)")
    else:
        pool = getattr(model, "text_pool_type", getattr(text, "pool_type", "argmax"))
        if pool != "argmax":
            problems.append(f"text pool_type {pool!r} (only 'argmax', the EOS readout)")
        if getattr(text, "cls_emb", None) is not None:
            problems.append("text embed_cls (a CLS token appended after the prompt, CoCa)")
        if getattr(text, "attn_mask", True) is None:
            problems.append("bidirectional text attention (no_causal_mask): refinement rebuilds a causal mask")
    towers = (("vision", getattr(visual, "transformer", None)), ("text", getattr(text, "transformer", None)))
    for name, transformer in towers:
        for block in getattr(transformer, "resblocks", []):
            if type(block) not in (ResidualAttentionBlock, CustomResidualAttentionBlock) or hasattr(block, "ln_1_kv"):
                problems.append(f"{name} block type {type(block).__name__} (only self-attention ResidualAttentionBlock "
                                "or CustomResidualAttentionBlock)")
                break
    return problems


class FrozenCLIP(nn.Module):
    """Frozen open_clip CLIP with split-at-J access to both encoders (see module docstring)."""

    def __init__(self, model: nn.Module, model_name: str = "", pretrained: str | None = None) -> None:
        super().__init__()
        self.model = model
        self.model_name = model_name
        self.pretrained = pretrained
        problems = _unsupported_parts(model)
        if problems:
            raise BackboneError(f"{model_name or type(model).__name__} is not supported: {'; '.join(problems)}")
        self._text = getattr(model, "text", model)  # CustomTextCLIP keeps the tower in .text
        for param in self.model.parameters():
            param.requires_grad_(False)
        self.model.eval()
        self._mask_cache: dict[tuple[int, torch.device, torch.dtype], torch.Tensor] = {}
        self._tokenizer: Callable[[list[str]], torch.Tensor] | None = None
        self._weights_sha256: str | None = None

    # ------------------------------------------------------------------ shapes
    def blocks(self, modality: str) -> nn.ModuleList:
        """The frozen residual blocks of one encoder."""
        if modality == "vision":
            return self.model.visual.transformer.resblocks
        if modality == "text":
            return self._text.transformer.resblocks
        raise ValueError(f"modality must be one of {MODALITIES}, got {modality!r}")

    def width(self, modality: str) -> int:
        """Residual-stream width d_m of one encoder (768/512 for ViT-B/16)."""
        return self.model.visual.transformer.width if modality == "vision" else self._text.transformer.width

    def depth(self, modality: str) -> int:
        """Number of blocks of one encoder (ViT-L/14: 24 vision, 12 text); methods map their layers per encoder."""
        return len(self.blocks(modality))

    @property
    def num_layers(self) -> int:
        """L when both encoders have the same depth (ViT-B); for others ask ``depth(modality)`` per encoder."""
        n_vision, n_text = self.depth("vision"), self.depth("text")
        if n_vision != n_text:
            raise BackboneError(
                f"{self.model_name}: encoders differ in depth ({n_vision} vision vs {n_text} text blocks), so there "
                "is no single L; use depth('vision') / depth('text')"
            )
        return n_vision

    @property
    def embed_dim(self) -> int:
        """Dimension of CLIP's shared embedding space."""
        return int(self.model.visual.output_dim)

    @property
    def logit_scale(self) -> torch.Tensor:
        """CLIP's frozen temperature, exponentiated."""
        return self.model.logit_scale.exp().detach()

    @property
    def context_length(self) -> int:
        """Text context length of the tokenizer and the positional table."""
        return int(self._text.positional_embedding.shape[0])

    @property
    def image_size(self) -> int:
        """Input resolution of the vision tower."""
        size = self.model.visual.image_size
        return int(size[0] if isinstance(size, (tuple, list)) else size)

    def train(self, mode: bool = True) -> FrozenCLIP:
        """Keep CLIP in eval mode whatever the caller asks: it is frozen, dropout stays off."""
        super().train(False)
        return self

    # ------------------------------------------------------------------ tokens
    def tokenize(self, prompts: Sequence[str]) -> torch.Tensor:
        """Token ids for prompts, with the model's own tokenizer and context length."""
        if self._tokenizer is None:  # building open_clip's BPE tokenizer takes ~0.1-1 s: once per backbone
            self._tokenizer = open_clip.get_tokenizer(self.model_name) if self.model_name else open_clip.tokenize
        return self._tokenizer(list(prompts)).to(self.device)

    @property
    def device(self) -> torch.device:
        """Where the frozen weights live."""
        return self.model.logit_scale.device

    def weights_sha256(self) -> str:
        """sha256 over the frozen tensors (names, dtypes, bytes): ties checkpoints and results to these weights.

        Computed from the loaded tensors rather than a file, so it also identifies random or downloaded weights.
        """
        if self._weights_sha256 is None:
            digest = hashlib.sha256()
            for name, tensor in sorted(self.model.state_dict().items()):
                digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}\0".encode())
                digest.update(tensor.detach().reshape(-1).contiguous().view(torch.uint8).cpu().numpy().tobytes())
            self._weights_sha256 = digest.hexdigest()
        return self._weights_sha256

    # ------------------------------------------------------------------ pieces
    def embed(self, modality: str, x: torch.Tensor) -> EncodedTokens:
        """Input embeddings: patches + CLS + positions + ln_pre, or token + positional embeddings."""
        if modality == "vision":
            hidden = self._vision_embeddings(x)
            readout = torch.zeros(hidden.shape[0], dtype=torch.long, device=hidden.device)
            return EncodedTokens(hidden, readout)
        eos = x.argmax(dim=-1)
        length = int(eos.max()) + 1  # tokens after the last EOS cannot reach any EOS under the causal mask
        ids = x[:, :length]
        cast = self._text.transformer.get_cast_dtype()
        hidden = self._text.token_embedding(ids).to(cast) + self._text.positional_embedding[:length].to(cast)
        return EncodedTokens(hidden, eos)

    def _vision_embeddings(self, images: torch.Tensor) -> torch.Tensor:
        """Patch embedding, CLS token, positions, patch dropout and ln_pre, from the tower's public modules.

        The same steps as open_clip's ``VisionTransformer`` forward before its blocks (3.x keeps them in the private
        ``_embeds``); spelled out here so no private API ties perlkit to one open_clip release.
        """
        visual = self.model.visual
        x = visual.conv1(images)  # [N, width, grid, grid]
        x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)  # [N, grid**2, width]
        cls = visual.class_embedding.view(1, 1, -1).expand(x.shape[0], -1, -1).to(x.dtype)
        x = torch.cat([cls, x], dim=1) + visual.positional_embedding.to(x.dtype)
        return visual.ln_pre(visual.patch_dropout(x))

    def causal_mask(self, length: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """Additive causal mask for a text sequence of any length (77 + k with k thought tokens)."""
        key = (length, device, dtype)
        if key not in self._mask_cache:
            mask = torch.full((length, length), float("-inf"), device=device, dtype=dtype).triu_(1)
            self._mask_cache[key] = mask
        return self._mask_cache[key]

    def run_blocks(self, modality: str, hidden: torch.Tensor, start: int, end: int | None = None) -> torch.Tensor:
        """Run frozen blocks ``start..end-1`` on a (possibly token-augmented) sequence."""
        blocks = self.blocks(modality)
        end = len(blocks) if end is None else end
        if all(_plain_block(block) for block in blocks[start:end]):  # every CLIP: batch first, SDPA directly
            causal = modality == "text"
            for block in blocks[start:end]:
                hidden = _block_forward(block, hidden, causal)
            return hidden
        transformer = self.model.visual.transformer if modality == "vision" else self._text.transformer
        mask = None
        if modality == "text":
            mask = self.causal_mask(hidden.shape[1], hidden.device, hidden.dtype)
        if not transformer.batch_first:
            hidden = hidden.transpose(0, 1)
        for block in blocks[start:end]:
            hidden = block(hidden, attn_mask=mask)
        if not transformer.batch_first:
            hidden = hidden.transpose(0, 1)
        return hidden

    def refine(
        self, modality: str, state: EncodedTokens, start: int, tokens: torch.Tensor | None = None
    ) -> torch.Tensor:
        """R_m: blocks ``start..L-1`` on a cached state (thought tokens ``[N, k, d]`` prepended), pooled at CLS/EOS.

        The one "run the upper blocks and read out" step of every method. Nothing but the readout leaves the last
        block, so its other query rows, their MLPs and output projections are skipped: keys and values still come
        from every token (exact, and ~5/6 of the last block saved). ``project`` maps the result into CLIP's space.
        """
        shift = 0 if tokens is None else tokens.shape[1]
        hidden, index = self.prepend(state.hidden, tokens), state.readout + shift
        blocks = self.blocks(modality)
        if start >= len(blocks):
            return self.readout(hidden, index)
        if not _plain_block(blocks[-1]):
            return self.readout(self.run_blocks(modality, hidden, start), index)
        hidden = self.run_blocks(modality, hidden, start, len(blocks) - 1)
        return self._last_block_at(modality, hidden, index)

    def _last_block_at(self, modality: str, hidden: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """``_block_forward`` of the last block for the query rows ``index`` only (keys and values: all tokens)."""
        block = self.blocks(modality)[-1]
        attn = block.attn
        n, t, e = hidden.shape
        heads = attn.num_heads
        rows = torch.arange(n, device=hidden.device)
        normed = block.ln_1(hidden)  # [N, T, d]
        w_q, w_kv = attn.in_proj_weight.split([e, 2 * e])
        b_q, b_kv = attn.in_proj_bias.split([e, 2 * e])
        q = F.linear(normed[rows, index], w_q, b_q).view(n, heads, 1, e // heads)  # [N, H, 1, e/H]
        k, v = F.linear(normed, w_kv, b_kv).view(n, t, 2, heads, e // heads).permute(2, 0, 3, 1, 4).unbind(0)
        mask = None
        if modality == "text":  # the readout row of the causal mask: keys 0..index
            keys = torch.arange(t, device=hidden.device)
            mask = (keys.unsqueeze(0) <= index.unsqueeze(1)).view(n, 1, 1, t)
        attended = attn.out_proj(F.scaled_dot_product_attention(q, k, v, attn_mask=mask).reshape(n, e))
        x = hidden[rows, index] + block.ls_1(attended)
        return x + block.ls_2(block.mlp(block.ln_2(x)))

    def base(self, modality: str, x: torch.Tensor, split: int) -> EncodedTokens:
        """B_m: embeddings and the lower ``split`` blocks. Frozen and parameter-free, so cache it."""
        state = self.embed(modality, x)
        return EncodedTokens(self.run_blocks(modality, state.hidden, 0, split), state.readout)

    @staticmethod
    def prepend(hidden: torch.Tensor, tokens: torch.Tensor | None) -> torch.Tensor:
        """Prepend thought tokens ``[N, k, d]`` to a sequence ``[N, L, d]`` (Eq. 3 order: z1..zk, S)."""
        if tokens is None or tokens.shape[1] == 0:
            return hidden
        return torch.cat([tokens.to(hidden.dtype), hidden], dim=1)

    @staticmethod
    def readout(hidden: torch.Tensor, index: torch.Tensor, shift: int = 0) -> torch.Tensor:
        """Pooled state at the original CLS/EOS position, moved right by ``shift`` prepended tokens."""
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        return hidden[rows, index + shift]

    def project(self, modality: str, pooled: torch.Tensor) -> torch.Tensor:
        """CLIP's final LayerNorm and frozen projection into the shared space (not normalised)."""
        if modality == "vision":
            out = self.model.visual.ln_post(pooled)
            proj = self.model.visual.proj
            return out @ proj if proj is not None else out
        out = self._text.ln_final(pooled)
        proj = self._text.text_projection
        if proj is None:
            return out
        return proj(out) if isinstance(proj, nn.Linear) else out @ proj

    # ------------------------------------------------------------------ reference paths
    @torch.no_grad()
    def encode(self, modality: str, x: torch.Tensor) -> torch.Tensor:
        """Zero-shot embedding through the split path (K=0); equals open_clip's encode_image/encode_text."""
        return self.project(modality, self.refine(modality, self.base(modality, x, 0), 0))


def create_backbone(
    model: str = "ViT-B-16",
    pretrained: str | None = None,
    *,
    sha256: str | None = None,
    device: str | torch.device = "cpu",
) -> FrozenCLIP:
    """Build a frozen backbone from an open_clip name (or a perlkit config) and a tag, local file or nothing.

    Building draws random numbers (open_clip initialises before loading); it does so from a private generator
    seeded with 0, so the caller's random state is untouched and "random weights" are the same in every process.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        clip = _load_open_clip(model, pretrained, sha256)
    return FrozenCLIP(clip, model_name=model, pretrained=pretrained).to(device)


def normalize(x: torch.Tensor) -> torch.Tensor:
    """L2-normalise embeddings along the last axis, as CLIP does before its cosine logits."""
    return F.normalize(x, dim=-1)
