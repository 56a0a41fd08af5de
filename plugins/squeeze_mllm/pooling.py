"""Aggregators that turn raw MLLM layer features into a FLUX text-side stream.

The raw stream (written by :mod:`.encoder`) holds, for every token of the joint
instruction + images input, the hidden states of the selected MLLM layers:
``tokens`` ``(B, S, L, D)`` (S selected layers), ``meta["layers"]`` their indices,
``meta["modality"]`` ``(L,)`` 0 = text token, 1 = image token, ``meta["subject"]`` ``(L,)``.

- :class:`LayerwiseAttentionPooling` (LAP): per token, learned attention over the layer axis,
  a small bidirectional refiner (the MLLM is causal: later tokens saw more context; the refiner
  lets every token see all others), and a projection to the backbone's text width.
- :class:`DualLayerAggregation` (DLA): one LAP branch for text-token positions and one for
  image-token positions, written back in the original order as one stream.
- :class:`LastLayer`, :class:`FixedLayers`: the baselines (Qwen-Image/OmniGen2 use the last
  layer; FLUX.2 stacks fixed layers).
"""

from __future__ import annotations

import torch
from torch import nn

from smg_sdk import Aggregator, ConditionError, ConditionSet, ConditionStream, Request, StreamSpec

from .streams import OUT_STREAM, RAW_STREAM

RAW_IN = (StreamSpec("{stream}", side="raw"),)
"""What every aggregator here needs and drops: the raw stream of the ``squeeze-mllm`` encoder."""
TEXT_OUT = (StreamSpec("{out_stream}", side="text"),)
"""What every aggregator here makes: the pooled text-side stream."""


class LayerwiseAttentionPooling(nn.Module):
    """Pool ``(B, S, L, D)`` layer features to ``(B, L, out_dim)`` with attention over S."""

    def __init__(self, num_layers: int, in_dim: int, out_dim: int, refiner_layers: int = 1, heads: int = 4):
        super().__init__()
        if num_layers < 1 or in_dim < 1 or out_dim < 1:
            raise ConditionError("LAP needs num_layers, in_dim and out_dim >= 1.")
        if refiner_layers not in (0, 1, 2):
            raise ConditionError("LAP's refiner has 0, 1 or 2 transformer layers (the paper uses 1-2).")
        if in_dim % heads:
            raise ConditionError(f"LAP: in_dim {in_dim} must be divisible by heads {heads}.")
        self.num_layers = num_layers
        self.norm = nn.LayerNorm(in_dim)
        self.layer_embedding = nn.Parameter(torch.zeros(num_layers, in_dim))
        self.score = nn.Linear(in_dim, 1)
        self.refiner = None
        if refiner_layers:
            layer = nn.TransformerEncoderLayer(in_dim, heads, dim_feedforward=2 * in_dim, dropout=0.0,
                                               batch_first=True, norm_first=True)
            self.refiner = nn.TransformerEncoder(layer, refiner_layers, enable_nested_tensor=False)
        self.proj = nn.Linear(in_dim, out_dim)

    def layer_weights(self, features: torch.Tensor) -> torch.Tensor:
        """``(B, L, S)`` attention of each token over the layers; sums to 1 over S."""
        if features.ndim != 4 or features.shape[1] != self.num_layers:
            raise ConditionError(
                f"LAP expects (batch, {self.num_layers} layers, tokens, width) features, got {tuple(features.shape)}."
            )
        keys = self.norm(features) + self.layer_embedding[None, :, None, :]
        return torch.softmax(self.score(keys).squeeze(-1), dim=1).permute(0, 2, 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        weights = self.layer_weights(features)  # (B, L, S)
        pooled = torch.einsum("bls,bsld->bld", weights, self.norm(features))
        if self.refiner is not None and pooled.shape[1] > 0:
            pooled = self.refiner(pooled)
        return self.proj(pooled)


def _raw(conditions: ConditionSet, name: str) -> ConditionStream:
    if name not in conditions:
        raise ConditionError(
            f"No raw MLLM stream {name!r}; put the 'squeeze-mllm' encoder before this aggregator in the pipeline."
        )
    return conditions.get(name)


def _in_own_precision(module: nn.Module, features: torch.Tensor, run) -> torch.Tensor:
    """``run(features)`` in the aggregator's parameter dtype, returned in ``features``' dtype.

    The raw stream arrives in the backend's dtype (bf16 on most GPUs) while a trained
    aggregator may keep float32 weights; it computes in its own precision and hands the
    backend its own dtype back. Parameters and features on different devices are refused
    (a silent copy every call would hide a misplaced pipeline).
    """
    param = next(module.parameters())
    if param.device != features.device:
        raise ConditionError(
            f"{type(module).__name__}'s parameters are on {param.device} but the MLLM features on {features.device}; "
            "place the whole pipeline with pipe.to(device)."
        )
    return run(features.to(param.dtype)).to(features.dtype)


def _emit(conditions: ConditionSet, raw: ConditionStream, tokens: torch.Tensor, out_name: str) -> ConditionSet:
    stream = ConditionStream(
        name=out_name,
        tokens=tokens,
        position_ids=torch.zeros(tokens.shape[1], 3),
        side="text",
        meta={k: v for k, v in raw.meta.items() if k in ("modality", "subject", "layers")},
    )
    rest = conditions.without(raw.name)
    return ConditionSet(rest.streams + [stream], rest.pooled, dict(rest.meta))


class LAPAggregator(nn.Module, Aggregator):
    """``lap``: one LAP over all tokens of the raw MLLM stream."""

    needs_streams = drops_streams = RAW_IN
    makes_streams = TEXT_OUT
    needs_meta = reads_meta = writes_meta = ()

    def __init__(self, num_layers: int, in_dim: int, out_dim: int = 4096, refiner_layers: int = 1, heads: int = 4,
                 stream: str = RAW_STREAM, out_stream: str = OUT_STREAM):
        super().__init__()
        self.lap = LayerwiseAttentionPooling(num_layers, in_dim, out_dim, refiner_layers, heads)
        self.stream, self.out_stream = stream, out_stream

    def aggregate(self, conditions: ConditionSet, request: Request | None) -> ConditionSet:
        raw = _raw(conditions, self.stream)
        return _emit(conditions, raw, _in_own_precision(self, raw.tokens, self.lap), self.out_stream)


class DualLayerAggregation(nn.Module, Aggregator):
    """``dla``: separate LAP branches for text and image token positions, fused in order."""

    needs_streams = drops_streams = RAW_IN
    makes_streams = TEXT_OUT
    needs_meta = reads_meta = writes_meta = ()

    def __init__(self, num_layers: int, in_dim: int, out_dim: int = 4096, refiner_layers: int = 1, heads: int = 4,
                 stream: str = RAW_STREAM, out_stream: str = OUT_STREAM):
        super().__init__()
        self.text_branch = LayerwiseAttentionPooling(num_layers, in_dim, out_dim, refiner_layers, heads)
        self.image_branch = LayerwiseAttentionPooling(num_layers, in_dim, out_dim, refiner_layers, heads)
        self.stream, self.out_stream = stream, out_stream

    def branches(self, features: torch.Tensor, modality: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each branch's output on its own positions, before fusion: (text (B, Lt, O), image (B, Li, O))."""
        is_image = modality.to(torch.bool)
        return self.text_branch(features[:, :, ~is_image]), self.image_branch(features[:, :, is_image])

    def fuse(self, text: torch.Tensor, image: torch.Tensor, modality: torch.Tensor) -> torch.Tensor:
        is_image = modality.to(torch.bool).to(text.device)
        out = text.new_zeros(text.shape[0], is_image.numel(), text.shape[-1])
        out[:, ~is_image] = text
        out[:, is_image] = image
        return out

    def aggregate(self, conditions: ConditionSet, request: Request | None) -> ConditionSet:
        raw = _raw(conditions, self.stream)
        modality = raw.meta["modality"]
        def pool(features: torch.Tensor) -> torch.Tensor:
            return self.fuse(*self.branches(features, modality), modality)

        fused = _in_own_precision(self, raw.tokens, pool)
        return _emit(conditions, raw, fused, self.out_stream)


class LastLayer(nn.Module, Aggregator):
    """``last-layer`` baseline: the last selected layer, normalised and projected.

    ``num_layers`` is accepted (and unused) so every Squeeze aggregator takes the same config.
    """

    needs_streams = drops_streams = RAW_IN
    makes_streams = TEXT_OUT
    needs_meta = reads_meta = writes_meta = ()

    def __init__(self, in_dim: int, out_dim: int = 4096, stream: str = RAW_STREAM, out_stream: str = OUT_STREAM,
                 num_layers: int | None = None):
        super().__init__()
        self.norm = nn.LayerNorm(in_dim)
        self.proj = nn.Sequential(nn.Linear(in_dim, in_dim), nn.GELU(), nn.Linear(in_dim, out_dim))
        self.stream, self.out_stream = stream, out_stream

    def aggregate(self, conditions: ConditionSet, request: Request | None) -> ConditionSet:
        raw = _raw(conditions, self.stream)
        last = _in_own_precision(self, raw.tokens[:, -1], lambda features: self.proj(self.norm(features)))
        return _emit(conditions, raw, last, self.out_stream)


def fixed_layer_slots(layers: list[int], fractions: tuple[float, ...] = (1 / 3, 2 / 3, 1.0)) -> list[int]:
    """Positions, in the selected-layer list, of the layers nearest each fraction of the depth."""
    depth = max(layers)
    return [min(range(len(layers)), key=lambda i: abs(layers[i] - f * depth)) for f in fractions]


class FixedLayers(nn.Module, Aggregator):
    """``fixed-layers`` baseline: layers at 1/3, 2/3 and the last, concatenated, then projected.

    The three are the selected layers nearest those depths; ``num_layers`` is accepted (and
    unused) so every Squeeze aggregator takes the same config.
    """

    needs_streams = drops_streams = RAW_IN
    makes_streams = TEXT_OUT
    needs_meta = reads_meta = writes_meta = ()

    def __init__(self, in_dim: int, out_dim: int = 4096, stream: str = RAW_STREAM, out_stream: str = OUT_STREAM,
                 num_layers: int | None = None):
        super().__init__()
        self.norm = nn.LayerNorm(in_dim)
        self.proj = nn.Linear(3 * in_dim, out_dim)
        self.stream, self.out_stream = stream, out_stream

    def aggregate(self, conditions: ConditionSet, request: Request | None) -> ConditionSet:
        raw = _raw(conditions, self.stream)
        slots = fixed_layer_slots(list(raw.meta["layers"]))
        def project(features: torch.Tensor) -> torch.Tensor:
            return self.proj(torch.cat([self.norm(features[:, s]) for s in slots], dim=-1))

        return _emit(conditions, raw, _in_own_precision(self, raw.tokens, project), self.out_stream)
