"""``aligngen-text``: FLUX's T5 + CLIP text encoding with S* before each concept word.

T5 runs on ``inputs_embeds``: the prompt with a marker token (an existing T5 special token,
``<extra_id_0>``) before each concept is tokenized as usual, and the marker's embedding is
swapped for the learnable S* embedding. CLIP has no spare token, so its ids get an existing
id inserted before each concept and its embedding swapped the same way (a forward hook on
CLIP's token-embedding layer, removed right after). The shared backend's tokenizers and
vocabularies are never changed. With S* set to the marker's own embedding, the output is
exactly ``backend.encode_prompt`` of the marked prompt.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Iterator

import torch
from torch import nn

from smg_sdk import ConditionEncoder, ConditionError, ConditionSet, ConditionStream, Request, StreamSpec

from .slots import SLOTS_KEY, slots_meta
from .sstar import LearnableToken
from .tokens import concept_spans, insert_before, locate_slots, mark_prompt, single_token_id

if TYPE_CHECKING:  # pragma: no cover
    from smg_sdk import FluxBackend


class AlignGenTextEncoder(nn.Module, ConditionEncoder):
    """T5 tokens with S* (stream ``stream_name``), CLIP pooled embedding, and S*/concept positions.

    ``t5_dim``/``clip_dim`` are the backend's T5 and CLIP widths (FLUX.1: 4096 and 768; the
    tiny preset: 32 and 32). ``init_word`` initialises S* from the mean embedding of that
    word's tokens (None: from the marker's own embedding). ``clip_token=False`` leaves CLIP
    on the plain prompt.
    """

    makes_streams = (StreamSpec("{stream_name}", side="text"),)
    writes_meta = (SLOTS_KEY, "subject_tokens")

    def __init__(
        self,
        stream_name: str = "prompt",
        marker: str = "<extra_id_0>",
        t5_dim: int = 4096,
        clip_dim: int = 768,
        clip_token: bool = True,
        init_word: str | None = "object",
        max_sequence_length: int | None = None,
    ):
        super().__init__()
        if not marker or not isinstance(marker, str):
            raise ConditionError(
                "aligngen-text needs a marker: one special token of the T5 vocabulary, e.g. '<extra_id_0>'."
            )
        self.stream_name = stream_name
        self.marker = marker
        self.clip_token = bool(clip_token)
        self.init_word = init_word
        self.max_sequence_length = max_sequence_length
        self.token = LearnableToken(int(t5_dim), int(clip_dim) if clip_token else 0)

    # ------------------------------------------------------------------ setup
    def _check_widths(self, backend: "FluxBackend") -> None:
        t5_width = int(backend.text_encoder_2.config.d_model)
        if self.token.t5.shape[0] != t5_width:
            raise ConditionError(
                f"aligngen-text was built with t5_dim={self.token.t5.shape[0]} but the backend's T5 is "
                f"{t5_width} wide; build it with t5_dim={t5_width}."
            )
        if self.token.clip is not None:
            clip_width = int(backend.text_encoder.config.hidden_size)
            if self.token.clip.shape[0] != clip_width:
                raise ConditionError(
                    f"aligngen-text was built with clip_dim={self.token.clip.shape[0]} but the backend's CLIP is "
                    f"{clip_width} wide; build it with clip_dim={clip_width} (or clip_token=False)."
                )

    @torch.no_grad()
    def _initialize(self, backend: "FluxBackend") -> None:
        def mean_embedding(tokenizer, model, fallback: int) -> torch.Tensor:
            ids = tokenizer(self.init_word, add_special_tokens=False)["input_ids"] if self.init_word else []
            ids = [i for i in ids if i not in tokenizer.all_special_ids] or [fallback]
            table = model.get_input_embeddings().weight
            return table[torch.tensor(ids, device=table.device)].float().mean(0)

        marker_id = single_token_id(backend.tokenizer_2, self.marker)
        t5 = mean_embedding(backend.tokenizer_2, backend.text_encoder_2, marker_id)
        clip = None
        if self.token.clip is not None:
            clip = mean_embedding(backend.tokenizer, backend.text_encoder, backend.tokenizer.bos_token_id)
        self.token.initialize(t5, clip)

    def ensure_initialized(self, backend: "FluxBackend") -> None:
        """Set S* from ``init_word``'s embedding now, unless it is set (saved weights carry the flag).

        Training calls it before a checkpoint is restored into S*, so the first encoding does not
        overwrite the restored values. Raises :class:`ConditionError` if the widths do not match."""
        self._check_widths(backend)
        if not self.token.is_initialized:
            self._initialize(backend)

    # ------------------------------------------------------------------ encoding
    def encode(self, request: Request, backend: "FluxBackend") -> ConditionSet:
        self.ensure_initialized(backend)
        marked = mark_prompt(request, self.marker)
        tokenizer = backend.tokenizer_2
        marker_id = single_token_id(tokenizer, self.marker)
        length = self.max_sequence_length or backend.max_sequence_length
        enc = tokenizer(marked.text, padding="max_length", max_length=length, truncation=True,
                        return_offsets_mapping=True)
        ids = list(enc["input_ids"])
        offsets = [tuple(o) for o in enc["offset_mapping"]]
        slots = locate_slots(marked, ids, offsets, marker_id)

        t5 = backend.text_encoder_2
        ids_t = torch.tensor([ids], device=t5.device)
        embeds = t5.get_input_embeddings()(ids_t)
        embeds = LearnableToken.substitute(embeds, [s.sstar for s in slots], self.token.t5)
        hidden = t5(inputs_embeds=embeds, output_hidden_states=False)[0].to(t5.dtype)

        stream = ConditionStream(
            name=self.stream_name,
            tokens=hidden,
            position_ids=backend.text_position_ids(hidden.shape[1]),
            side="text",
            meta={"input_ids": torch.tensor(ids), "offsets": offsets, "text": marked.text, "marker_id": marker_id},
        )
        return ConditionSet([stream], pooled=self.pooled(request, backend), meta=slots_meta(self.stream_name, slots))

    def clip_ids(self, request: Request, backend: "FluxBackend") -> tuple[list[int], list[int]]:
        """CLIP input ids (as FluxPipeline pads them) and the S* positions in them."""
        tokenizer = backend.tokenizer
        max_length = int(tokenizer.model_max_length)
        enc = tokenizer(request.text_prompt, truncation=False, return_offsets_mapping=True)
        ids, offsets = list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]
        positions: list[int] = []
        if self.token.clip is not None:
            spans = [span for _, span in concept_spans(request)]
            ids, positions = insert_before(ids, offsets, spans, tokenizer.bos_token_id)
        if len(ids) > max_length:
            ids = ids[: max_length - 1] + [tokenizer.eos_token_id]
            positions = [p for p in positions if p < max_length - 1]
        ids = ids + [tokenizer.pad_token_id] * (max_length - len(ids))
        return ids, positions

    def pooled(self, request: Request, backend: "FluxBackend") -> torch.Tensor:
        """CLIP's pooled embedding of the prompt, with S* before each concept when ``clip_token``."""
        ids, positions = self.clip_ids(request, backend)
        clip = backend.text_encoder
        with self._clip_sstar(clip, positions):
            out = clip(torch.tensor([ids], device=clip.device), output_hidden_states=False)
        return out.pooler_output.to(clip.dtype)

    @contextmanager
    def _clip_sstar(self, clip: nn.Module, positions: list[int]) -> Iterator[None]:
        if not positions or self.token.clip is None:
            yield
            return
        value = self.token.clip

        def swap(_module, _inputs, output):
            return LearnableToken.substitute(output, positions, value)

        handle = clip.get_input_embeddings().register_forward_hook(swap)
        try:
            yield
        finally:
            handle.remove()
