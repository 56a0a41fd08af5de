"""``dem``: the Deviation Extraction Module, an aggregator that rewrites S* from the reference.

For each concept occurrence it reads the text encoder's outputs at ``[S*, concept tokens]``
and runs three pre-norm residual sub-layers: self-attention among them, cross-attention to
the subject's Redux image tokens, an MLP. Only the updated S* is written back to its slot
(``write_concepts=True`` writes every slot, the paper's ablation); all other tokens of
the stream are passed through untouched. The Redux streams it read (``side="raw"``) are
removed, since the backend cannot run raw features.

The text stream is configurable (``stream``), so the DEM works on whichever text-side
stream carries the prompt with S*: it only needs that stream's slots in
``meta["sstar_slots"]`` (see :mod:`.slots`).
"""

from __future__ import annotations

import torch
from torch import nn

from smg_sdk import Aggregator, ConditionError, ConditionSet, ConditionStream, Request, StreamSpec

from .slots import SLOTS_KEY, read_slots


class DeviationExtractionModule(nn.Module, Aggregator):
    """Residual self-attention, cross-attention to Redux tokens and MLP over ``[S*, concept]``.

    ``width`` is the text width (FLUX.1: 4096; tiny preset: 32); ``redux_width`` the Redux
    token width (default: ``width``).
    """

    needs_streams = (StreamSpec("{stream}", side="text"), StreamSpec("{redux_prefix}*"))
    makes_streams = needs_meta = writes_meta = ()
    reads_meta = (SLOTS_KEY,)  # no slots: nothing to rewrite

    @property
    def drops_streams(self) -> tuple[StreamSpec, ...]:
        return (StreamSpec(f"{self.redux_prefix}*", side="raw"),) if self.consume_redux else ()

    def __init__(
        self,
        width: int = 4096,
        heads: int = 32,
        mlp_ratio: float = 4.0,
        redux_width: int | None = None,
        stream: str = "prompt",
        redux_prefix: str = "redux",
        write_concepts: bool = False,
        consume_redux: bool = True,
    ):
        super().__init__()
        if width % heads:
            raise ConditionError(f"DEM width {width} is not divisible by heads={heads}; pick a divisor of the width.")
        self.stream, self.redux_prefix = stream, redux_prefix
        self.write_concepts, self.consume_redux = bool(write_concepts), bool(consume_redux)
        redux_width = int(redux_width or width)
        hidden = int(width * mlp_ratio)
        self.norm_self = nn.LayerNorm(width)
        self.self_attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.norm_cross = nn.LayerNorm(width)
        self.norm_redux = nn.LayerNorm(redux_width)
        self.cross_attn = nn.MultiheadAttention(width, heads, kdim=redux_width, vdim=redux_width, batch_first=True)
        self.norm_mlp = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, width))

    def forward(self, tokens: torch.Tensor, redux: torch.Tensor | None) -> torch.Tensor:
        """``tokens (B, 1 + n, width)`` = [S*, concept]; ``redux (B, N, redux_width)`` or None."""
        x = tokens
        h = self.norm_self(x)
        x = x + self.self_attn(h, h, h, need_weights=False)[0]
        if redux is not None:
            kv = self.norm_redux(redux)
            x = x + self.cross_attn(self.norm_cross(x), kv, kv, need_weights=False)[0]
        return x + self.mlp(self.norm_mlp(x))

    def _redux_streams(self, conditions: ConditionSet) -> dict[int, ConditionStream]:
        return {
            s.subject: s
            for s in conditions
            if s.name.startswith(self.redux_prefix) and s.subject is not None and s.side in ("raw", "text")
            and s.meta.get("redux")
        }

    def aggregate(self, conditions: ConditionSet, request: Request) -> ConditionSet:
        if self.stream not in conditions:
            raise ConditionError(
                f"The DEM rewrites text stream {self.stream!r}, which this pipeline does not produce; streams are "
                f"{[s.name for s in conditions]}. Build 'dem' with stream=<the stream aligngen-text writes>."
            )
        text = conditions.get(self.stream)
        if text.side != "text":
            raise ConditionError(f"The DEM's stream {self.stream!r} is {text.side}-side; it must be a text stream.")
        slots = read_slots(conditions, self.stream)
        redux = self._redux_streams(conditions)
        tokens = text.tokens
        param = next(self.parameters())
        if param.device != tokens.device:
            raise ConditionError(
                f"The DEM's parameters are on {param.device} but the text tokens on {tokens.device}; place the "
                "whole pipeline with pipe.to(device)."
            )
        out = tokens.clone()
        for slot in slots:
            if slot.subject not in redux:
                raise ConditionError(
                    f"Subject {slot.subject + 1} has an S* slot but no Redux tokens; add the 'redux' encoder "
                    f"(prefix {self.redux_prefix!r}) to the pipeline before the DEM."
                )
            ref = redux[slot.subject].tokens.to(param.device, param.dtype)
            if ref.shape[0] != tokens.shape[0]:
                ref = ref.expand(tokens.shape[0], -1, -1)
            updated = self(tokens[:, slot.positions].to(param.device, param.dtype), ref).to(tokens)
            if self.write_concepts:
                out[:, slot.positions] = updated
            else:
                out[:, slot.sstar] = updated[:, 0]
        result = conditions.replace(self.stream, text.with_tokens(out))
        if self.consume_redux:
            for s in redux.values():
                if s.side == "raw":
                    result = result.without(s.name)
        return result
