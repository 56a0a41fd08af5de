"""A small training run for tests/test_multiprocess_training.py, run as ``python`` or under ``accelerate launch``.

It trains the tiny FLUX's subject adapter with :class:`FlowMatchingTrainer` and writes, per
process, ``<out>/result-<rank>.json``: the step losses, how many checkpoints this process wrote
(``save_checkpoint`` is counted, not replaced) and the summed gradient of step 0
(``<out>/grad-<rank>.safetensors``), so the test can compare runs with 1 and 2 processes, and
the seconds ``train()`` took (``benchmarks/scaling.py`` reads them).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ for conftest.make_image
from conftest import make_image  # noqa: E402

from smg_sdk import Subject  # noqa: E402
from smg_sdk.backends.flux import FluxBackend  # noqa: E402
from smg_sdk.backends.flux.encoders import FluxTextEncoder, VAEReferenceEncoder  # noqa: E402
from smg_sdk.pipeline import SubjectPipeline  # noqa: E402
from smg_sdk.presets.tiny import tiny_flux_path  # noqa: E402
from smg_sdk.training import FlowMatchingTrainer, TrainerConfig, TrainingSample, adapter_parameters  # noqa: E402
from smg_sdk.training import loop as loop_module  # noqa: E402  (the training loop calls save_checkpoint)
from smg_sdk.training.distributed import sum_gradients  # noqa: E402

PROMPTS = ["a photo of <1> on grass", "<1> on sand", "a small <1> in snow", "<1> under a blue sky"]


def build(out: Path, steps: int, batch_size: int, perturb: bool = False) -> FlowMatchingTrainer:
    """The run every process builds identically (seeded adapter init, fixed data); with ``perturb``,
    processes other than the main one start from other adapter weights (the trainer must replace them)."""
    from accelerate import PartialState

    backend = FluxBackend.from_pretrained(tiny_flux_path(), max_sequence_length=32)
    torch.manual_seed(0)
    backend.add_stream_adapter("subject", rank=4, init_lora_weights="gaussian")
    if perturb and PartialState(cpu=True).process_index > 0:
        with torch.no_grad():
            for p in adapter_parameters(backend.transformer, "subject").values():
                p.add_(torch.randn_like(p))
    pipe = SubjectPipeline(backend, [FluxTextEncoder(), VAEReferenceEncoder(mode="concat", adapter="subject")])
    data = [TrainingSample([Subject(make_image(i), "dog")], PROMPTS[i % 4], make_image(10 + i)) for i in range(6)]
    config = TrainerConfig(output_dir=str(out / "checkpoints"), max_steps=steps, batch_size=batch_size,
                           learning_rate=5e-3, checkpoint_every=2, progress=False)
    return FlowMatchingTrainer(pipe, adapter_parameters(backend.transformer, "subject"), data, config)


def step0_gradient(trainer: FlowMatchingTrainer) -> dict[str, torch.Tensor]:
    """The gradient of step 0's global-batch loss, summed over processes as a training step does."""
    loss = trainer.batch_loss(0)
    trainer.accelerator.backward(loss)
    sum_gradients(trainer.trainable.values(), trainer.accelerator.num_processes)
    grads = {name: p.grad.detach().clone() for name, p in trainer.trainable.items()}
    trainer.optimizer.zero_grad(set_to_none=True)
    return grads


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--perturb", action="store_true", help="other processes start from other weights")
    args = parser.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    trainer = build(out, args.steps, args.batch_size, args.perturb)
    rank = trainer.accelerator.process_index
    writes: list[int] = []
    original = loop_module.save_checkpoint

    def counted(root, step, *rest):
        writes.append(step)
        return original(root, step, *rest)

    loop_module.save_checkpoint = counted
    grads = step0_gradient(trainer)
    began = time.perf_counter()
    result = trainer.train(resume=True)
    seconds = time.perf_counter() - began
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in grads.items()}, str(out / f"grad-{rank}.safetensors"))
    record = {"rank": rank, "processes": trainer.accelerator.num_processes, "losses": result.losses,
              "checkpoints_written": writes, "last_step": result.last_step, "train_seconds": seconds}
    (out / f"result-{rank}.json").write_text(json.dumps(record))
    trainer.accelerator.wait_for_everyone()
    trainer.accelerator.end_training()


if __name__ == "__main__":
    main()
