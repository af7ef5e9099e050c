"""Breast ultrasound classification: US image to P(malignant), with Grad-CAM saliency."""
