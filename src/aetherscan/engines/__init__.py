"""Engines: photos in, Reconstruction out."""
