"""Rotations and the pinhole camera shared by sampling, physics, rendering and export.

Quaternions are ``(x, y, z, w)`` as in PyBullet. The camera looks horizontally along +x from its
position with +z up (the authors' ``euler=(90°, 0, 270°)`` Kubric camera). Image conventions follow
OpenCV: pixel ``(u, v)`` with u to the right and v down, the centre of pixel ``(i, j)`` (row, column)
at ``(j + 0.5, i + 0.5)``; camera axes x right, y down, z forward. ``extrinsics`` is the 4×4
world-to-camera matrix ``[R | −R c]`` in that convention, ``intrinsics`` is K in pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

# world -> OpenCV camera rotation for a camera looking along +x with +z up: right = -y, down = -z, fwd = +x
_R_WORLD_TO_CV = np.array([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])


def quat_to_matrix(q: Any) -> np.ndarray:
    """3×3 rotation matrix of a unit quaternion ``(x, y, z, w)``."""
    x, y, z, w = (float(v) for v in q)
    n = math.sqrt(x * x + y * y + z * z + w * w)
    x, y, z, w = x / n, y / n, z / n, w / n
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def random_quaternion(rng: np.random.Generator) -> tuple[float, float, float, float]:
    """Uniformly random rotation (Shoemake's method), ``(x, y, z, w)``."""
    u1, u2, u3 = rng.random(3)
    a, b = math.sqrt(1 - u1), math.sqrt(u1)
    return (a * math.sin(2 * math.pi * u2), a * math.cos(2 * math.pi * u2),
            b * math.sin(2 * math.pi * u3), b * math.cos(2 * math.pi * u3))


def yaw_quaternion(angle: float) -> tuple[float, float, float, float]:
    """Rotation by ``angle`` radians about +z."""
    return (0.0, 0.0, math.sin(angle / 2), math.cos(angle / 2))


def rotated_half_extents(half: Any, q: Any) -> np.ndarray:
    """Half extents of the world AABB of a box with local ``half`` extents rotated by ``q``."""
    return np.abs(quat_to_matrix(q)) @ np.asarray(half, dtype=np.float64)


@dataclass(frozen=True)
class Camera:
    """A square pinhole camera looking along +x (focal length and sensor width in mm)."""

    position: tuple[float, float, float]
    focal_length_mm: float = 35.0
    sensor_width_mm: float = 32.0
    resolution: int = 256
    near: float = 0.05
    far: float = 100.0

    @property
    def focal_px(self) -> float:
        return self.focal_length_mm / self.sensor_width_mm * self.resolution

    @property
    def fov_deg(self) -> float:
        return math.degrees(2 * math.atan(self.sensor_width_mm / (2 * self.focal_length_mm)))

    @property
    def target(self) -> tuple[float, float, float]:
        x, y, z = self.position
        return (x + 1.0, y, z)

    @property
    def intrinsics(self) -> np.ndarray:
        f, c = self.focal_px, self.resolution / 2
        return np.array([[f, 0.0, c], [0.0, f, c], [0.0, 0.0, 1.0]])

    @property
    def rotation(self) -> np.ndarray:
        """World-to-camera rotation (OpenCV axes)."""
        return _R_WORLD_TO_CV.copy()

    @property
    def extrinsics(self) -> np.ndarray:
        """World-to-camera 4×4 ``[R | −R c]`` (OpenCV: x right, y down, z forward)."""
        m = np.eye(4)
        m[:3, :3] = _R_WORLD_TO_CV
        m[:3, 3] = -_R_WORLD_TO_CV @ np.asarray(self.position)
        return m

    def to_camera(self, points: Any) -> np.ndarray:
        """World points ``[..., 3]`` in camera coordinates (z = metric depth along the view axis)."""
        p = np.asarray(points, dtype=np.float64)
        return (p - np.asarray(self.position)) @ _R_WORLD_TO_CV.T

    def project(self, points: Any) -> tuple[np.ndarray, np.ndarray]:
        """Pixel coordinates ``[..., 2]`` (u, v) and depth ``[...]`` of world points."""
        pc = self.to_camera(points)
        z = pc[..., 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            uv = self.focal_px * pc[..., :2] / z[..., None] + self.resolution / 2
        return uv, z

    def pixel_rays(self) -> np.ndarray:
        """World directions ``[H, W, 3]`` through the pixel centres, scaled to unit camera-z: the point seen at
        z-depth ``z`` is ``position + z · ray``, at distance ``z · |ray|`` from the camera centre."""
        c = np.arange(self.resolution) + 0.5 - self.resolution / 2
        x, y = np.meshgrid(c / self.focal_px, c / self.focal_px)
        cam = np.stack([x, y, np.ones_like(x)], axis=-1)
        return cam @ _R_WORLD_TO_CV

    def z_to_distance(self, z: Any) -> np.ndarray:
        """z-depth ``[..., H, W]`` (along the optical axis) → distance to the camera centre, as Kubric's
        ``depth`` pass (``camera.z_to_depth``)."""
        return (np.asarray(z) * np.linalg.norm(self.pixel_rays(), axis=-1)).astype(np.float32)

    def sees(self, points: Any) -> bool:
        """Whether every point is in front of the near plane and inside the image."""
        uv, z = self.project(points)
        return bool(np.all(z > self.near) and np.all((uv >= 0) & (uv < self.resolution)))

    def moved_back(self, distance: float) -> Camera:
        x, y, z = self.position
        return Camera((x - distance, y, z), self.focal_length_mm, self.sensor_width_mm, self.resolution,
                      self.near, self.far)

    def to_dict(self) -> dict[str, Any]:
        return {
            "position": list(self.position), "look_at": list(self.target), "up": [0.0, 0.0, 1.0],
            "focal_length_mm": self.focal_length_mm, "sensor_width_mm": self.sensor_width_mm,
            "fov_deg": self.fov_deg, "width": self.resolution, "height": self.resolution,
            "near": self.near, "far": self.far,
            "intrinsics": self.intrinsics.tolist(), "extrinsics": self.extrinsics.tolist(),
            "convention": "OpenCV: extrinsics maps world to camera (x right, y down, z forward); "
                          "intrinsics in pixels, pixel (row i, col j) centred at (j+0.5, i+0.5); "
                          "world z up, metres",
        }


def box_corners(centre: Any, half: Any) -> np.ndarray:
    """The 8 corners ``[8, 3]`` of an axis-aligned box."""
    c, h = np.asarray(centre, dtype=np.float64), np.asarray(half, dtype=np.float64)
    signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], dtype=np.float64)
    return c + signs * h


__all__ = ["Camera", "quat_to_matrix", "random_quaternion", "yaw_quaternion", "rotated_half_extents",
           "box_corners"]
