"""Rigid-body simulation of a drop scene with PyBullet (DIRECT mode, one private client per call).

``simulate(scene)`` builds the floor and the tower objects, pre-settles the towers for
``settle_frames`` frames (the droppers are absent, as in the authors' generator; with
``settle_until_rest`` it stops at the first frame where every tower object moves slower than
5 mm/s and 0.02 rad/s, which changes nothing visible and saves most of the 3000 steps), adds the droppers at
rest and steps at ``physics_hz`` (15 substeps per 16 fps frame), recording every object's pose and
velocity at each frame and every contact that begins. Linear and angular damping are zero so free fall
follows h − g t²/2 (up to the semi-implicit Euler error g·t·dt/2). Friction and restitution combine
as PyBullet does (products), so with the authors' floor restitution 0 objects do not bounce off the
floor, only off each other.

The client is created and destroyed inside the call (never the global default client), so the
function is safe in worker processes and threads of its own; same scene in, same trajectories out.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from vidalign.simulation.assets import mesh_info
from vidalign.simulation.scene import Scene, SceneObject

CONTACT_TOLERANCE = 1e-3  # a pair counts as touching when closer than 1 mm (Bullet reports up to 2 cm)
FLOOR = -1  # object index used for the floor in contact events
REST_LINEAR, REST_ANGULAR = 5e-3, 2e-2  # m/s, rad/s: a settled tower object moves less than this


@dataclass(frozen=True)
class ContactEvent:
    """A pair of bodies that starts touching at physics step ``step`` (inside video frame ``frame``)."""

    frame: int  # first video frame at or after the contact
    step: int  # physics step after the drop (1-based)
    time: float  # seconds after the drop
    a: int  # object index (FLOOR = -1 for the floor)
    b: int
    position: tuple[float, float, float]
    normal_force: float

    def to_dict(self) -> dict[str, Any]:
        return {"frame": self.frame, "step": self.step, "time": round(self.time, 6),
                "a": self.a, "b": self.b, "position": [round(v, 6) for v in self.position],
                "normal_force": round(self.normal_force, 6)}


@dataclass(frozen=True)
class Trajectories:
    """Per-frame state of every object (order = ``scene.objects``), plus contact events."""

    fps: int
    physics_hz: int
    positions: np.ndarray  # [T, N, 3] metres
    orientations: np.ndarray  # [T, N, 4] quaternions xyzw
    linear_velocities: np.ndarray  # [T, N, 3] m/s
    angular_velocities: np.ndarray  # [T, N, 3] rad/s
    contacts: tuple[ContactEvent, ...]
    settle_steps: int = 0  # physics steps the towers were pre-settled for

    @property
    def num_frames(self) -> int:
        return int(self.positions.shape[0])

    @property
    def times(self) -> np.ndarray:
        return np.arange(self.num_frames) / self.fps

    def first_contact_frame(self, index: int) -> int | None:
        """The first frame in which object ``index`` touches anything (None if it never does)."""
        frames = [c.frame for c in self.contacts if index in (c.a, c.b)]
        return min(frames) if frames else None

    def to_dict(self, decimals: int = 6) -> dict[str, Any]:
        r = lambda x: np.round(x, decimals).tolist()  # noqa: E731
        return {"fps": self.fps, "physics_hz": self.physics_hz, "settle_steps": self.settle_steps, "times": r(self.times),
                "positions": r(self.positions), "orientations_xyzw": r(self.orientations),
                "linear_velocities": r(self.linear_velocities), "angular_velocities": r(self.angular_velocities),
                "contacts": [c.to_dict() for c in self.contacts]}


@contextlib.contextmanager
def direct_client() -> Iterator[Any]:
    """A private PyBullet DIRECT client: ``(pybullet module, client id)``, disconnected on exit."""
    try:
        import pybullet as pb
    except ImportError as exc:
        from vidalign.errors import missing_extra

        raise missing_extra("sim", "pybullet") from exc

    client = pb.connect(pb.DIRECT)
    try:
        yield pb, client
    finally:
        pb.disconnect(physicsClientId=client)


def collision_shape(pb: Any, client: int, obj: SceneObject) -> int:
    """Collision shape with its frame at the object's centre: primitives, or for meshes the convex hull
    (≤ 128 vertices, see :class:`~vidalign.simulation.assets.MeshInfo`) shifted by the AABB centre."""
    if obj.shape == "sphere":
        return pb.createCollisionShape(pb.GEOM_SPHERE, radius=obj.half_extents[0], physicsClientId=client)
    if obj.shape == "box":
        return pb.createCollisionShape(pb.GEOM_BOX, halfExtents=list(obj.half_extents), physicsClientId=client)
    if obj.shape == "cylinder":
        return pb.createCollisionShape(pb.GEOM_CYLINDER, radius=obj.half_extents[0],
                                       height=2 * obj.half_extents[2], physicsClientId=client)
    hull = np.asarray(mesh_info(obj.mesh, obj.collision_mesh).hull_points)
    vertices = (hull - np.asarray(obj.mesh_offset)) * np.asarray(obj.scale)
    return pb.createCollisionShape(pb.GEOM_MESH, vertices=vertices.tolist(), physicsClientId=client)


def _add_body(pb: Any, client: int, obj: SceneObject) -> int:
    body = pb.createMultiBody(baseMass=obj.mass, baseCollisionShapeIndex=collision_shape(pb, client, obj),
                              basePosition=list(obj.position), baseOrientation=list(obj.orientation),
                              physicsClientId=client)
    pb.changeDynamics(body, -1, lateralFriction=obj.friction, restitution=obj.restitution,
                      linearDamping=0.0, angularDamping=0.0, physicsClientId=client)
    return body


def _contacts(pb: Any, client: int, index_of: dict[int, int]) -> dict[tuple[int, int], tuple[list, float]]:
    pairs: dict[tuple[int, int], tuple[list, float]] = {}
    for pt in pb.getContactPoints(physicsClientId=client):
        if pt[8] > CONTACT_TOLERANCE:  # contactDistance: positive = still apart
            continue
        a, b = index_of.get(pt[1]), index_of.get(pt[2])
        if a is None or b is None:
            continue
        key = (min(a, b), max(a, b))
        pos, force = pairs.get(key, ([], 0.0))
        pairs[key] = (pos + [pt[5]], force + float(pt[9]))
    return pairs


def _at_rest(pb: Any, client: int, bodies: list[int]) -> bool:
    for body in bodies:
        v, w = pb.getBaseVelocity(body, physicsClientId=client)
        if np.linalg.norm(v) > REST_LINEAR or np.linalg.norm(w) > REST_ANGULAR:
            return False
    return True


def simulate(scene: Scene) -> Trajectories:
    """Run the scene: tower pre-settling, then ``num_frames`` frames of free fall and collisions."""
    cfg = scene.config
    n, steps = len(scene.objects), cfg.substeps
    dt = 1.0 / cfg.physics_hz
    with direct_client() as (pb, client):
        pb.setPhysicsEngineParameter(deterministicOverlappingPairs=1, physicsClientId=client)
        pb.setGravity(0, 0, cfg.gravity, physicsClientId=client)
        pb.setTimeStep(dt, physicsClientId=client)
        floor = pb.createMultiBody(0, pb.createCollisionShape(pb.GEOM_PLANE, physicsClientId=client),
                                   physicsClientId=client)
        pb.changeDynamics(floor, -1, lateralFriction=cfg.floor_friction, restitution=cfg.floor_restitution,
                          physicsClientId=client)
        bodies: dict[int, int] = {}
        for obj in scene.objects:
            if obj.role == "tower":
                bodies[obj.index] = _add_body(pb, client, obj)
        settle_steps = 0
        for _ in range(cfg.settle_frames if bodies else 0):
            for _ in range(steps):
                pb.stepSimulation(physicsClientId=client)
            settle_steps += steps
            if cfg.settle_until_rest and _at_rest(pb, client, list(bodies.values())):
                break
        for obj in scene.objects:
            if obj.role == "dropper":
                bodies[obj.index] = _add_body(pb, client, obj)
        order = [bodies[i] for i in range(n)]
        index_of = {body: i for i, body in enumerate(order)}
        index_of[floor] = FLOOR

        t = cfg.num_frames
        pos, orn = np.zeros((t, n, 3)), np.zeros((t, n, 4))
        lin, ang = np.zeros((t, n, 3)), np.zeros((t, n, 3))
        events: list[ContactEvent] = []

        def record(frame: int) -> None:
            for i, body in enumerate(order):
                p, q = pb.getBasePositionAndOrientation(body, physicsClientId=client)
                v, w = pb.getBaseVelocity(body, physicsClientId=client)
                pos[frame, i], orn[frame, i], lin[frame, i], ang[frame, i] = p, q, v, w

        record(0)
        touching = set(_contacts(pb, client, index_of))  # resting contacts of settled towers are not events
        step = 0
        for frame in range(1, t):
            for _ in range(steps):
                pb.stepSimulation(physicsClientId=client)
                step += 1
                now = _contacts(pb, client, index_of)
                for key in sorted(set(now) - touching):
                    points, force = now[key]
                    events.append(ContactEvent(frame, step, step * dt, key[0], key[1],
                                               tuple(float(v) for v in np.mean(points, axis=0)), force))
                touching = set(now)
            record(frame)
    return Trajectories(cfg.fps, cfg.physics_hz, pos, orn, lin, ang, tuple(events), settle_steps)


__all__ = ["simulate", "Trajectories", "ContactEvent", "direct_client", "collision_shape", "FLOOR",
           "CONTACT_TOLERANCE"]
