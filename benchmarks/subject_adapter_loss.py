"""Does the shipped subject adapter use the references? Flow-matching loss on held-out pairs, in one run.

    python benchmarks/subject_adapter_loss.py

48 held-out one-subject reference -> target pairs (SubjectWorld seed 3), fixed noise and levels
(`FlowMatchingTrainer.evaluate`), 128 px, guidance 3.5. Rows: the shipped base without an adapter
(references concatenated as the preset does, a zero LoRA) and with the shipped adapter; columns:
with the references, and with the caption alone (class words, no references: the text prior).
An adapter that carries identity brings "with references" well below "caption only".
"""

import torch, tempfile
torch.set_num_threads(1)
from smg_sdk.backends.flux.recipes import _load_backend
from smg_sdk.backends.flux.plugin import tiny_pipeline
from smg_sdk.data.subjectworld import SubjectWorld
from smg_sdk.training import TrainingSample
from smg_sdk.training.trainer import FlowMatchingTrainer, TrainerConfig, adapter_parameters
from smg_sdk.presets.tiny import tiny_flux_path, tiny_subject_lora_path
w = SubjectWorld("heldout", "reference", 3, subjects=(1,))
samples = [w[i].training_sample() for i in range(48)]
textonly = [TrainingSample([], w[i].caption, w[i].target) for i in range(48)]
for name, lora in (("no adapter", None), ("adapter", tiny_subject_lora_path())):
    b = _load_backend(tiny_flux_path())
    if lora: b.load_stream_adapter("subject", lora)
    else: b.add_stream_adapter("subject", rank=4, init_lora_weights=True)  # B = 0: the base alone
    pipe = tiny_pipeline(b, adapter="subject")
    t = FlowMatchingTrainer(pipe, adapter_parameters(b.transformer, "subject"), samples,
                            TrainerConfig(tempfile.mkdtemp(), height=128, width=128, guidance_scale=3.5, progress=False))
    print(name, "with references", round(t.evaluate(samples), 4), "| caption only", round(t.evaluate(textonly), 4))
