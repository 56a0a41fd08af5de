"""smg_sdk.mllm on the embedded tiny Qwen2.5-VL: loading, chat inputs and their per-token
metadata, hidden states, reproducible generation."""

from __future__ import annotations

import inspect
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import make_image
from smg_sdk.errors import ConditionError, ModelLoadError, RequestError
from smg_sdk.mllm import IMAGE_TOKEN, MLLM, TEXT_TOKEN, ChatInputs, load_mllm, load_processor
from smg_sdk.presets.tiny import tiny_qwen_vl_path

INSTRUCTION = "the dog from Picture 1 sits next to a teapot on the beach"


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """These models are tiny: one thread is as fast, and it does not thrash when other jobs
    share the machine's two cores (two OpenMP threads then run ~50x slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def mllm() -> MLLM:
    return load_mllm(tiny_qwen_vl_path())


def _expected_tokens(width: int, height: int, processor) -> int:
    """Image tokens Qwen2.5-VL gives a (width x height) image, from the processor's own
    resize rule, independently of smg_sdk.mllm."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

    ip = processor.image_processor
    h, w = smart_resize(height, width, factor=ip.patch_size * ip.merge_size,
                        min_pixels=ip.size["shortest_edge"], max_pixels=ip.size["longest_edge"])
    return (h // ip.patch_size) * (w // ip.patch_size) // ip.merge_size**2


# --- loading ----------------------------------------------------------------------------------


def test_loads_shipped_tiny_qwen(mllm):
    from transformers import Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor

    assert isinstance(mllm.model, Qwen2_5_VLForConditionalGeneration) and not mllm.model.training
    assert isinstance(mllm.processor, Qwen2_5_VLProcessor)
    assert (mllm.num_layers, mllm.hidden_size) == (9, 64)
    assert mllm.image_token_id == mllm.model.config.image_token_id
    assert mllm.every_nth_layer(3) == [3, 6, 9] and mllm.every_nth_layer(4) == [4, 8]


def test_one_instance_is_shared(mllm):
    assert load_mllm(tiny_qwen_vl_path()) is mllm
    assert load_mllm(str(tiny_qwen_vl_path())) is mllm
    private = load_mllm(tiny_qwen_vl_path(), reuse=False)
    assert private is not mllm and private.model is not mllm.model


def test_trust_remote_code_is_off_unless_asked(mllm):
    assert inspect.signature(load_mllm).parameters["trust_remote_code"].default is False
    assert mllm.config.trust_remote_code is False and mllm.config.local_files_only is True
    assert not getattr(mllm.model.config, "auto_map", None)  # stock transformers classes only


def test_loads_tiny_config_saved_to_temp_folder(tmp_path):
    """Save the tiny config (fresh seeded weights) + processor to a folder, load it back."""
    from transformers import AutoConfig, Qwen2_5_VLForConditionalGeneration

    config = AutoConfig.from_pretrained(tiny_qwen_vl_path(), local_files_only=True)
    torch.manual_seed(123)
    model = Qwen2_5_VLForConditionalGeneration(config)
    folder = tmp_path / "tiny-qwen"
    model.save_pretrained(folder)
    load_processor(tiny_qwen_vl_path()).save_pretrained(folder)
    assert not list(folder.glob("*.bin"))

    loaded = load_mllm(folder, torch_dtype="float32")
    assert loaded.config.path == str(folder.resolve()) and loaded.config.torch_dtype == "float32"
    assert (loaded.num_layers, loaded.hidden_size) == (config.text_config.num_hidden_layers, 64)
    expected = model.state_dict()
    for name, tensor in loaded.model.state_dict().items():
        assert torch.equal(tensor, expected[name]), name
    inputs = loaded.build_inputs("a dog", [make_image(0)])
    assert loaded.hidden_states(inputs, [0, -1]).shape == (2, 1, inputs.length, 64)


def test_missing_or_wrong_path_raises_model_load_error(tmp_path):
    with pytest.raises(ModelLoadError, match="No model folder"):
        load_mllm(tmp_path / "nope")
    with pytest.raises(ModelLoadError, match="No model folder"):
        load_mllm(str(tmp_path / "nope"))
    with pytest.raises(ModelLoadError, match="no config.json"):
        load_mllm(tmp_path)
    (tmp_path / "weights.safetensors").write_bytes(b"")
    with pytest.raises(ModelLoadError, match="is a file"):
        load_mllm(tmp_path / "weights.safetensors")
    with pytest.raises(ModelLoadError, match="Hugging Face cache"):
        load_mllm("smg-test/not-a-cached-repo")  # repo id, nothing in the HF cache, no download
    text_only = tmp_path / "bert"
    text_only.mkdir()
    (text_only / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(ModelLoadError, match="'bert' model, not an image-text model"):
        load_mllm(text_only)


# --- chat inputs ------------------------------------------------------------------------------


@settings(max_examples=6, deadline=None)
@given(sizes=st.lists(st.tuples(st.integers(8, 120), st.integers(8, 120)), min_size=1, max_size=3))
def test_image_tokens_are_tagged_with_their_subject(mllm, sizes):
    images = [make_image(i, 64).resize(size) for i, size in enumerate(sizes)]
    inputs = mllm.build_inputs(INSTRUCTION, images)
    ids = inputs.input_ids[0]
    assert inputs.modality.shape == inputs.subject.shape == ids.shape == (inputs.length,)
    assert inputs.modality.dtype == inputs.subject.dtype == torch.long

    image = inputs.modality == IMAGE_TOKEN
    assert torch.equal(image, ids == mllm.model.config.image_token_id)
    assert (inputs.subject[~image] == -1).all() and (inputs.modality[~image] == TEXT_TOKEN).all()
    expected = [_expected_tokens(w, h, mllm.processor) for w, h in sizes]
    assert inputs.tokens_per_image == expected
    assert [int((inputs.subject == k).sum()) for k in range(len(sizes))] == expected
    # each subject's tokens are one run, in picture order, between <|vision_start|> and <|vision_end|>
    start_id = mllm.model.config.vision_start_token_id
    end_id = mllm.model.config.vision_end_token_id
    for k in range(len(sizes)):
        where = (inputs.subject == k).nonzero().flatten()
        first, last = int(where[0]), int(where[-1])
        assert last - first + 1 == len(where)
        assert ids[first - 1] == start_id and ids[last + 1] == end_id
        label = mllm.tokenizer.decode(ids[first - 6 : first - 1])
        assert f"Picture {k + 1}:" in label
    assert torch.equal(inputs.subject[image], inputs.subject[image].sort().values)


def test_image_size_resizes_every_reference(mllm):
    images = [make_image(0, 64).resize((96, 24)), make_image(1, 64).resize((20, 40))]
    inputs = mllm.build_inputs(INSTRUCTION, images, image_size=32)
    assert inputs.tokens_per_image == [_expected_tokens(32, 32, mllm.processor)] * 2
    assert inputs.tensors["image_grid_thw"].tolist() == [[1, 4, 4], [1, 4, 4]]


@pytest.mark.parametrize("n_images", [0, 1, 3])
@pytest.mark.parametrize("system", [None, "You describe subjects for an image generator."])
def test_prefix_is_exactly_the_template_prefix(mllm, n_images, system):
    inputs = mllm.build_inputs(INSTRUCTION, [make_image(i) for i in range(n_images)], system=system,
                               add_generation_prompt=True)
    ids = inputs.input_ids[0].tolist()
    n = inputs.prefix_length
    prefix = mllm.tokenizer.decode(ids[:n])
    content = mllm.tokenizer.decode(ids[n:])
    assert prefix.endswith("<|im_start|>user\n") and prefix.startswith("<|im_start|>system\n")
    if system is not None:
        assert system in prefix
    for word in ("dog", "teapot", "beach", "Picture"):
        assert word not in prefix
    # the first token after the prefix starts the user content
    first = "Picture 1: " if n_images else INSTRUCTION
    assert content.startswith(first)
    assert ids[n] == mllm.tokenizer(first, add_special_tokens=False)["input_ids"][0]
    assert (inputs.modality[:n] == TEXT_TOKEN).all()
    # the prefix does not depend on the content or on the generation prompt
    other = mllm.build_inputs("x", [], system=system)
    assert other.prefix_length == n and other.input_ids[0, :n].tolist() == ids[:n]


def test_tokens_per_image_from_runs_without_a_patch_grid(mllm):
    """Processors that give no image grid: each run of image tokens is one image."""
    modality = torch.tensor([0, 1, 1, 1, 0, 0, 1, 0, 1, 1])
    assert mllm._tokens_per_image({}, modality, 3) == [3, 1, 2]
    assert mllm._tokens_per_image({}, torch.tensor([1, 1, 0]), 1) == [2]
    with pytest.raises(ConditionError):
        mllm._tokens_per_image({}, modality, 2)


def test_rejects_non_images(mllm):
    with pytest.raises(RequestError, match="PIL"):
        mllm.build_inputs("a dog", [torch.zeros(3, 8, 8)])
    with pytest.raises(RequestError, match="image_size"):
        mllm.build_inputs("a dog", [make_image(0)], image_size=0)


# --- hidden states ----------------------------------------------------------------------------


def test_hidden_states_shapes_and_indexing(mllm):
    inputs = mllm.build_inputs(INSTRUCTION, [make_image(0), make_image(1, 32)])
    L = inputs.length
    selected = mllm.hidden_states(inputs, [0, 3, 6, 9])
    assert selected.shape == (4, 1, L, mllm.hidden_size) and not selected.requires_grad
    every = mllm.hidden_states(inputs)
    assert every.shape == (mllm.num_layers + 1, 1, L, mllm.hidden_size)
    assert torch.equal(every[[0, 3, 6, 9]], selected)
    assert torch.equal(mllm.hidden_states(inputs, [-1])[0], every[-1])
    # 0 = embeddings: token embeddings at text positions
    text = inputs.modality == TEXT_TOKEN
    embedded = mllm.model.get_input_embeddings()(inputs.input_ids)
    assert torch.allclose(every[0, 0, text], embedded[0, text].detach())
    # num_layers = last layer after the final norm, as the LM head reads it
    with torch.no_grad():
        logits = mllm.model(**inputs.tensors).logits
    assert torch.allclose(mllm.model.lm_head(every[-1]), logits, atol=1e-5)


def test_hidden_states_keep_grad_when_asked(mllm):
    inputs = mllm.build_inputs("a dog", [make_image(0)])
    states = mllm.hidden_states(inputs, [3], grad=True)
    assert states.requires_grad
    states.sum().backward()
    assert mllm.model.get_input_embeddings().weight.grad is not None
    mllm.model.zero_grad(set_to_none=True)


def test_hidden_states_rejects_bad_layers(mllm):
    inputs = mllm.build_inputs("a dog", [])
    for layers in ([10], [-11], []):
        with pytest.raises(RequestError):
            mllm.hidden_states(inputs, layers)


# --- generation -------------------------------------------------------------------------------


def test_generate_is_reproducible(mllm):
    inputs = mllm.build_inputs("Describe the subject in Picture 1.", [make_image(3)], add_generation_prompt=True)
    state = torch.get_rng_state()
    first = mllm.generate(inputs, max_new_tokens=6, do_sample=True, temperature=1.0, seed=7)
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is left alone
    assert mllm.generate(inputs, max_new_tokens=6, do_sample=True, temperature=1.0, seed=7) == first
    assert mllm.generate(inputs, max_new_tokens=6, do_sample=True, seed=8) != first
    by_generator = [
        mllm.generate(inputs, max_new_tokens=6, do_sample=True, generator=torch.Generator().manual_seed(1))
        for _ in range(2)
    ]
    assert by_generator[0] == by_generator[1]
    assert len(first) == 1 and isinstance(first[0], str)
    greedy = mllm.generate(inputs, max_new_tokens=6)
    assert greedy == mllm.generate(inputs, max_new_tokens=6)
    with pytest.raises(RequestError):
        mllm.generate(inputs, seed=1, generator=torch.Generator())


def test_chat_inputs_move_and_cast(mllm):
    inputs = mllm.build_inputs("a dog", [make_image(0)])
    double = inputs.to("cpu", torch.float64)
    assert isinstance(double, ChatInputs) and double.tensors["pixel_values"].dtype == torch.float64
    assert double.tensors["input_ids"].dtype == torch.long and inputs.tensors["pixel_values"].dtype == torch.float32
    assert math.isclose(float(double.tensors["pixel_values"].sum()), float(inputs.tensors["pixel_values"].sum()),
                        rel_tol=1e-5)
    assert torch.equal(double.modality, inputs.modality) and double.prefix_length == inputs.prefix_length
