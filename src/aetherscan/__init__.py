"""AetherScan: photos from several angles in, a coloured 3D point cloud and camera poses out."""

from aetherscan.engines.base import Engine, EngineError, Observer, Photo
from aetherscan.export import export_file
from aetherscan.pipeline import reconstruct
from aetherscan.reconstruction import DroppedPhoto, PointCloud, Quality, Reconstruction, View
from aetherscan.settings import Settings

__all__ = [
    "DroppedPhoto",
    "Engine",
    "EngineError",
    "Observer",
    "Photo",
    "PointCloud",
    "Quality",
    "Reconstruction",
    "Settings",
    "View",
    "export_file",
    "reconstruct",
]
__version__ = "0.1.0"
