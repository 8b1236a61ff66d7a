"""iEBAKER's Keyword Explicit Reasoning head: predict masked domain keywords from the image.

The caption's keywords are masked (:mod:`rsvl.data.ker_masking`); the masked caption's token states
(projected, :mod:`rsvl.models.tokens`) read the image's patch tokens through one cross-attention
layer, then a 2-layer transformer, a LayerNorm and an MLP (linear, GELU, LayerNorm, linear) give
scores over the keyword vocabulary at every position. The reference code scores the whole BPE
vocabulary (49,408 ids); we score the keyword vocabulary itself, one class per keyword, which
handles keywords split into several sub-word tokens and keeps the head small on any tokenizer.

The head is part of the model (``model.ker_head``) so that it trains, checkpoints and resumes with
it; its settings are recorded in ``rsvl_spec["ker_head"]`` and :func:`rsvl.models.load_model`
rebuilds it. Consumers of the registered model never call it.
"""

from __future__ import annotations

from typing import Any

import torch
from open_clip.transformer import LayerNorm, Transformer
from torch import nn

from rsvl.errors import ModelError

HEAD_WIDTH = 64
"""Width of one attention head: heads = embed_dim / 64, as the reference (512 wide, 8 heads)."""
SPEC_KEY = "ker_head"


class KerHead(nn.Module):
    """Cross-attention from masked text tokens to image tokens, 2 transformer layers, LayerNorm, MLP.

    Args:
        width: Token width (the model's ``embed_dim``).
        vocab_size: Number of keywords.
        layers: Transformer layers after the cross-attention.
    """

    def __init__(self, width: int, vocab_size: int, layers: int = 2) -> None:
        super().__init__()
        # one head per 64 channels when the width splits so, else a single head
        heads = width // HEAD_WIDTH if width % HEAD_WIDTH == 0 else 1
        self.ln_text = LayerNorm(width)
        self.ln_image = LayerNorm(width)
        self.cross_attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.transformer = Transformer(width, layers, heads, batch_first=True)
        self.ln_post = LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, width), nn.GELU(), LayerNorm(width), nn.Linear(width, vocab_size))
        self._init(width, layers)

    def _init(self, width: int, layers: int) -> None:
        # the reference's scaled normal init (CLIP's residual-branch rule)
        scale = width ** -0.5
        proj_std = scale * (2 * layers) ** -0.5
        fc_std = (2 * width) ** -0.5
        for block in self.transformer.resblocks:
            nn.init.normal_(block.attn.in_proj_weight, std=scale)
            nn.init.normal_(block.attn.out_proj.weight, std=proj_std)
            nn.init.normal_(block.mlp.c_fc.weight, std=fc_std)
            nn.init.normal_(block.mlp.c_proj.weight, std=proj_std)
        nn.init.normal_(self.cross_attn.in_proj_weight, std=scale)
        nn.init.normal_(self.cross_attn.out_proj.weight, std=proj_std)
        nn.init.normal_(self.mlp[0].weight, std=fc_std)
        nn.init.normal_(self.mlp[3].weight, std=proj_std)

    def forward(self, text_tokens: torch.Tensor, image_tokens: torch.Tensor) -> torch.Tensor:
        """Keyword scores at every text position.

        Args:
            text_tokens: ``(N, L, width)`` token states of the masked captions.
            image_tokens: ``(N, P, width)`` the images' patch tokens.

        Returns:
            ``(N, L, vocab_size)`` logits.
        """
        image = self.ln_image(image_tokens)
        x = self.cross_attn(self.ln_text(text_tokens), image, image, need_weights=False)[0]
        return self.mlp(self.ln_post(self.transformer(x)))


def ker_settings(model: nn.Module) -> dict[str, Any] | None:
    """The KER head settings recorded in a model's ``rsvl_spec``, or ``None`` without a head."""
    return (getattr(model, "rsvl_spec", None) or {}).get(SPEC_KEY)


def attach_ker_head(model: nn.Module, vocabulary: list[str], layers: int = 2, vocabulary_sha256: str = "") -> KerHead:
    """Give ``model`` a KER head over ``vocabulary`` (kept when it already has one that fits).

    Args:
        model: A model built or loaded by :mod:`rsvl.models` (unwrapped); changed in place.
        vocabulary: The keywords, in class order.
        layers: Transformer layers of the head.
        vocabulary_sha256: Fingerprint of the vocabulary file, recorded with the settings.

    Returns:
        The head (``model.ker_head``).

    Raises:
        ModelError: The model has a head of other settings (another vocabulary or depth).
    """
    spec = getattr(model, "rsvl_spec", None)
    if spec is None:
        raise ModelError(f"{type(model).__name__} has no rsvl_spec; build it with rsvl.models.build_model")
    width = int(spec["model_cfg"]["embed_dim"])
    wanted = {"vocab_size": len(vocabulary), "layers": layers, "width": width, "vocabulary_sha256": vocabulary_sha256}
    existing = getattr(model, "ker_head", None)
    if existing is not None:
        if spec.get(SPEC_KEY) != wanted:
            raise ModelError(f"the model already has a KER head {spec.get(SPEC_KEY)}, not {wanted}")
        return existing
    model.ker_head = KerHead(width, len(vocabulary), layers)
    model.rsvl_spec = {**spec, SPEC_KEY: wanted}
    return model.ker_head


def rebuild_ker_head(model: nn.Module, spec: dict[str, Any]) -> None:
    """Recreate the head a saved model's spec records (before its weights load); no-op without one."""
    settings = spec.get(SPEC_KEY)
    if settings:
        model.ker_head = KerHead(int(settings["width"]), int(settings["vocab_size"]), int(settings["layers"]))
