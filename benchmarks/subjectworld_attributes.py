"""Per-attribute reading of the tiny preset's one-subject outputs (what the oracle sees, before matching).

    python benchmarks/subjectworld_attributes.py

32 held-out one-subject requests (seed 0, the preset's default steps, the seeds `smg eval
subjectworld` uses). For the largest subject the oracle reads in each output: is anything
detected, is its shape the requested class, is its body colour the reference's or the class's
typical colour, is its pattern the reference's; and is the background the asked one. Chance is
1/8 for shape, 1/11 for body colour, 1/4 for pattern.
"""

import torch, numpy as np
torch.set_num_threads(1)
from smg_sdk import SubjectPipeline
from smg_sdk.data.subjectworld import SubjectWorld
from smg_sdk.data.subjectworld.identities import typical_identity
from smg_sdk.eval.oracle import Oracle
pipe = SubjectPipeline.from_preset("tiny"); pipe.set_progress_bar_config(disable=True)
o = Oracle(); w = SubjectWorld("heldout", "reference", 0, subjects=(1,), side=128)
stats = {k: [] for k in ("detected", "shape", "body_ref", "body_typical", "pattern_ref", "background")}
for i in range(32):
    s = w[i]; ident = s.identities[0]
    r = o.read(pipe(s.prompt, s.subjects(), seed=0 * 1_000_003 + i).images[0])
    stats["background"].append(r.background == s.scene.background)
    stats["detected"].append(len(r.subjects) > 0)
    d = r.subjects[0] if r.subjects else None
    stats["shape"].append(d is not None and d.shape == ident.shape)
    stats["body_ref"].append(d is not None and d.body == ident.body)
    stats["body_typical"].append(d is not None and d.body == typical_identity(ident.shape).body)
    stats["pattern_ref"].append(d is not None and d.pattern == ident.pattern)
print({k: round(float(np.mean(v)), 3) for k, v in stats.items()})
