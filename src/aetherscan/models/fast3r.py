"""Fast3R: many views in, one pointmap per view in the first view's camera frame, in one pass.

Paper: Yang et al., "Fast3R: Towards 3D Reconstruction of 1000+ Images in One Forward Pass",
CVPR 2025, arXiv:2501.13928. Written from our reference notes
(``shared/fast3r_reference/SPEC.md``); module names follow the released checkpoint
``jedyang97/Fast3R_ViT_Large_512`` so its ``model.safetensors`` loads unchanged.

    views --encoder (ViT + 2D RoPE, per view)--> tokens --concat over views--> decoder_embed
          + image-index embedding --fusion transformer (all-to-all, no spatial PE)-->
          two DPT heads per view: global (view-0 camera frame) and local (own camera frame)

Dimension letters: B batch (scenes), V views, N tokens (one view: N = h*w, all views: sum N),
C channels, H, W image pixels, h = H / patch, w = W / patch.
"""

from __future__ import annotations

import json
import logging
import math
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from aetherscan.models.backbone import (
    IMAGE_IDX_TABLE_ROWS,
    Encoder,
    FusionTransformer,
    draw_image_ids,
    image_idx_table,
)
from aetherscan.models.blocks import Attention
from aetherscan.models.dpt import Conv3x3, DPTHead
from aetherscan.models.hub import resolve_weights

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------- outputs


def pointmap_from_raw(
    raw: Tensor, depth_mode: tuple[str, float, float], conf_mode: tuple[str, float, float]
) -> tuple[Tensor, Tensor]:
    """Raw head output (B, 4, H, W) -> points (B, H, W, 3) and confidence (B, H, W), fp32."""
    fmap = raw.float().permute(0, 2, 3, 1)  # (B, H, W, 4)
    xyz, logit = fmap[..., :3], fmap[..., 3]
    mode, vmin, vmax = depth_mode
    if mode == "linear":
        pts = xyz.clip(vmin, vmax)
    else:
        dist = xyz.norm(dim=-1, keepdim=True)  # (B, H, W, 1)
        direction = xyz / dist.clip(min=1e-8)
        pts = direction * (torch.expm1(dist) if mode == "exp" else dist.square())
    mode, vmin, vmax = conf_mode
    if mode == "exp":
        conf = vmin + logit.exp().clip(max=vmax - vmin)
    else:  # sigmoid
        conf = vmin + (vmax - vmin) * torch.sigmoid(logit)
    return pts, conf


@dataclass
class Fast3RTrace:
    """Everything one forward pass computed, for tests and inspection (``Fast3R.trace``)."""

    image_ids: Tensor  # (V,) image-index rows used
    enc_tokens: list[Tensor]  # per view (B, N_v, C_enc), after enc_norm
    enc_pos: list[Tensor]  # per view (N_v, 2) token [row, col]
    fusion: list[Tensor]  # depth + 1 stages (B, sum N_v, C), see FusionTransformer.forward
    head_raw: dict[str, list[Tensor]]  # "global"/"local" -> per view (B, 4, H, W) raw output
    preds: list[dict[str, Tensor]]  # what forward returns


# ---------------------------------------------------------------------------------- config

_DEPTH_MODES = ("linear", "square", "exp")
_CONF_MODES = ("exp", "sigmoid")


def _mode(value: Any, name: str, allowed: Sequence[str]) -> tuple[str, float, float]:
    """A head activation ``[name, vmin, vmax]``; infinities may be JSON Infinity or strings."""
    if not (isinstance(value, Sequence) and len(value) == 3 and value[0] in allowed):
        raise ValueError(f"head_args.{name} must be [one of {allowed}, vmin, vmax], got {value!r}")
    return (str(value[0]), float(value[1]), float(value[2]))


def _take(args: Mapping[str, Any], where: str, required: Sequence[str]) -> dict[str, Any]:
    missing = [k for k in required if k not in args]
    if missing:
        raise ValueError(f"{where} lacks required key(s) {missing}")
    return dict(args)


def _warn_unknown(args: Mapping[str, Any], where: str, known: set[str]) -> None:
    unknown = sorted(set(args) - known)
    if unknown:
        warnings.warn(f"{where}: ignoring unknown key(s) {unknown}", stacklevel=3)


@dataclass(frozen=True)
class EncoderConfig:
    embed_dim: int
    depth: int
    num_heads: int
    mlp_ratio: float = 4.0
    patch_size: int = 16
    rope_base: float = 100.0
    landscape_only: bool = False  # ManyAR_PatchEmbed: training-time patch embed, W >= H only
    attn_implementation: str = "pytorch_naive"

    @classmethod
    def from_dict(cls, args: Mapping[str, Any]) -> EncoderConfig:
        a = _take(args, "encoder_args", ["embed_dim", "depth", "num_heads"])
        _warn_unknown(a, "encoder_args", {*_ENCODER_KEYS})
        if a.get("encoder_type", "croco") != "croco":
            raise ValueError(f"only encoder_type 'croco' is supported, got {a['encoder_type']!r}")
        pos_embed = a.get("pos_embed", "RoPE100")
        if not str(pos_embed).startswith("RoPE"):
            raise ValueError(
                f"only RoPE<base> position embeddings are supported, got {pos_embed!r}"
            )
        patch_embed_cls = a.get("patch_embed_cls", "ManyAR_PatchEmbed")
        if patch_embed_cls not in ("PatchEmbedDust3R", "ManyAR_PatchEmbed"):
            raise ValueError(f"unknown patch_embed_cls {patch_embed_cls!r}")
        return cls(
            embed_dim=int(a["embed_dim"]),
            depth=int(a["depth"]),
            num_heads=int(a["num_heads"]),
            mlp_ratio=float(a.get("mlp_ratio", 4.0)),
            patch_size=int(a.get("patch_size", 16)),
            rope_base=float(str(pos_embed)[4:]),
            landscape_only=patch_embed_cls == "ManyAR_PatchEmbed",
            attn_implementation=str(a.get("attn_implementation", "pytorch_naive")),
        )


_ENCODER_KEYS = {
    *("encoder_type", "img_size", "patch_size", "patch_embed_cls", "embed_dim", "num_heads"),
    *("depth", "mlp_ratio", "pos_embed", "attn_implementation"),
}


@dataclass(frozen=True)
class DecoderConfig:
    embed_dim: int
    depth: int
    num_heads: int
    random_image_idx_embedding: bool
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    attn_bias_for_inference_enabled: bool = True
    attn_implementation: str = "pytorch_naive"

    @classmethod
    def from_dict(cls, args: Mapping[str, Any]) -> DecoderConfig:
        a = _take(
            args, "decoder_args", ["embed_dim", "depth", "num_heads", "random_image_idx_embedding"]
        )
        _warn_unknown(a, "decoder_args", _DECODER_KEYS)
        if a.get("decoder_type", "fast3r") != "fast3r":
            raise ValueError(f"only decoder_type 'fast3r' is supported, got {a['decoder_type']!r}")
        return cls(
            embed_dim=int(a["embed_dim"]),
            depth=int(a["depth"]),
            num_heads=int(a["num_heads"]),
            random_image_idx_embedding=bool(a["random_image_idx_embedding"]),
            mlp_ratio=float(a.get("mlp_ratio", 4.0)),
            qkv_bias=bool(a.get("qkv_bias", True)),
            attn_bias_for_inference_enabled=bool(a.get("attn_bias_for_inference_enabled", True)),
            attn_implementation=str(a.get("attn_implementation", "pytorch_naive")),
        )


_DECODER_KEYS = {
    *("decoder_type", "enc_embed_dim", "embed_dim", "num_heads", "depth", "mlp_ratio"),
    *("qkv_bias", "drop", "attn_drop", "attn_implementation", "random_image_idx_embedding"),
    "attn_bias_for_inference_enabled",
}


@dataclass(frozen=True)
class HeadConfig:
    landscape_only: bool
    depth_mode: tuple[str, float, float]
    conf_mode: tuple[str, float, float]
    patch_size: int = 16
    with_local_head: bool = False

    @classmethod
    def from_dict(cls, args: Mapping[str, Any]) -> HeadConfig:
        a = _take(args, "head_args", ["landscape_only", "depth_mode", "conf_mode"])
        _warn_unknown(a, "head_args", _HEAD_KEYS)
        if a.get("head_type", "dpt") != "dpt":
            raise ValueError(f"only head_type 'dpt' is supported, got {a['head_type']!r}")
        if a.get("output_mode", "pts3d") != "pts3d":
            raise ValueError(f"only output_mode 'pts3d' is supported, got {a['output_mode']!r}")
        return cls(
            landscape_only=bool(a["landscape_only"]),
            depth_mode=_mode(a["depth_mode"], "depth_mode", _DEPTH_MODES),
            conf_mode=_mode(a["conf_mode"], "conf_mode", _CONF_MODES),
            patch_size=int(a.get("patch_size", 16)),
            with_local_head=bool(a.get("with_local_head", False)),
        )


_HEAD_KEYS = {
    *("head_type", "output_mode", "landscape_only", "depth_mode", "conf_mode", "patch_size"),
    "with_local_head",
}


@dataclass(frozen=True)
class DPTConfig:
    """DPT widths; the original hard-codes these, small test models override them."""

    feature_dim: int = 256
    last_dim: int = 128
    layer_dims: tuple[int, int, int, int] = (96, 192, 384, 768)

    @classmethod
    def from_dict(cls, args: Mapping[str, Any]) -> DPTConfig:
        dims = tuple(int(d) for d in args.get("layer_dims", cls.layer_dims))
        if len(dims) != 4:
            raise ValueError(f"DPT layer_dims needs 4 entries, got {list(dims)}")
        return cls(
            feature_dim=int(args.get("feature_dim", cls.feature_dim)),
            last_dim=int(args.get("last_dim", cls.last_dim)),
            layer_dims=dims,  # type: ignore[arg-type]
        )


DPT_CONFIG_KEY = "_tiny_dpt_head_hyperparams"


@dataclass(frozen=True)
class Fast3RConfig:
    encoder: EncoderConfig
    decoder: DecoderConfig
    head: HeadConfig
    dpt: DPTConfig = field(default_factory=DPTConfig)

    @classmethod
    def from_dict(cls, config: Mapping[str, Any]) -> Fast3RConfig:
        """Parse a Hugging Face ``config.json`` of the original (keys ``*_args``)."""
        missing = [k for k in ("encoder_args", "decoder_args", "head_args") if k not in config]
        if missing:
            raise ValueError(f"Fast3R config lacks {missing}; is this a Fast3R config.json?")
        encoder = EncoderConfig.from_dict(config["encoder_args"])
        decoder_args = config["decoder_args"]
        enc_dim = decoder_args.get("enc_embed_dim", encoder.embed_dim)
        if enc_dim != encoder.embed_dim:
            raise ValueError(
                f"decoder_args.enc_embed_dim={enc_dim} differs from encoder_args.embed_dim="
                f"{encoder.embed_dim}"
            )
        head = HeadConfig.from_dict(config["head_args"])
        if head.patch_size != encoder.patch_size:
            raise ValueError(
                f"head_args.patch_size={head.patch_size} differs from encoder_args.patch_size="
                f"{encoder.patch_size}"
            )
        return cls(
            encoder=encoder,
            decoder=DecoderConfig.from_dict(decoder_args),
            head=head,
            dpt=DPTConfig.from_dict(config.get(DPT_CONFIG_KEY, {})),
        )


# ---------------------------------------------------------------------------------- model


class Fast3R(nn.Module):
    """The Fast3R network. ``model(images)`` returns one dict of pointmaps per view.

    Knobs that change memory, not results: ``encoder_chunk_images`` (images per encoder batch)
    and ``head_chunk_views`` (images per DPT head batch). Knobs that pick kernels, with results
    equal up to rounding: ``fused_attention`` and ``winograd_convolutions``.
    """

    def __init__(self, config: Fast3RConfig) -> None:
        super().__init__()
        self.config = config
        enc, dec = config.encoder, config.decoder
        self.encoder = Encoder(
            embed_dim=enc.embed_dim,
            depth=enc.depth,
            num_heads=enc.num_heads,
            mlp_ratio=enc.mlp_ratio,
            patch_size=enc.patch_size,
            rope_base=enc.rope_base,
        )
        self.decoder = FusionTransformer(
            enc_dim=enc.embed_dim,
            embed_dim=dec.embed_dim,
            depth=dec.depth,
            num_heads=dec.num_heads,
            mlp_ratio=dec.mlp_ratio,
            qkv_bias=dec.qkv_bias,
            sharpen_in_eval=dec.attn_bias_for_inference_enabled,
        )
        L = dec.depth
        hooks = (0, L * 2 // 4, L * 3 // 4, L)
        head_args = dict(
            hooks=hooks,
            dim_tokens=(enc.embed_dim, dec.embed_dim, dec.embed_dim, dec.embed_dim),
            layer_dims=config.dpt.layer_dims,
            feature_dim=config.dpt.feature_dim,
            last_dim=config.dpt.last_dim,
            patch_size=config.head.patch_size,
        )
        self.downstream_head = DPTHead(**head_args)
        self.downstream_head_local = DPTHead(**head_args) if config.head.with_local_head else None
        self.encoder_chunk_images = 16
        # attn_implementation picked the original's GPU kernel; all of them compute the same
        # attention, so SDPA (which picks its own kernel) is used whatever the config says.
        self.fused_attention = True
        self.winograd_convolutions = True

    # -- knobs

    @property
    def fused_attention(self) -> bool:
        """True: attention through SDPA; False: the explicit reference computation."""
        return all(m.fused for m in self.modules() if isinstance(m, Attention))

    @fused_attention.setter
    def fused_attention(self, fused: bool) -> None:
        for m in self.modules():
            if isinstance(m, Attention):
                m.fused = fused

    @property
    def winograd_convolutions(self) -> bool:
        """True: the heads' 3x3 convolutions run as Winograd convolutions where that applies
        (CPU, fp32; see ``dpt.Conv3x3``); False: direct convolutions everywhere."""
        return all(m.winograd for m in self.modules() if isinstance(m, Conv3x3))

    @winograd_convolutions.setter
    def winograd_convolutions(self, winograd: bool) -> None:
        for m in self.modules():
            if isinstance(m, Conv3x3):
                m.winograd = winograd

    @property
    def head_chunk_views(self) -> int | None:
        """Images per DPT head batch; None: 1 on the CPU, 8 on accelerators."""
        return self.downstream_head.chunk_views

    @head_chunk_views.setter
    def head_chunk_views(self, n: int | None) -> None:
        for head in self._heads().values():
            head.chunk_views = n

    # -- forward

    def forward(
        self,
        images: Sequence[Tensor],
        image_ids: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> list[dict[str, Tensor]]:
        """Pointmaps for ``images``: V tensors (B, 3, H, W) in [-1, 1], H and W multiples of the
        patch size (16); sizes may differ between views, B may not.

        ``image_ids`` (V,) picks the image-index rows; by default they follow the checkpoint's
        config (random rows after view 0, seeded from the global torch RNG or ``generator``).
        Returns per view ``pts3d_in_other_view`` (B, H, W, 3) in view 0's camera frame, ``conf``
        (B, H, W), and with a local head ``pts3d_local`` / ``conf_local`` in the view's own frame.
        """
        return self._run(images, image_ids, generator, keep_all=False).preds

    def trace(
        self,
        images: Sequence[Tensor],
        image_ids: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> Fast3RTrace:
        """Like ``forward``, but also returns every intermediate (all fusion stages)."""
        return self._run(images, image_ids, generator, keep_all=True)

    def _heads(self) -> dict[str, DPTHead]:
        heads = {"global": self.downstream_head}
        if self.downstream_head_local is not None:
            heads["local"] = self.downstream_head_local
        return heads

    def _check_images(self, images: Sequence[Tensor]) -> None:
        patch = self.config.encoder.patch_size
        if isinstance(images, Tensor) or len(images) == 0:
            raise ValueError("expected a non-empty list of view tensors (B, 3, H, W)")
        batch = images[0].shape[0] if images[0].ndim == 4 else None
        for i, img in enumerate(images):
            ok = (
                isinstance(img, Tensor)
                and img.ndim == 4
                and img.shape[0] == batch
                and img.shape[1] == 3
                and img.shape[2] % patch == 0
                and img.shape[3] % patch == 0
                and img.is_floating_point()
            )
            if not ok:
                got = tuple(img.shape) if isinstance(img, Tensor) else type(img).__name__
                raise ValueError(
                    f"view {i}: expected a float tensor (B={batch}, 3, H, W) with H and W "
                    f"multiples of {patch}, got {got}"
                )
            if self.config.encoder.landscape_only and img.shape[2] > img.shape[3]:
                raise ValueError(
                    f"view {i} is portrait ({img.shape[2]}x{img.shape[3]}) but this checkpoint's "
                    "config (patch_embed_cls=ManyAR_PatchEmbed) accepts landscape views only"
                )

    def _image_ids(
        self, num_views: int, image_ids: Tensor | None, generator: torch.Generator | None
    ) -> Tensor:
        if image_ids is None:
            random = self.config.decoder.random_image_idx_embedding
            return draw_image_ids(num_views, random=random, generator=generator)
        ok = (
            isinstance(image_ids, Tensor)
            and image_ids.shape == (num_views,)
            and not image_ids.is_floating_point()
            and int(image_ids.min()) >= 0
            and int(image_ids.max()) < IMAGE_IDX_TABLE_ROWS
        )
        if not ok:
            got = (
                f"{image_ids.dtype} {tuple(image_ids.shape)}"
                if isinstance(image_ids, Tensor)
                else type(image_ids).__name__
            )
            raise ValueError(
                f"expected image_ids as an integer tensor ({num_views},) with values in "
                f"0..{IMAGE_IDX_TABLE_ROWS - 1}, got {got}"
            )
        return image_ids.long()

    def _run(
        self,
        images: Sequence[Tensor],
        image_ids: Tensor | None,
        generator: torch.Generator | None,
        keep_all: bool,
    ) -> Fast3RTrace:
        self._check_images(images)
        param = self.encoder.patch_embed.proj.weight
        images = [img.to(device=param.device, dtype=param.dtype) for img in images]
        num_views, batch = len(images), images[0].shape[0]
        ids = self._image_ids(num_views, image_ids, generator).to(param.device)

        # Views of one size share batches through the encoder and the heads.
        groups: dict[tuple[int, int], list[int]] = {}
        for i, img in enumerate(images):
            groups.setdefault((img.shape[2], img.shape[3]), []).append(i)

        enc_tokens: dict[int, Tensor] = {}
        enc_pos: dict[int, Tensor] = {}
        for members in groups.values():
            stacked = torch.cat([images[i] for i in members])  # (len(members)*B, 3, H, W)
            outs = [
                self.encoder(stacked[s : s + self.encoder_chunk_images])
                for s in range(0, len(stacked), self.encoder_chunk_images)
            ]
            tokens = torch.cat([t for t, _ in outs])  # (len(members)*B, N, C_enc)
            for j, i in enumerate(members):
                enc_tokens[i] = tokens[j * batch : (j + 1) * batch]  # (B, N, C_enc)
                enc_pos[i] = outs[0][1]

        depth = self.config.decoder.depth
        hooks = self.downstream_head.hooks
        tokens_in_order = [enc_tokens[i] for i in range(num_views)]
        fusion = self.decoder(tokens_in_order, ids, range(depth + 1) if keep_all else hooks)
        counts = [t.shape[1] for t in tokens_in_order]
        per_view = {k: fusion[k].split(counts, dim=1) for k in hooks}  # V x (B, N_v, C)

        head_raw: dict[str, list[Tensor]] = {}
        for name, head in self._heads().items():
            raw_views: dict[int, Tensor] = {}
            for (H, W), members in groups.items():
                layers = [torch.cat([per_view[k][i] for i in members]) for k in hooks]
                raw = head(layers, (H, W))  # (len(members)*B, 4, H, W)
                for j, i in enumerate(members):
                    raw_views[i] = raw[j * batch : (j + 1) * batch]  # (B, 4, H, W)
            head_raw[name] = [raw_views[i] for i in range(num_views)]

        keys = {"global": ("pts3d_in_other_view", "conf"), "local": ("pts3d_local", "conf_local")}
        preds: list[dict[str, Tensor]] = [{} for _ in range(num_views)]
        for name, raw_views in head_raw.items():
            pts_key, conf_key = keys[name]
            for i, raw in enumerate(raw_views):
                pts, conf = pointmap_from_raw(
                    raw, self.config.head.depth_mode, self.config.head.conf_mode
                )
                preds[i][pts_key], preds[i][conf_key] = pts, conf

        return Fast3RTrace(
            image_ids=ids,
            enc_tokens=tokens_in_order,
            enc_pos=[enc_pos[i] for i in range(num_views)],
            fusion=[fusion[k] for k in sorted(fusion)] if keep_all else [],
            head_raw=head_raw,
            preds=preds,
        )

    # -- loading

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        strict: bool = True,
    ) -> Fast3R:
        """Load a model folder (``config.json`` + ``model.safetensors``) or a Hugging Face hub id
        (cached, else downloaded). fp32 on CPU unless ``device``/``dtype`` say otherwise.

        ``strict``: every checkpoint tensor must match a model tensor and the other way round
        (``CheckpointMismatchError`` names each one that does not); ``False`` loads what matches.
        """
        from safetensors.torch import load_file

        folder = resolve_weights(name_or_path)
        config = Fast3RConfig.from_dict(json.loads((folder / "config.json").read_text()))
        checkpoint = load_file(folder / "model.safetensors")
        if strict:
            # Build without allocating or initialising, then adopt the loaded tensors as they are.
            with torch.device("meta"):
                model = cls(config)
            expected = {k: v.shape for k, v in model.state_dict().items()}
            state = checkpoint_to_model_keys(checkpoint, expected)
            model.load_state_dict(state, strict=True, assign=True)
            model.reset_buffers()
        else:
            model = cls(config)
            expected = {k: v.shape for k, v in model.state_dict().items()}
            state = checkpoint_to_model_keys(checkpoint, expected, strict=False)
            model.load_state_dict(state, strict=False)
        log.info("loaded Fast3R weights from %s", folder)
        return model.to(device=device or "cpu", dtype=dtype or torch.float32).eval()

    def reset_buffers(self) -> None:
        """Recompute non-checkpoint buffers (after building on the ``meta`` device)."""
        buf = self.decoder.image_idx_emb
        device = self.encoder.patch_embed.proj.weight.device
        self.decoder.image_idx_emb = image_idx_table(buf.shape[0], buf.shape[1], device)


# ---------------------------------------------------------------------------------- checkpoint


class CheckpointMismatchError(ValueError):
    """The checkpoint's tensors do not match the model's; the message names each key."""


def checkpoint_to_model_keys(
    checkpoint: Mapping[str, Tensor], expected: Mapping[str, torch.Size], *, strict: bool = True
) -> dict[str, Tensor]:
    """Rename checkpoint keys to this model's and check them against ``expected`` (key -> shape).

    The original registers each DPT ``scratch.layer{i}_rn`` conv twice, also as
    ``scratch.layer_rn.{i-1}``; safetensors files keep the first spelling, torch state dicts
    both. Either is accepted. Missing, unexpected and wrongly shaped keys are all named in one
    ``CheckpointMismatchError``; with ``strict=False`` only shape mismatches raise, the rest is
    named in a warning, and the result holds the keys that matched.
    """
    renamed: dict[str, Tensor] = {}
    for key, tensor in checkpoint.items():
        new = _ALIAS.sub(lambda m: f"{m[1]}layer{int(m[2]) + 1}_rn.", key)
        if new in renamed and not torch.equal(renamed[new], tensor):
            raise CheckpointMismatchError(f"{key} and {new} are both present and differ")
        renamed[new] = tensor
    missing = sorted(set(expected) - set(renamed))
    unexpected = sorted(set(renamed) - set(expected))
    wrong_shape = sorted(
        f"{k}: checkpoint {tuple(renamed[k].shape)}, model {tuple(expected[k])}"
        for k in set(renamed) & set(expected)
        if renamed[k].shape != expected[k]
    )

    def report(problems: list[tuple[str, list[str]]]) -> str:
        return "; ".join(
            f"{what} ({len(keys)}): {', '.join(keys)}" for what, keys in problems if keys
        )

    fatal = report(
        [("wrong shape", wrong_shape)]
        + ([("missing", missing), ("unexpected", unexpected)] if strict else [])
    )
    if fatal:
        raise CheckpointMismatchError(f"checkpoint does not fit the model; {fatal}")
    if not strict and (missing or unexpected):
        tolerated = report(
            [("missing, left as initialised", missing), ("unexpected, ignored", unexpected)]
        )
        warnings.warn(f"checkpoint does not fit the model; {tolerated}", stacklevel=2)
    return {k: v for k, v in renamed.items() if k in expected}


_ALIAS = re.compile(r"(\.scratch\.)layer_rn\.(\d)\.")


# ---------------------------------------------------------------------------------- presets


def fast3r_vitl_512_config() -> Fast3RConfig:
    """The released ``jedyang97/Fast3R_ViT_Large_512`` configuration."""
    inf = math.inf
    return Fast3RConfig(
        encoder=EncoderConfig(
            embed_dim=1024,
            depth=24,
            num_heads=16,
            patch_size=16,
            rope_base=100.0,
            attn_implementation="flash_attention",
        ),
        decoder=DecoderConfig(
            embed_dim=1024,
            depth=24,
            num_heads=16,
            random_image_idx_embedding=True,
            attn_bias_for_inference_enabled=False,
            attn_implementation="flash_attention",
        ),
        head=HeadConfig(
            landscape_only=False,
            depth_mode=("exp", -inf, inf),
            conf_mode=("exp", 1.0, inf),
            with_local_head=True,
        ),
    )


def fast3r_vitl_512() -> Fast3R:
    """Fast3R ViT-L/512 with random weights (build under ``torch.device('meta')`` to skip init)."""
    return Fast3R(fast3r_vitl_512_config())
