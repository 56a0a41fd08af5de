"""Data: the SubjectWorld procedural world (``smg_sdk.data.subjectworld``)."""
