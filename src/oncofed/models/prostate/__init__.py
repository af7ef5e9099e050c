"""Prostate biopsy grading on whole-slide images: tissue tiles, a tile encoder, gated-attention
multiple-instance aggregation, ISUP grade group 0-5 and cancer yes/no, attention heatmaps."""
