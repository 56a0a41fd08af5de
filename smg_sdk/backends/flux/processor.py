"""The attention processor that lets condition streams into FLUX's joint attention.

Installed with diffusers' ``set_attn_processor`` (the public API for this), it computes
exactly what diffusers' ``FluxAttnProcessor`` computes, and additionally, when the pass
carries an :class:`AttentionContext` in ``joint_attention_kwargs["smg"]``:

- ``record`` mode: stores each layer's post-RoPE keys and values (the reference pass of a
  cached stream);
- ``main`` mode: appends recorded keys/values of cached streams to the keys and runs the
  joint attention as the pass's :class:`~smg_sdk.attention.blocks.AttentionPlan` (built from
  the rules and the schedule): one ``dispatch_attention_fn`` call per block, with only the
  keys that block may see and no mask where none is needed (:func:`attend_blocks`).

With no context it is FluxAttnProcessor, so an installed processor never changes a plain run.

The body of :meth:`StreamAttnProcessor.__call__` is copied from ``FluxAttnProcessor.__call__``
of diffusers 0.42.1 (``diffusers/models/transformers/transformer_flux.py``), with the context's
additions marked; it imports diffusers' private ``_get_qkv_projections``.
``tests/test_flux_backend.py::test_processor_follows_diffusers`` fails, naming the installed
diffusers version, when that helper changes; the peer tests check the numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from diffusers.models.attention_dispatch import dispatch_attention_fn
from diffusers.models.embeddings import apply_rotary_emb
from diffusers.models.transformers.transformer_flux import _get_qkv_projections

from ...attention.blocks import AttentionPlan

KV = tuple[torch.Tensor, torch.Tensor]

FOLLOWS_DIFFUSERS = "0.42.1"
"""The diffusers release whose ``FluxAttnProcessor.__call__`` the processor's body copies."""


@dataclass
class AttentionContext:
    """Per-pass instructions for every :class:`StreamAttnProcessor` of a model."""

    mode: Literal["main", "record"] = "main"
    plan: AttentionPlan | None = None
    cached: list[dict[str, KV]] = field(default_factory=list)
    recorded: dict[str, KV] = field(default_factory=dict)


class StreamAttnProcessor:
    """FluxAttnProcessor plus key/value recording, appending and attention by the pass's plan.

    ``layer`` is the processor's name in ``transformer.attn_processors``; it keys the cache.
    """

    _attention_backend = None
    _parallel_config = None

    def __init__(self, layer: str):
        self.layer = layer

    def __call__(
        self,
        attn,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        image_rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
        smg: AttentionContext | None = None,
    ):
        query, key, value, encoder_query, encoder_key, encoder_value = _get_qkv_projections(
            attn, hidden_states, encoder_hidden_states
        )
        query = query.unflatten(-1, (-1, attn.head_dim))
        key = key.unflatten(-1, (-1, attn.head_dim))
        value = value.unflatten(-1, (-1, attn.head_dim))
        query = attn.norm_q(query)
        key = attn.norm_k(key)

        if attn.added_kv_proj_dim is not None:
            encoder_query = attn.norm_added_q(encoder_query.unflatten(-1, (-1, attn.head_dim)))
            encoder_key = attn.norm_added_k(encoder_key.unflatten(-1, (-1, attn.head_dim)))
            encoder_value = encoder_value.unflatten(-1, (-1, attn.head_dim))
            query = torch.cat([encoder_query, query], dim=1)
            key = torch.cat([encoder_key, key], dim=1)
            value = torch.cat([encoder_value, value], dim=1)

        if image_rotary_emb is not None:
            query = apply_rotary_emb(query, image_rotary_emb, sequence_dim=1)
            key = apply_rotary_emb(key, image_rotary_emb, sequence_dim=1)

        if smg is not None:
            if smg.mode == "record":
                smg.recorded[self.layer] = (key, value)
            elif smg.cached:
                key = torch.cat([key] + [kv[self.layer][0] for kv in smg.cached], dim=1)
                value = torch.cat([value] + [kv[self.layer][1] for kv in smg.cached], dim=1)
        if smg is not None and smg.plan is not None:  # smg: one call per block of the pass's plan
            hidden_states = attend_blocks(smg.plan, query, key, value, self._attention_backend, self._parallel_config)
        else:
            hidden_states = dispatch_attention_fn(
                query,
                key,
                value,
                attn_mask=attention_mask,
                backend=self._attention_backend,
                parallel_config=self._parallel_config,
            )
        hidden_states = hidden_states.flatten(2, 3).to(query.dtype)

        if encoder_hidden_states is not None:
            text_len = encoder_hidden_states.shape[1]
            encoder_hidden_states, hidden_states = hidden_states.split_with_sizes(
                [text_len, hidden_states.shape[1] - text_len], dim=1
            )
            hidden_states = attn.to_out[0](hidden_states.contiguous())
            hidden_states = attn.to_out[1](hidden_states)
            encoder_hidden_states = attn.to_add_out(encoder_hidden_states.contiguous())
            return hidden_states, encoder_hidden_states
        return hidden_states


def attend_blocks(plan: AttentionPlan, query, key, value, backend=None, parallel_config=None) -> torch.Tensor:
    """Joint attention of ``query`` ``(B, Q, H, D)`` over ``key``/``value`` ``(B, K, H, D)`` run as ``plan``.

    Each :class:`~smg_sdk.attention.blocks.AttentionBlock` is one ``dispatch_attention_fn``
    call on its queries and the key spans it may see (a view when they are one span), with its
    mask or none; the results land at the block's query positions. Returns ``(B, Q, H, D)``.
    Equals attention with the dense mask of the same rules (tests/test_block_attention.py).
    """
    if len(plan.blocks) == 1 and plan.blocks[0].queries == slice(0, plan.num_queries):
        block = plan.blocks[0]
        return dispatch_attention_fn(query, _keys(key, block.keys), _keys(value, block.keys),
                                     attn_mask=block.mask, backend=backend, parallel_config=parallel_config)
    out = query.new_empty(query.shape)
    for block in plan.blocks:
        q = query[:, block.queries] if isinstance(block.queries, slice) else query.index_select(1, block.queries)
        part = dispatch_attention_fn(q, _keys(key, block.keys), _keys(value, block.keys),
                                     attn_mask=block.mask, backend=backend, parallel_config=parallel_config)
        out[:, block.queries] = part
    return out


def _keys(tensor: torch.Tensor, spans: tuple[slice, ...]) -> torch.Tensor:
    """``tensor``'s positions in ``spans`` along dim 1, concatenated (a view for one span)."""
    if len(spans) == 1:
        return tensor[:, spans[0]]
    return torch.cat([tensor[:, s] for s in spans], dim=1)


def install_stream_processors(transformer) -> None:
    """Give every attention layer of ``transformer`` a :class:`StreamAttnProcessor` (idempotent)."""
    current = transformer.attn_processors
    if all(isinstance(p, StreamAttnProcessor) for p in current.values()):
        return
    transformer.set_attn_processor({name: StreamAttnProcessor(name) for name in current})
