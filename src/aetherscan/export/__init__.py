"""Exports: Reconstruction to PLY, GLB, COLMAP model, transforms.json, cameras.json."""
