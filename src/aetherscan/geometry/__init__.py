"""Cameras, focal estimation, PnP and similarity alignment: numpy/torch functions only."""
