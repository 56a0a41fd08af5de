"""The encoding cache: repeated references skip the encoders, and nothing stale is ever returned."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from smg_sdk import Subject
from smg_sdk.backends.flux.encoders import FluxTextEncoder, VAEReferenceEncoder
from smg_sdk.encoding_cache import EncodingCache
from smg_sdk.errors import ConfigError, SMGError
from smg_sdk.pipeline import SubjectPipeline
from tests.conftest import make_image


@pytest.fixture()
def vae_runs(backend, monkeypatch):
    """Counts the backend's reference encodings (an instance attribute wraps the bound method)."""
    runs = {"n": 0}
    original = backend.encode_references

    def counting(*args, **kwargs):
        runs["n"] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(backend, "encode_references", counting)
    return runs


@torch.no_grad()  # as the pipeline's generation path: the cache stays out of autograd
def _encode(cache: EncodingCache, encoder, request, backend):
    return cache.encode(encoder, request, backend)


def _pipe(backend, **options) -> SubjectPipeline:
    pipe = SubjectPipeline(backend, [FluxTextEncoder(), VAEReferenceEncoder(mode="cached")], **options)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _request(pipe, image: Image.Image | None = None, prompt: str = "a <1> on grass", size: int = 64):
    return pipe.make_request(prompt, [Subject(image or make_image(0), "cat")], height=size, width=size,
                             num_inference_steps=2, seed=0)


def _generate(pipe, image=None, prompt="a <1> on grass", seed=0):
    return pipe(prompt, [Subject(image or make_image(0), "cat")], height=64, width=64, num_inference_steps=2,
                seed=seed, output_type="latent").images


def test_second_request_skips_the_encoders_and_matches_uncached_output(backend, vae_runs):
    cached = _pipe(backend)
    first, second = _generate(cached), _generate(cached, seed=1)
    assert vae_runs["n"] == 1 and cached.encoding_cache.hits == 2 and cached.encoding_cache.misses == 2
    plain = _pipe(backend, encoding_cache=False)
    assert plain.encoding_cache is None
    assert torch.equal(first, _generate(plain)) and torch.equal(second, _generate(plain, seed=1))
    assert vae_runs["n"] == 3  # without the cache every request encodes


def test_different_pixels_miss(backend, vae_runs):
    pipe = _pipe(backend)
    image = make_image(0)
    changed = np.asarray(image).copy()
    changed[0, 0, 0] ^= 1  # one channel of one pixel
    with torch.no_grad():
        pipe.encode_candidates(_request(pipe, image), [None])
        pipe.encode_candidates(_request(pipe, image), [None])
        (conditions,), _ = pipe.encode_candidates(_request(pipe, Image.fromarray(changed)), [None])
    assert vae_runs["n"] == 2
    (expected,) = backend.encode_references([Image.fromarray(changed)], 64, 64)
    assert torch.equal(conditions.streams[-1].tokens, expected.tokens)


def test_prompt_matters_only_to_encoders_that_read_it(backend):
    cache = EncodingCache()
    text, reference = FluxTextEncoder(), VAEReferenceEncoder()
    pipe = _pipe(backend)
    one, other = _request(pipe, prompt="a <1> on grass"), _request(pipe, prompt="a <1> in snow")
    for request in (one, other):
        _encode(cache, text, request, backend)
        _encode(cache, reference, request, backend)
    assert (cache.hits, cache.misses) == (1, 3)  # the reference's second call hit; the text encoder's missed


def test_changed_encoder_settings_miss_and_give_their_own_result(backend):
    cache, encoder = EncodingCache(), VAEReferenceEncoder(position="kontext")
    request = _request(_pipe(backend))
    kontext = _encode(cache, encoder, request, backend)
    encoder.position = "uno"  # an option changed after construction
    uno = _encode(cache, encoder, request, backend)
    assert cache.misses == 2 and not torch.equal(kontext.streams[0].position_ids, uno.streams[0].position_ids)
    other = VAEReferenceEncoder(position="uno")  # same settings, another object: its own entries
    _encode(cache, other, request, backend)
    assert cache.misses == 3


def test_changed_backend_settings_miss(backend):
    cache, text = EncodingCache(), FluxTextEncoder()
    request = _request(_pipe(backend))
    long = _encode(cache, text, request, backend)
    backend.max_sequence_length = 16  # the text encoders read it from the backend
    short = _encode(cache, text, request, backend)
    assert cache.misses == 2 and (long.streams[0].tokens.shape[1], short.streams[0].tokens.shape[1]) == (32, 16)


def test_size_is_part_of_the_key(backend):
    cache, encoder, pipe = EncodingCache(), VAEReferenceEncoder(), _pipe(backend)
    small = _encode(cache, encoder, _request(pipe, size=64), backend)
    large = _encode(cache, encoder, _request(pipe, size=96), backend)
    assert cache.misses == 2 and small.streams[0].tokens.shape[1] == 16 and large.streams[0].tokens.shape[1] == 36


def test_weights_changed_in_place_invalidate(backend):
    cache, encoder = EncodingCache(), VAEReferenceEncoder()
    request = _request(_pipe(backend))
    before = _encode(cache, encoder, request, backend)
    with torch.no_grad():
        backend.vae.encoder.conv_in.bias.add_(0.5)  # as an optimizer step or load_state_dict would
    after = _encode(cache, encoder, request, backend)
    assert cache.misses == 2 and not torch.equal(before.streams[0].tokens, after.streams[0].tokens)
    (expected,) = backend.encode_references([request.subjects[0].pil()], 64, 64)
    assert torch.equal(after.streams[0].tokens, expected.tokens)


def test_lru_eviction(backend, vae_runs):
    cache, encoder, pipe = EncodingCache(max_entries=2), VAEReferenceEncoder(), _pipe(backend)
    requests = [_request(pipe, make_image(seed)) for seed in range(3)]
    for request in requests[:2]:
        _encode(cache, encoder, request, backend)
    _encode(cache, encoder, requests[0], backend)  # a hit: requests[0] is now the most recent
    _encode(cache, encoder, requests[2], backend)  # evicts requests[1], the least recent
    assert len(cache) == 2 and (cache.hits, cache.misses) == (1, 3)
    _encode(cache, encoder, requests[0], backend)
    _encode(cache, encoder, requests[1], backend)
    assert (cache.hits, cache.misses) == (2, 4) and vae_runs["n"] == 4


def test_returned_sets_are_copies(backend):
    cache, encoder = EncodingCache(), VAEReferenceEncoder()
    request = _request(_pipe(backend))
    first = _encode(cache, encoder, request, backend)
    first.streams[0].tokens.mul_(0)
    first.streams[0].meta["edited"] = True
    again = _encode(cache, encoder, request, backend)
    assert cache.hits == 1 and again.streams[0].tokens.abs().sum() > 0 and "edited" not in again.streams[0].meta


def test_nothing_is_cached_while_autograd_records(backend):
    cache, encoder = EncodingCache(), VAEReferenceEncoder()
    request = _request(_pipe(backend))
    with torch.enable_grad():
        cache.encode(encoder, request, backend)
        cache.encode(encoder, request, backend)
    assert len(cache) == 0 and cache.hits == 0


@pytest.mark.parametrize("option", [0, -3, 2.5, "yes"])
def test_bad_options_are_refused(backend, option):
    with pytest.raises(SMGError):
        EncodingCache(max_entries=option) if isinstance(option, int) else _pipe(backend, encoding_cache=option)


def test_bad_max_entries_message_names_the_option():
    with pytest.raises(ConfigError, match="max_entries must be a whole number >= 1"):
        EncodingCache(max_entries=0)
