"""The MLLM condition encoder: instruction and reference images read jointly by an MLLM.

One chat message interleaves the references with the instruction ("Picture 1: <image>
Picture 2: <image> ... instruction"), runs the MLLM with hidden states, drops the chat
template's prefix tokens, and emits a raw stream of every selected layer's hidden states
plus per-token modality (text/image) and owning subject. An aggregator (``dla``...) turns it
into a FLUX text-side stream.
"""

from __future__ import annotations

import re
from typing import Any

import torch

from smg_sdk import ConditionEncoder, ConditionError, ConditionSet, ConditionStream, PLACEHOLDER, Request, StreamSpec

from .streams import RAW_STREAM


def instruction_text(request: Request) -> str:
    """The prompt with ``<k>`` rewritten to point at the picture: "the dog from Picture 1"."""

    def name(match: re.Match[str]) -> str:
        k = int(match.group(1))
        word = request.subjects[k - 1].class_word or "subject"
        return f"the {word} from Picture {k}"

    return PLACEHOLDER.sub(name, request.prompt)


def selected_layers(num_layers: int, stride: int) -> list[int]:
    """Every ``stride``-th decoder layer output (1-based hidden-state indices), always with the last."""
    if stride < 1:
        raise ConditionError(f"layer_stride must be >= 1, got {stride}.")
    layers = list(range(stride, num_layers + 1, stride))
    if not layers or layers[-1] != num_layers:
        layers.append(num_layers)
    return layers


class MLLMConditionEncoder(ConditionEncoder):
    """``squeeze-mllm``: raw multi-layer MLLM features of instruction + reference images.

    ``model`` is a local MLLM folder (Qwen2.5-VL class) or ``"tiny"`` for the embedded one;
    ``layer_stride`` picks every n-th layer (default 3, as in the paper); ``image_size`` is the
    side the references are resized to before the MLLM sees them. ``dtype`` (``"bfloat16"``,
    ``"float16"``, ``"float32"``) and ``device`` (``"cuda"``, ``"cuda:1"``...) say how and where
    the MLLM loads; left None, an MLLM already loaded for the same folder with
    :func:`smg_sdk.load_mllm` is used as it is, else it loads in its checkpoint dtype on the CPU.
    The features it hands on are always cast to the backend's dtype and moved to its device.
    """

    makes_streams = (StreamSpec("{stream}", side="raw"),)
    writes_meta = ()

    def __init__(self, model: str = "tiny", layer_stride: int = 3, image_size: int = 448,
                 trust_remote_code: bool = False, stream: str = RAW_STREAM, dtype: str | None = None,
                 device: str | None = None):
        if dtype is not None and not isinstance(getattr(torch, str(dtype).removeprefix("torch."), None), torch.dtype):
            raise ConditionError(f"squeeze-mllm dtype must be a torch dtype name such as 'bfloat16', not {dtype!r}.")
        self.model = model
        self.dtype, self.device = dtype, device
        self.layer_stride = layer_stride
        self.image_size = image_size
        self.trust_remote_code = trust_remote_code
        self.stream = stream
        self._mllm = None

    @property
    def mllm(self):
        if self._mllm is None:
            from smg_sdk import load_mllm

            path = self.model
            if path == "tiny":
                from smg_sdk import tiny_qwen_vl_path

                path = tiny_qwen_vl_path()
            self._mllm = load_mllm(path, dtype=self.dtype, device=self.device, trust_remote_code=self.trust_remote_code)
        return self._mllm

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "MLLMConditionEncoder":
        """Move (and load, if not yet loaded) the MLLM; called by ``SubjectPipeline.to``."""
        self.mllm.to(device=device, dtype=dtype)
        return self

    @property
    def layers(self) -> list[int]:
        return selected_layers(self.mllm.num_layers, self.layer_stride)

    def encode(self, request: Request, backend: Any) -> ConditionSet:
        mllm = self.mllm
        images = [s.pil() for s in request.subjects]
        inputs = mllm.build_inputs(instruction_text(request), images, image_size=self.image_size)
        layers = self.layers
        hidden = mllm.hidden_states(inputs, layers=layers)  # (S, B, L, D)
        start = inputs.prefix_length
        features = hidden.permute(1, 0, 2, 3)[:, :, start:].to(backend.device, backend.dtype)
        modality = inputs.modality[start:].clone()
        subject = inputs.subject[start:].clone()
        stream = ConditionStream(
            name=self.stream,
            tokens=features,
            position_ids=torch.zeros(features.shape[2], 3),
            side="raw",
            meta={"modality": modality, "subject": subject, "layers": layers},
        )
        return ConditionSet([stream])
