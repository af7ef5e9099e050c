"""Reference AI pipelines (breast ultrasound, prostate biopsy) and their shared training,
ONNX export and TEF packaging; needs the ``ai`` extra (torch)."""
