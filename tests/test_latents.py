"""Latent packing against diffusers' FluxPipeline (the reference), and its round trip."""

from __future__ import annotations

import torch
from diffusers import FluxPipeline
from hypothesis import given, settings
from hypothesis import strategies as st

from smg_sdk.backends.flux.latents import pack_latents, unpack_latents

SETTINGS = settings(max_examples=100, deadline=None)

shapes = st.tuples(
    st.integers(1, 3),  # batch
    st.integers(1, 6),  # channels
    st.integers(1, 8).map(lambda n: 2 * n),  # latent height (even)
    st.integers(1, 8).map(lambda n: 2 * n),  # latent width (even)
)


def _latents(shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@given(shape=shapes, seed=st.integers(0, 2**31 - 1))
@SETTINGS
def test_pack_unpack_round_trip(shape, seed):
    b, c, h, w = shape
    x = _latents(shape, seed)
    tokens = pack_latents(x)
    assert tokens.shape == (b, (h // 2) * (w // 2), c * 4)
    assert torch.equal(unpack_latents(tokens, h, w), x)


@given(shape=shapes, seed=st.integers(0, 2**31 - 1))
@SETTINGS
def test_unpack_pack_round_trip(shape, seed):
    b, c, h, w = shape
    tokens = torch.randn(b, (h // 2) * (w // 2), c * 4, generator=torch.Generator().manual_seed(seed))
    assert torch.equal(pack_latents(unpack_latents(tokens, h, w)), tokens)


@given(shape=shapes, seed=st.integers(0, 2**31 - 1))
@SETTINGS
def test_pack_matches_flux_pipeline(shape, seed):
    b, c, h, w = shape
    x = _latents(shape, seed)
    assert torch.equal(pack_latents(x), FluxPipeline._pack_latents(x, b, c, h, w))


@given(shape=shapes, seed=st.integers(0, 2**31 - 1))
@SETTINGS
def test_unpack_matches_flux_pipeline(shape, seed):
    b, c, h, w = shape
    tokens = pack_latents(_latents(shape, seed))
    expected = FluxPipeline._unpack_latents(tokens, h * 8, w * 8, vae_scale_factor=8)
    assert torch.equal(unpack_latents(tokens, h, w), expected)


def test_token_order_is_row_major_over_2x2_patches():
    # one channel, 4x4 latent numbered 0..15: token t holds its 2x2 patch as (c, dy, dx)
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    tokens = pack_latents(x)
    assert tokens[0].tolist() == [
        [0.0, 1.0, 4.0, 5.0],
        [2.0, 3.0, 6.0, 7.0],
        [8.0, 9.0, 12.0, 13.0],
        [10.0, 11.0, 14.0, 15.0],
    ]


def test_non_contiguous_inputs_pack_like_their_contiguous_copies():
    base = torch.randn(2, 4, 8, 6)
    for x in (base.transpose(2, 3), base.transpose(2, 3).contiguous(memory_format=torch.channels_last)):
        assert torch.equal(pack_latents(x), FluxPipeline._pack_latents(x.contiguous(), 2, 4, 6, 8))
    tokens = pack_latents(base).transpose(0, 1).contiguous().transpose(0, 1)
    assert not tokens.is_contiguous()
    assert torch.equal(unpack_latents(tokens, 8, 6), base)
