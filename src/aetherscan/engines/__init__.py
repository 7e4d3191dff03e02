"""Engines: photos in, Reconstruction out. ``create_engine`` picks and builds one by name."""

from aetherscan.engines.base import Cancelled, Engine, EngineError, JobOptions, Observer, Photo
from aetherscan.engines.factory import create_engine, resolve_engine

__all__ = [
    "Cancelled",
    "Engine",
    "EngineError",
    "JobOptions",
    "Observer",
    "Photo",
    "create_engine",
    "resolve_engine",
]
