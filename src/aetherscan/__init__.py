"""AetherScan: photos (or a video) from several angles in, a coloured 3D point cloud, a mesh and
camera poses out."""

from aetherscan.engines.base import Engine, EngineError, Observer, Photo
from aetherscan.export import export_file, export_mesh_file
from aetherscan.mesh import Mesh, MeshError
from aetherscan.pipeline import reconstruct
from aetherscan.reconstruction import DroppedPhoto, PointCloud, Quality, Reconstruction, View
from aetherscan.settings import Settings

__all__ = [
    "DroppedPhoto",
    "Engine",
    "EngineError",
    "Mesh",
    "MeshError",
    "Observer",
    "Photo",
    "PointCloud",
    "Quality",
    "Reconstruction",
    "Settings",
    "View",
    "export_file",
    "export_mesh_file",
    "reconstruct",
]
__version__ = "0.1.0"
