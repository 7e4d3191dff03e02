"""The one change of axes between AetherScan's OpenCV cameras and OpenGL / glTF / NeRF tools.

AetherScan cameras use OpenCV axes (x right, y down, z forward). OpenGL, glTF, three.js,
nerfstudio and instant-ngp cameras use x right, y up, z backward (the camera looks down -z).
The two differ by ``FLIP_YZ``, a rotation of 180 degrees about x, which is its own inverse.
"""

from __future__ import annotations

import numpy as np

FLIP_YZ = np.diag([1.0, -1.0, -1.0, 1.0])


def opencv_to_opengl(cam_from_world: np.ndarray) -> np.ndarray:
    """The camera-to-world pose with OpenGL camera axes, in the same world frame.

    Takes ``cam_from_world`` (4x4, OpenCV axes) and returns ``world_from_cam`` whose camera
    axes are x right, y up, z backward: the ``transform_matrix`` of nerfstudio and instant-ngp,
    and the matrix of a glTF camera node.
    """
    if cam_from_world.shape != (4, 4):
        raise ValueError(f"expected a 4x4 cam_from_world, got shape {cam_from_world.shape}")
    return np.linalg.inv(cam_from_world) @ FLIP_YZ
