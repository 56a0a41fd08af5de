"""FLOPs of a FLUX transformer evaluation, counted from its config and token counts (a helper, not a benchmark).

How it counts (one multiply-add = 2 FLOPs; ``D = heads x head_dim``):

- every block (double or single) costs ``24 D^2`` FLOPs per query token in its linear layers:
  a double block's stream has Q/K/V (``3 D^2`` MACs), its output projection (``D^2``) and a
  ``D -> 4D -> D`` MLP (``8 D^2``); a single block has Q/K/V (``3 D^2``), ``proj_mlp``
  (``D -> 4D``, ``4 D^2``) and ``proj_out`` (``5D -> D``, ``5 D^2``): 12 D^2 MACs either way;
- attention costs ``4 D`` FLOPs per (query, key) pair a call computes (``Q K^T`` and ``A V``),
  summed over the calls of the pass's attention plan (:class:`smg_sdk.attention.blocks.AttentionPlan`),
  so keys a query cannot see are not counted;
- the embedders and the output projection: ``x_embedder`` (``in_channels -> D``) per image-side
  token, ``context_embedder`` (``joint_attention_dim -> D``) per text token, ``proj_out``
  (``D -> patch^2 x out_channels``) per image-side token.

Left out (small at these widths, said so in the report): the per-sample AdaLN/time/guidance
projections (a few ``D x 6D`` products per sample, not per token), layer norms, RoPE, softmax,
GELU and the residual adds, which are O(tokens x D) elementwise work.
"""

from __future__ import annotations


def width(config) -> int:
    """``D = num_attention_heads x attention_head_dim`` of a FluxTransformer2DModel config."""
    return int(config.num_attention_heads) * int(config.attention_head_dim)


def layers(config) -> int:
    """Double plus single blocks."""
    return int(config.num_layers) + int(config.num_single_layers)


def attention_pairs(plan, queries: int, keys: int) -> int:
    """(query, key) pairs a pass computes: summed over ``plan``'s calls, or ``queries x keys`` without a plan."""
    if plan is None:
        return queries * keys
    return sum(block.num_queries * sum(s.stop - s.start for s in block.keys) for block in plan.blocks)


def forward_flops(config, text_tokens: int, image_tokens: int, pairs: int) -> float:
    """FLOPs of one transformer evaluation with ``text_tokens`` + ``image_tokens`` query tokens and ``pairs`` attention pairs.

    ``image_tokens`` counts every token on the image side (target plus concat references).
    """
    d = width(config)
    out = int(config.out_channels or config.in_channels) * int(config.patch_size) ** 2
    per_block = 24 * d * d * (text_tokens + image_tokens) + 4 * d * pairs
    embed = 2 * image_tokens * (int(config.in_channels) * d + d * out) + 2 * text_tokens * int(config.joint_attention_dim) * d
    return layers(config) * per_block + embed
