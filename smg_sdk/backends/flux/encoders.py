"""The core's condition encoders: FLUX's own text encoders and VAE reference tokens."""

from __future__ import annotations

from typing import TYPE_CHECKING


from ...conditions import ConditionSet, ConditionStream
from ...contracts import StreamSpec
from ...errors import ConditionError
from ...interfaces import ConditionEncoder
from .positions import POLICIES, reference_ids, text_ids
from ...prompts import subject_char_spans, tokens_in_spans
from ...types import Request

if TYPE_CHECKING:  # pragma: no cover
    from .backend import FluxBackend


class FluxTextEncoder(ConditionEncoder):
    """FLUX's T5 tokens (stream ``prompt``) and CLIP pooled embedding (``t5=False``: pooled only).

    ``meta["subject_tokens"]["prompt"]`` maps each subject index to the T5 token positions
    of its class word, found through the tokenizer's offset mapping.
    """

    writes_meta = ("subject_tokens",)

    @property
    def makes_streams(self) -> tuple[StreamSpec, ...]:
        return (StreamSpec(self.stream_name, side="text"),) if self.t5 else ()  # t5=False: the pooled vector only

    def __init__(self, stream_name: str = "prompt", max_sequence_length: int | None = None, t5: bool = True):
        self.stream_name = stream_name
        self.max_sequence_length = max_sequence_length
        self.t5 = t5

    def encode(self, request: Request, backend: "FluxBackend") -> ConditionSet:
        if not self.t5:
            # Another encoder (an MLLM, say) carries the prompt; FLUX still needs CLIP's pooled vector.
            return ConditionSet([], pooled=backend.encode_pooled(request.text_prompt))
        enc = backend.encode_prompt(request.text_prompt, self.max_sequence_length)
        spans = subject_char_spans(request)
        subject_tokens = {k: tokens_in_spans(enc.offsets, s) for k, s in spans.items()} if enc.offsets else {}
        stream = ConditionStream(
            name=self.stream_name,
            tokens=enc.embeds,
            position_ids=text_ids(enc.embeds.shape[1]),
            side="text",
            meta={"input_ids": enc.input_ids, "offsets": enc.offsets, "text": enc.text},
        )
        return ConditionSet([stream], pooled=enc.pooled, meta={"subject_tokens": {self.stream_name: subject_tokens}})


class VAEReferenceEncoder(ConditionEncoder):
    """Each subject image through the backend's VAE, packed, as a reference stream ``ref<k>``.

    ``mode`` is ``"concat"`` or ``"cached"``; ``position`` one of ``omini``, ``kontext``,
    ``uno``; ``adapter`` a stream LoRA to route to these tokens; ``size`` the reference
    box (square side, default: the target's size). References keep their aspect ratio: each is
    fitted inside the box and padded to whole tokens (policy ``"fit-pad"``, see
    :mod:`smg_sdk.images`), so a non-square reference has a grid of its own.

    ``reference_scale`` (``1``, ``1/2``, ``1/3``, ``1/4``...: ``1/n`` for a whole ``n``) encodes
    each reference in a box ``n`` times smaller per side, ``n**2`` times fewer tokens, with its
    position ids multiplied by ``n`` so it spans the target's coordinate range (OminiControl2's
    compact token representation, position scaling; :mod:`.positions`). Works with both modes.
    Raises :class:`~smg_sdk.errors.ConditionError` for another value, and at encode time when
    the reduced box is not a whole number of tokens.
    """

    reads_prompt = False  # references depend only on the subject images
    makes_streams = (StreamSpec("{prefix}*", side="reference"),)
    writes_meta = ()

    def __init__(
        self,
        mode: str = "concat",
        position: str = "kontext",
        adapter: str | None = None,
        size: int | None = None,
        independent: bool = True,
        prefix: str = "ref",
        reference_scale: float = 1.0,
    ):
        if mode not in ("concat", "cached"):
            raise ConditionError(f"vae-reference mode must be 'concat' or 'cached', not {mode!r}.")
        if position not in POLICIES:
            raise ConditionError(f"vae-reference position must be one of {', '.join(POLICIES)}, not {position!r}.")
        if mode == "cached" and not independent:
            raise ConditionError("A cached reference must be independent (it attends only to itself).")
        self.mode, self.position, self.adapter = mode, position, adapter
        self.size, self.independent, self.prefix = size, independent, prefix
        reduction_factor(reference_scale)  # refuse a bad value now, not at the first request
        self.reference_scale = reference_scale

    @property
    def reduction(self) -> int:
        """``n`` of ``reference_scale = 1/n`` (read at each request, so a changed scale applies and is checked)."""
        return reduction_factor(self.reference_scale)

    def encode(self, request: Request, backend: "FluxBackend") -> ConditionSet:
        if not request.subjects:
            return ConditionSet()
        h = w = self.size
        if h is None:
            h, w = request.height, request.width
        h, w = self._reduced_box(h, w, backend.size_multiple)
        encode = getattr(backend, "encode_references", None) or backend.encode_images  # older backends: stretched
        encoded = encode([s.pil() for s in request.subjects], h, w)
        ids = reference_ids(self.position, backend.token_grid(request.height, request.width), [e.grid for e in encoded],
                            step=self.reduction)
        streams = [
            ConditionStream(
                name=f"{self.prefix}{k + 1}",
                tokens=e.tokens,
                position_ids=pos,
                side="reference",
                subject=k,
                adapter=self.adapter,
                independent=self.independent,
                mode=self.mode,  # type: ignore[arg-type]
            )
            for k, (e, pos) in enumerate(zip(encoded, ids))
        ]
        return ConditionSet(streams)

    def _reduced_box(self, height: int, width: int, multiple: int) -> tuple[int, int]:
        """The reference box ``height x width`` (px) at ``reference_scale``; ConditionError if not whole tokens."""
        n = self.reduction
        if n == 1:
            return height, width
        if height % (n * multiple) or width % (n * multiple):
            raise ConditionError(
                f"vae-reference reference_scale=1/{n} makes the {height}x{width} reference box "
                f"{height / n:g}x{width / n:g} px, not a multiple of {multiple} px (whole tokens); use a box whose "
                f"sides are multiples of {n * multiple} (size= or the request's size) or a larger reference_scale."
            )
        return height // n, width // n


def reduction_factor(reference_scale: float) -> int:
    """The whole ``n`` with ``reference_scale == 1/n``; ConditionError for any other value."""
    bad = isinstance(reference_scale, bool) or not isinstance(reference_scale, (int, float))
    n = round(1 / reference_scale) if not bad and 0 < reference_scale <= 1 else 0
    if n < 1 or abs(reference_scale * n - 1) > 1e-6:
        raise ConditionError(
            f"vae-reference reference_scale must be 1/n for a whole n (1, 0.5, 0.25, ...): the reference is "
            f"encoded at 1/n of its box side; got {reference_scale!r}."
        )
    return n
