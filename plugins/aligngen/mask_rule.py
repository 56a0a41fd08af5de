"""``aligngen-mask``: the selective cross-modal attention mask.

Text tokens other than S* and the concept tokens may not attend to reference tokens: the
prompt's context words ("on the beach") must not pull appearance from the reference, only
the subject's own tokens may. In multi-subject prompts each reference is *bound* to its
subject: subject k's S* and concept tokens see reference k and no other reference.
With ``symmetric`` the reverse direction is blocked too (reference queries may not attend
to those text keys); that only has an effect where references are queries, i.e. concat
references that are not independent. Rules can only block, so this composes with any other
rule (for instance the core's ``isolate-references``, which keeps references from attending
to each other).

A text stream without S* slots (a pipeline without ``aligngen-text``: the ablation without S*
and the DEM) exempts its concept tokens as the core's ``meta["subject_tokens"]`` names them (the
class word's tokens, which ``flux-text`` records), so the mask keeps its meaning there.
"""

from __future__ import annotations

from smg_sdk import AttentionRule, ConditionSet, JointAttentionMask, Request

from .slots import SLOTS_KEY, concept_slots, read_slots, slot_token_mask


class SelectiveCrossModalMask(AttentionRule):
    """Block text -> reference (and, ``symmetric``, reference -> text) except S*/concept tokens.

    ``text_streams``: which text streams the rule covers (None: every text-side stream; a
    stream without S* slots exempts the core's ``subject_tokens`` of it, else no token).
    ``bind_subjects``: exempt tokens of subject k only for references owned by subject k.
    """

    needs_streams = needs_meta = ()
    reads_meta = (SLOTS_KEY, "subject_tokens")  # S*/concept positions (else class-word positions): the exempt tokens

    def __init__(self, text_streams: list[str] | None = None, symmetric: bool = True, bind_subjects: bool = True):
        self.text_streams = None if text_streams is None else list(text_streams)
        self.symmetric = bool(symmetric)
        self.bind_subjects = bool(bind_subjects)

    def apply(self, mask: JointAttentionMask, conditions: ConditionSet, request: Request | None) -> None:
        groups = mask.layout.groups
        references = [g for g in groups if g.kind == "reference"]
        if not references:
            return
        texts = [g for g in groups if g.kind == "text" and (self.text_streams is None or g.name in self.text_streams)]
        for text in texts:
            slots = read_slots(conditions, text.name) or concept_slots(conditions, text.name)
            any_subject = slot_token_mask(slots, text.length)
            for ref in references:
                if self.bind_subjects and ref.subject is not None:
                    exempt = slot_token_mask(slots, text.length, subject=ref.subject)
                else:
                    exempt = any_subject
                blocked = ~exempt
                if not blocked.any():
                    continue
                mask.block(queries=text.name, keys=ref.name, query_tokens=blocked)
                if self.symmetric:
                    mask.block(queries=ref.name, keys=text.name, key_tokens=blocked)
