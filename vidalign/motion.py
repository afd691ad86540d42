"""HumanML3D motion: 263-dim features ↔ joints, motion tokens as text, and a fast stick-figure renderer.

Feature layout per frame (HumanML3D, 22 joints, 20 fps), as MotionGPT and AToM store it:
``[0]`` root yaw velocity (a *half* angle per frame, the quaternion convention of the reference code),
``[1:3]`` root x/z velocity in the root's own frame, ``[3]`` root height, ``[4:67]`` the 21 non-root joints
relative to the root's x/z and rotated into its facing frame (ric), ``[67:193]`` 6D joint rotations,
``[193:259]`` local joint velocities, ``[259:263]`` foot contacts. :func:`features_to_joints` follows the
reference ``recover_from_ric`` exactly: integrate the yaw velocity (first frame faces +z), rotate the root
velocity by the inverse root rotation and integrate it, take the height as is, rotate the ric joints back and
add the root's x/z. Coordinates are metres, y up. The renderer draws the SMPL 22-joint chain with PIL (no
matplotlib, no 3D backend), so thousands of clips can be rendered for a judge in minutes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from vidalign.errors import InputError, require

FEATURE_DIM = 263
NUM_JOINTS = 22
FPS = 20.0
MIN_FRAMES = 40
MAX_FRAMES = 196
CODEBOOK_SIZE = 512  # MotionGPT's VQ-VAE; tokens 512 / 513 / 514 are start / end / mask

JOINT_NAMES = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2", "left_ankle",
    "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar", "right_collar", "head",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
)
# HumanML3D's t2m_kinematic_chain: right leg, left leg, spine to head, right arm, left arm
KINEMATIC_CHAIN = ((0, 2, 5, 8, 11), (0, 1, 4, 7, 10), (0, 3, 6, 9, 12, 15), (9, 14, 17, 19, 21), (9, 13, 16, 18, 20))
FACE_JOINTS = (2, 1, 17, 16)  # right hip, left hip, right shoulder, left shoulder
FEET_LEFT, FEET_RIGHT = (7, 10), (8, 11)
RIC = slice(4, 4 + (NUM_JOINTS - 1) * 3)
ROT6D = slice(RIC.stop, RIC.stop + (NUM_JOINTS - 1) * 6)
LOCAL_VEL = slice(ROT6D.stop, ROT6D.stop + NUM_JOINTS * 3)
CONTACTS = slice(LOCAL_VEL.stop, LOCAL_VEL.stop + 4)

# A rest pose in metres (facing +z, the body's left on +x, feet on y=0), used by the synthetic motions
REST_POSE = np.array([
    [0.0, 0.93, 0.0], [0.09, 0.84, 0.0], [-0.09, 0.84, 0.0], [0.0, 1.04, 0.0], [0.10, 0.47, 0.0],
    [-0.10, 0.47, 0.0], [0.0, 1.17, 0.0], [0.10, 0.08, 0.0], [-0.10, 0.08, 0.0], [0.0, 1.22, 0.0],
    [0.10, 0.02, 0.12], [-0.10, 0.02, 0.12], [0.0, 1.44, 0.0], [0.08, 1.36, 0.0], [-0.08, 1.36, 0.0],
    [0.0, 1.60, 0.04], [0.18, 1.38, 0.0], [-0.18, 1.38, 0.0], [0.20, 1.12, 0.0], [-0.20, 1.12, 0.0],
    [0.21, 0.88, 0.0], [-0.21, 0.88, 0.0],
])


# ---------------------------------------------------------------------------------------------- quaternions
def qinv(q: np.ndarray) -> np.ndarray:
    """Inverse of unit quaternions ``[..., 4]`` (w, x, y, z)."""
    return q * np.array([1.0, -1.0, -1.0, -1.0], dtype=q.dtype)


def qmul(q: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Hamilton product ``q ⊗ r`` of quaternions ``[..., 4]``."""
    w0, x0, y0, z0 = np.moveaxis(q, -1, 0)
    w1, x1, y1, z1 = np.moveaxis(r, -1, 0)
    return np.stack([w0 * w1 - x0 * x1 - y0 * y1 - z0 * z1, w0 * x1 + x0 * w1 + y0 * z1 - z0 * y1,
                     w0 * y1 - x0 * z1 + y0 * w1 + z0 * x1, w0 * z1 + x0 * y1 - y0 * x1 + z0 * w1], axis=-1)


def qrot(q: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Rotate vectors ``v [..., 3]`` by unit quaternions ``q [..., 4]`` (broadcasting)."""
    qv = q[..., 1:]
    uv = np.cross(qv, v)
    return v + 2.0 * (q[..., :1] * uv + np.cross(qv, uv))


def yaw_quat(half_angle: np.ndarray) -> np.ndarray:
    """``(cos a, 0, sin a, 0)``: the y-axis rotation by ``2a`` that HumanML3D stores as root rotation."""
    a = np.asarray(half_angle, dtype=np.float64)
    q = np.zeros(a.shape + (4,))
    q[..., 0], q[..., 2] = np.cos(a), np.sin(a)
    return q


# ---------------------------------------------------------------------------------------- features → joints
def recover_root_rot_pos(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Root rotation quaternions ``[T, 4]`` and root positions ``[T, 3]`` from features ``[T, ≥4]``."""
    data = np.asarray(features, dtype=np.float64)
    ang = np.zeros(data.shape[:-1])
    ang[..., 1:] = data[..., :-1, 0]
    ang = np.cumsum(ang, axis=-1)
    r_rot = yaw_quat(ang)
    r_pos = np.zeros(data.shape[:-1] + (3,))
    r_pos[..., 1:, 0] = data[..., :-1, 1]
    r_pos[..., 1:, 2] = data[..., :-1, 2]
    r_pos = np.cumsum(qrot(qinv(r_rot), r_pos), axis=-2)
    r_pos[..., 1] = data[..., 3]
    return r_rot, r_pos


def features_to_joints(features: np.ndarray, mean: np.ndarray | None = None,
                       std: np.ndarray | None = None) -> np.ndarray:
    """World joint positions ``float32 [T, 22, 3]`` from HumanML3D features ``[T, 263]``.

    Pass the dataset's ``Mean.npy``/``Std.npy`` when the features are normalised (a model's raw output).
    """
    data = np.asarray(features, dtype=np.float64)
    if std is not None:
        data = data * np.asarray(std, dtype=np.float64)
    if mean is not None:
        data = data + np.asarray(mean, dtype=np.float64)
    r_rot, r_pos = recover_root_rot_pos(data)
    ric = data[..., RIC].reshape(data.shape[:-1] + (NUM_JOINTS - 1, 3))
    joints = qrot(qinv(r_rot)[..., None, :], ric)
    joints[..., 0] += r_pos[..., None, 0]
    joints[..., 2] += r_pos[..., None, 2]
    return np.concatenate([r_pos[..., None, :], joints], axis=-2).astype(np.float32)


# ---------------------------------------------------------------------------------------- joints → features
def facing_angles(joints: np.ndarray, smooth_sigma: float = 0.0) -> np.ndarray:
    """Heading ``φ`` per frame (radians from +z towards +x) from hips and shoulders, unwrapped."""
    j = np.asarray(joints, dtype=np.float64)
    r_hip, l_hip, r_sdr, l_sdr = FACE_JOINTS
    across = (j[:, r_hip] - j[:, l_hip]) + (j[:, r_sdr] - j[:, l_sdr])
    forward = np.cross(np.array([0.0, 1.0, 0.0]), across)
    if smooth_sigma > 0:
        from scipy.ndimage import gaussian_filter1d

        forward = gaussian_filter1d(forward, smooth_sigma, axis=0, mode="nearest")
    return np.unwrap(np.arctan2(forward[:, 0], forward[:, 2]))


def canonical_joints(joints: np.ndarray, smooth_sigma: float = 0.0) -> np.ndarray:
    """The motion on the floor (min y = 0), root at the x/z origin and facing +z at frame 0, as HumanML3D
    stores it: what :func:`features_to_joints` returns for :func:`joints_to_features` output."""
    return _canonical(joints, smooth_sigma)[0].astype(np.float32)


def _canonical(joints: np.ndarray, smooth_sigma: float) -> tuple[np.ndarray, np.ndarray]:
    j = np.asarray(joints, dtype=np.float64).copy()
    require(j.ndim == 3 and j.shape[1:] == (NUM_JOINTS, 3) and j.shape[0] >= 2, "joints_to_features",
            "joints", j.shape, "pass world joint positions shaped [T>=2, 22, 3]")
    j[..., 1] -= j[..., 1].min()
    j[..., 0] -= j[0, 0, 0]
    j[..., 2] -= j[0, 0, 2]
    phi = facing_angles(j, smooth_sigma)
    j = qrot(yaw_quat(np.full(j.shape[:2], -phi[0] / 2)), j)  # frame 0 faces +z
    return j, phi - phi[0]


def joints_to_features(joints: np.ndarray, smooth_sigma: float = 0.0, feet_threshold: float = 0.002) -> np.ndarray:
    """HumanML3D features ``float32 [T-1, 263]`` from world joints ``[T, 22, 3]`` (for synthetic motions).

    The motion is first put on the floor, moved to the origin and turned to face +z, as HumanML3D does, so
    ``features_to_joints(joints_to_features(j))`` equals that canonical motion minus its last frame. The
    position blocks (root, ric, local velocities, foot contacts) are exact; the 6D rotation block needs
    inverse kinematics on a fitted skeleton and is left at zero (``features_to_joints`` does not read it).
    """
    j, phi = _canonical(joints, smooth_sigma)
    half = -phi / 2  # r_rot turns the heading back to +z
    r_rot = yaw_quat(half)
    t = j.shape[0]
    feats = np.zeros((t - 1, FEATURE_DIM))
    feats[:, 0] = np.diff(half)
    root_vel = qrot(r_rot[1:], j[1:, 0] - j[:-1, 0])
    feats[:, 1], feats[:, 2] = root_vel[:, 0], root_vel[:, 2]
    feats[:, 3] = j[:-1, 0, 1]
    rel = j.copy()
    rel[..., 0] -= j[:, :1, 0]
    rel[..., 2] -= j[:, :1, 2]
    feats[:, RIC] = qrot(r_rot[:, None], rel)[:-1, 1:].reshape(t - 1, -1)
    feats[:, LOCAL_VEL] = qrot(r_rot[1:, None], j[1:] - j[:-1]).reshape(t - 1, -1)
    step = ((j[1:] - j[:-1]) ** 2).sum(-1)
    feats[:, CONTACTS] = (step[:, list(FEET_LEFT + FEET_RIGHT)] < feet_threshold).astype(np.float64)
    return feats.astype(np.float32)


def walk_motion(frames: int, speed: float = 1.2, fps: float = FPS, turn_rate: float = 0.0,
                heading: float = 0.0, bounce: float = 0.02, stride_hz: float = 1.8) -> np.ndarray:
    """A synthetic walk ``float32 [frames, 22, 3]``: root moves at ``speed`` m/s along the heading.

    ``turn_rate`` (rad/s) curves the path; legs and arms swing at ``stride_hz``. Used by tests, benchmarks
    and demo candidates: the root's x/z path is exact (``speed × time`` for a straight walk).
    """
    t = np.arange(frames) / fps
    phase = 2 * np.pi * stride_hz * t
    pose = np.repeat(REST_POSE[None], frames, axis=0).copy()
    for hip, sign in ((1, 1.0), (2, -1.0)):  # legs: rotate about the hip around x
        swing = 0.35 * sign * np.sin(phase)
        chain = [c for c in KINEMATIC_CHAIN if c[1] == hip][0][2:]
        pose[:, list(chain)] = _rot_x(pose[:, list(chain)] - REST_POSE[hip], swing) + REST_POSE[hip]
    for shoulder, sign in ((16, -1.0), (17, 1.0)):  # arms counter-swing
        swing = 0.3 * sign * np.sin(phase)
        chain = [c for c in KINEMATIC_CHAIN if shoulder in c][0]
        below = list(chain[chain.index(shoulder) + 1:])
        pose[:, below] = _rot_x(pose[:, below] - REST_POSE[shoulder], swing) + REST_POSE[shoulder]
    pose[..., 1] += bounce * np.abs(np.sin(phase))[:, None]
    phi = heading + turn_rate * t
    pose = qrot(yaw_quat(phi / 2)[:, None], pose)
    # root path: integrate the heading (exact for a constant turn rate, closed form)
    if abs(turn_rate) < 1e-12:
        x = speed * t * np.sin(heading)
        z = speed * t * np.cos(heading)
    else:
        x = speed / turn_rate * (np.cos(heading) - np.cos(phi))
        z = speed / turn_rate * (np.sin(phi) - np.sin(heading))
    pose[..., 0] += x[:, None]
    pose[..., 2] += z[:, None]
    return pose.astype(np.float32)


def _rot_x(v: np.ndarray, angle: np.ndarray) -> np.ndarray:
    c, s = np.cos(angle)[:, None], np.sin(angle)[:, None]
    out = v.copy()
    out[..., 1] = c * v[..., 1] - s * v[..., 2]
    out[..., 2] = s * v[..., 1] + c * v[..., 2]
    return out


# --------------------------------------------------------------------------------------------- validation
def check_features(features: np.ndarray, source: str, min_frames: int = MIN_FRAMES,
                   max_frames: int = MAX_FRAMES) -> np.ndarray:
    """``float32 [T, 263]`` or :class:`InputError` naming the problem (width, NaN frames, length)."""
    x = np.asarray(features)
    if x.ndim == 3 and x.shape[0] == 1:  # MotionGPT saves a batch of one
        x = x[0]
    if x.ndim != 2 or x.shape[1] != FEATURE_DIM:
        raise InputError(source, "features", f"shape {tuple(x.shape)} is not [T, {FEATURE_DIM}]",
                         "pass HumanML3D 263-dim features (22 joints), one row per frame")
    if not np.issubdtype(x.dtype, np.floating):
        raise InputError(source, "features", f"dtype {x.dtype} is not floating point", "save float32 features")
    bad = np.flatnonzero(~np.isfinite(x).all(axis=1))
    if bad.size:
        raise InputError(source, "features", f"{bad.size} frame(s) contain NaN/inf (first: frame {bad[0]})",
                         "regenerate the motion or drop it with --on-error skip")
    if not min_frames <= x.shape[0] <= max_frames:
        raise InputError(source, "features", f"{x.shape[0]} frames is outside {min_frames}..{max_frames}",
                         "HumanML3D motions are 40-196 frames at 20 fps; trim or drop it")
    return x.astype(np.float32)


# ------------------------------------------------------------------------------------------ motion tokens
def motion_vocab(codebook_size: int = CODEBOOK_SIZE) -> list[str]:
    """The ``codebook_size + 3`` added tokens ``<motion_id_0>`` … (start, end and mask come last)."""
    return [f"<motion_id_{i}>" for i in range(codebook_size + 3)]


def motion_string(codes: np.ndarray | list[int], codebook_size: int = CODEBOOK_SIZE) -> str:
    """MotionGPT's motion-as-text: ``<motion_id_512>`` + one token per code + ``<motion_id_513>``."""
    arr = np.asarray(codes).reshape(-1)
    require(arr.size > 0 and bool(np.all((arr >= 0) & (arr < codebook_size))) and np.all(arr == np.round(arr)),
            "motion_string", "codes", arr[:8].tolist(), f"codes must be integers in [0, {codebook_size})")
    body = "".join(f"<motion_id_{int(c)}>" for c in arr)
    return f"<motion_id_{codebook_size}>{body}<motion_id_{codebook_size + 1}>"


_TOKEN = re.compile(r"<motion_id_(\d+)>")


def parse_motion_string(text: str, codebook_size: int = CODEBOOK_SIZE) -> list[int]:
    """Codes between the start and end tokens of :func:`motion_string` output (other tokens dropped)."""
    ids = [int(m) for m in _TOKEN.findall(text)]
    if codebook_size in ids:
        ids = ids[ids.index(codebook_size) + 1:]
    if codebook_size + 1 in ids:
        ids = ids[:ids.index(codebook_size + 1)]
    return [i for i in ids if i < codebook_size]


# ------------------------------------------------------------------------------------------------ renderer
CHAIN_COLORS = ((220, 60, 60), (60, 90, 220), (40, 40, 40), (230, 130, 30), (40, 160, 90))


@dataclass(frozen=True)
class StickFigureStyle:
    """How a motion is drawn; ``follow`` keeps the root centred and moves the floor grid (as MotionGPT does)."""

    size: int = 256
    azimuth_deg: float = 35.0
    elevation_deg: float = 20.0
    line_width: int = 3
    follow: bool = True
    grid: bool = True
    grid_spacing: float = 0.5
    grid_radius: float = 3.0
    footprint: float = 0.5
    trail: bool = True
    margin: float = 0.08
    background: tuple[int, int, int] = (255, 255, 255)

    def __post_init__(self):
        require(16 <= self.size <= 2048, "StickFigureStyle", "size", self.size, "use 16..2048 pixels")
        require(self.line_width >= 1, "StickFigureStyle", "line_width", self.line_width, "use >= 1")
        require(-89.0 <= self.elevation_deg <= 89.0, "StickFigureStyle", "elevation_deg", self.elevation_deg,
                "use -89..89 degrees")
        require(self.grid_spacing > 0 and self.grid_radius > 0 and self.footprint >= 0, "StickFigureStyle",
                "grid_spacing", (self.grid_spacing, self.grid_radius, self.footprint),
                "grid spacing and radius must be > 0, footprint >= 0")
        require(0 <= self.margin < 0.5, "StickFigureStyle", "margin", self.margin, "use 0 <= margin < 0.5")


def _camera(style: StickFigureStyle) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    az, el = np.radians(style.azimuth_deg), np.radians(style.elevation_deg)
    to_cam = np.array([np.sin(az) * np.cos(el), np.sin(el), np.cos(az) * np.cos(el)])
    right = np.cross(-to_cam, [0.0, 1.0, 0.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, -to_cam)
    return right, up, to_cam


def _check_joints(joints: np.ndarray) -> np.ndarray:
    j = np.asarray(joints, dtype=np.float64)
    require(j.ndim == 3 and j.shape[1:] == (NUM_JOINTS, 3) and j.shape[0] > 0, "render", "joints", j.shape,
            "pass joint positions shaped [T, 22, 3] (see features_to_joints)")
    require(bool(np.isfinite(j).all()), "render", "joints", "NaN/inf", "joints must be finite")
    return j


class _Layout:
    """Projection of one clip: fixed scale for the whole clip, per-frame centre when following the root.

    Projection is linear, so points are projected once (``uv``) and each frame only shifts by its centre.
    """

    def __init__(self, joints: np.ndarray, style: StickFigureStyle):
        self.style = style
        self.right, self.up, self.to_cam = _camera(style)
        self.floor = float(joints[..., 1].min())
        root = joints[:, 0]
        if style.follow:
            self.center = np.stack([root[:, 0], np.full(len(root), self.floor), root[:, 2]], axis=1)
            r = style.grid_radius
        else:
            lo, hi = root[:, [0, 2]].min(0), root[:, [0, 2]].max(0)
            mid = (lo + hi) / 2
            self.center = np.tile([mid[0], self.floor, mid[1]], (len(root), 1))
            r = style.grid_radius + float((hi - lo).max()) / 2
        self.radius = r
        rel = joints - self.center[:, None]
        f = style.footprint  # a little floor around the feet stays in view; the grid runs on past the border
        square = np.array([[x, 0.0, z] for x in (-f, f) for z in (-f, f)])
        pts = np.concatenate([rel.reshape(-1, 3), square])
        u, v = pts @ self.right, pts @ self.up
        span = max(float(u.max() - u.min()), float(v.max() - v.min()), 1e-6)
        self.scale = style.size * (1 - 2 * style.margin) / span
        u0 = (float(u.max()) + float(u.min())) / 2
        v0 = (float(v.max()) + float(v.min())) / 2
        half = style.size / 2
        # pixel = offset_t + [scale * u, -scale * v] for world (u, v); offset_t holds the frame's centre
        cu, cv = self.center @ self.right, self.center @ self.up
        self.offset = np.stack([half - self.scale * (cu + u0), half + self.scale * (cv + v0)], axis=1)

    def uv(self, pts: np.ndarray) -> np.ndarray:
        """Scaled screen coordinates of world points ``[..., 3]`` before the per-frame offset."""
        return np.stack([self.scale * (pts @ self.right), -self.scale * (pts @ self.up)], axis=-1)


def _grid_lines(layout: _Layout) -> list[np.ndarray]:
    """Per frame, the floor grid's segments in pixels ``[n, 4]`` (x0, y0, x1, y1)."""
    s, r, y = layout.style.grid_spacing, layout.radius, layout.floor
    out = []
    for t, (cx, _, cz) in enumerate(layout.center):
        kx = np.arange(np.ceil((cx - r) / s), np.floor((cx + r) / s) + 1) * s
        kz = np.arange(np.ceil((cz - r) / s), np.floor((cz + r) / s) + 1) * s
        a = np.concatenate([np.stack([kx, np.full_like(kx, y), np.full_like(kx, cz - r)], 1),
                            np.stack([np.full_like(kz, cx - r), np.full_like(kz, y), kz], 1)])
        b = np.concatenate([np.stack([kx, np.full_like(kx, y), np.full_like(kx, cz + r)], 1),
                            np.stack([np.full_like(kz, cx + r), np.full_like(kz, y), kz], 1)])
        off = layout.offset[t]
        out.append(np.concatenate([layout.uv(a) + off, layout.uv(b) + off], axis=1))
    return out


@dataclass
class StickFigureScene:
    """Everything a frame draws, in pixels (computed once per clip by :func:`stick_figure_scene`)."""

    size: int
    joints: np.ndarray  # [T, 22, 2]
    chain_order: np.ndarray  # [T, 5] far to near
    grid: list[np.ndarray] | None
    trail: np.ndarray | None  # [T, T, 2]: frame t draws trail[t, : t + 1]
    head_radius: float
    style: StickFigureStyle


def stick_figure_scene(joints: np.ndarray, style: StickFigureStyle | None = None) -> StickFigureScene:
    """Project a motion ``[T, 22, 3]`` for drawing (vectorised over frames)."""
    style = style or StickFigureStyle()
    j = _check_joints(joints)
    layout = _Layout(j, style)
    t_count = j.shape[0]
    px = layout.uv(j) + layout.offset[:, None]
    depth = j @ layout.to_cam  # larger is nearer the camera: draw far chains first
    chain_depth = np.stack([depth[:, list(c)].mean(1) for c in KINEMATIC_CHAIN], axis=1)
    trail = None
    if style.trail:
        root_floor = np.stack([j[:, 0, 0], np.full(t_count, layout.floor), j[:, 0, 2]], axis=1)
        trail = layout.uv(root_floor)[None] + layout.offset[:, None]
    return StickFigureScene(style.size, px, np.argsort(chain_depth, axis=1),
                            _grid_lines(layout) if style.grid else None, trail,
                            max(2.0, 0.09 * layout.scale), style)


def draw_stick_figure(scene: StickFigureScene) -> np.ndarray:
    """Rasterise a :class:`StickFigureScene` with PIL: ``uint8 [T, size, size, 3]``."""
    from PIL import Image, ImageDraw

    style, size = scene.style, scene.size
    t_count = scene.joints.shape[0]
    out = np.empty((t_count, size, size, 3), dtype=np.uint8)
    width = style.line_width
    r = scene.head_radius
    joints = scene.joints.tolist()
    for t in range(t_count):
        img = Image.new("RGB", (size, size), style.background)
        draw = ImageDraw.Draw(img)
        if scene.grid is not None:
            for seg in scene.grid[t].tolist():
                draw.line(seg, fill=(215, 215, 215), width=1)
        if scene.trail is not None and t > 0:
            draw.line([tuple(p) for p in scene.trail[t, : t + 1].tolist()], fill=(150, 150, 150),
                      width=max(1, width - 1))
        pts = joints[t]
        for ci in scene.chain_order[t]:
            draw.line([tuple(pts[k]) for k in KINEMATIC_CHAIN[ci]], fill=CHAIN_COLORS[ci], width=width, joint="curve")
        hx, hy = pts[15]
        draw.ellipse((hx - r, hy - r, hx + r, hy + r), outline=CHAIN_COLORS[2], width=width)
        out[t] = np.asarray(img)
    return out


def render_stick_figure(joints: np.ndarray, style: StickFigureStyle | None = None) -> np.ndarray:
    """Draw a motion ``[T, 22, 3]`` as ``uint8 [T, size, size, 3]`` frames (the judge's and a human's view)."""
    return draw_stick_figure(stick_figure_scene(joints, style))


def render_motion_mp4(joints: np.ndarray, fps: float = FPS, style: StickFigureStyle | None = None) -> bytes:
    """H.264 mp4 bytes of the stick figure (one video frame per motion frame)."""
    from vidalign.media import encode_mp4

    return encode_mp4(render_stick_figure(joints, style), fps)


def render_motion_gif(joints: np.ndarray, fps: float = FPS, style: StickFigureStyle | None = None) -> bytes:
    """Animated GIF bytes of the stick figure."""
    from vidalign.media import encode_gif

    return encode_gif(render_stick_figure(joints, style), fps)


def sample_frame_indices(n_frames: int, n: int) -> list[int]:
    """``n`` evenly spaced frame indices including the first and last (fewer when the clip is shorter)."""
    if n_frames <= 0 or n <= 0:
        return []
    if n >= n_frames:
        return list(range(n_frames))
    return [int(round(i)) for i in np.linspace(0, n_frames - 1, n)]


def contact_sheet(frames: np.ndarray, n: int = 8, cols: int = 4) -> np.ndarray:
    """One ``uint8`` image tiling ``n`` evenly spaced frames in time order (left to right, top to bottom)."""
    f = np.asarray(frames)
    require(f.ndim == 4 and f.shape[0] > 0 and f.dtype == np.uint8, "contact_sheet", "frames", f.shape,
            "pass uint8 frames [T, H, W, 3]")
    idx = sample_frame_indices(f.shape[0], n)
    cols = max(1, min(cols, len(idx)))
    rows = -(-len(idx) // cols)
    h, w = f.shape[1:3]
    sheet = np.full((rows * h, cols * w, 3), 255, dtype=np.uint8)
    for k, i in enumerate(idx):
        r, c = divmod(k, cols)
        sheet[r * h:(r + 1) * h, c * w:(c + 1) * w] = f[i]
    return sheet
