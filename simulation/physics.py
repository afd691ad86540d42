"""Rigid-body simulation of a drop scene with PyBullet, as Kubric's simulator runs it (DIRECT, private client).

``simulate(scene)`` follows the authors' ``run.py`` on Kubric's ``PyBullet`` view: build the floor and the tower
objects, pre-settle the towers for ``settle_frames`` frames (Kubric's ``run(-200, 0)``: (200 + 1) × 15 =
3015 steps; with ``settle_until_rest`` it stops once every tower object is at rest, which is faster and
changes nothing visible), raise each dropper over its *settled* tower (``lift_rule``), add the droppers at
rest and step at ``physics_hz``. The drop is simulated from frame 0 and the video starts at frame
``first_frame`` (Kubric renders frames 1..32 of ``run(0, 33)``), so rendered frame k shows the state
(k + first_frame)·15 steps after release; a dropper in free fall has ``v_z = −g (k + 1)/16`` there.

Contact models (``contact_model``):

- ``kubric`` (default): Kubric's ``setPhysicsEngineParameter(restitutionVelocityThreshold=0,
  warmStartingFactor=0, useSplitImpulse=True, contactSlop=0, enableConeFriction=False,
  deterministicOverlappingPairs=True)``, every body created with maximal coordinates and
  ``changeDynamics(contactProcessingThreshold=0)``, which removes Bullet's sticky, speculative contacts (a
  contact is solved only once bodies touch) and keeps slow bounces. Bullet still corrects penetrations shallower
  than its split-impulse threshold (4 cm) with a velocity (Baumgarte) term, so a bounce rebounds higher than
  restitution alone predicts, by an amount that depends on how deep the body sank in its last step (a sphere
  dropped 0.5–1.2 m onto a fixed box: +5 % to +28 % of e²h at 240 Hz); that is what the authors' clips show.
- ``exact``: the same plus ``splitImpulsePenetrationThreshold=0``: every penetration is resolved by split
  impulse, which moves bodies without changing their velocity, so a sphere dropped from h rebounds to e²h
  within 5 % (−5 % to 0 % over the same drops).
- ``pybullet``: PyBullet's defaults (reduced coordinates, speculative contacts, restitution ignored below
  0.2 m/s), as vidalign simulated before.

Bodies follow Kubric's assets: mesh colliders are the asset's convex parts (its collision mesh, or a cached
V-HACD decomposition of a concave visual mesh) or one convex hull; mass = density × volume with the centre of
mass and inertia of the closed visual mesh (trimesh's, as Kubric's conversion writes into each URDF). The
recorded pose is the body frame (the visual AABB centre, see :class:`~vidalign.simulation.scene.SceneObject`),
not PyBullet's inertial frame. Linear and angular damping are zero. Friction and restitution combine as
PyBullet does (products): with the authors' floor restitution 0 objects do not bounce off the floor, only off
each other.

The client is created and destroyed inside the call (never the global default client), so the function is safe
in worker processes and threads of its own; same scene in, same trajectories out.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from vidalign.simulation.meshes import convex_decomposition, mesh_info, scaled_inertia
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
    """Per-frame state of every object (order = ``scene.objects``), plus contact events.

    Frame k is the state ``(k + first_frame) / fps`` seconds after release; ``release_*`` hold the state at
    release (towers settled, droppers lifted), which the video does not show when ``first_frame > 0``."""

    fps: int
    physics_hz: int
    positions: np.ndarray  # [T, N, 3] metres, body frame (visual AABB centre)
    orientations: np.ndarray  # [T, N, 4] quaternions xyzw
    linear_velocities: np.ndarray  # [T, N, 3] m/s of the body frame
    angular_velocities: np.ndarray  # [T, N, 3] rad/s
    contacts: tuple[ContactEvent, ...]
    settle_steps: int = 0  # physics steps the towers were pre-settled for
    first_frame: int = 0
    release_positions: np.ndarray | None = None  # [N, 3]
    release_orientations: np.ndarray | None = None  # [N, 4]
    contact_model: str = "kubric"

    @property
    def num_frames(self) -> int:
        return int(self.positions.shape[0])

    @property
    def times(self) -> np.ndarray:
        """Seconds after release of each frame."""
        return (np.arange(self.num_frames) + self.first_frame) / self.fps

    def first_contact_frame(self, index: int) -> int | None:
        """The first frame in which object ``index`` touches anything (None if it never does)."""
        frames = [c.frame for c in self.contacts if index in (c.a, c.b)]
        return min(frames) if frames else None

    def to_dict(self, decimals: int = 6) -> dict[str, Any]:
        r = lambda x: np.round(x, decimals).tolist()  # noqa: E731
        out = {"fps": self.fps, "physics_hz": self.physics_hz, "settle_steps": self.settle_steps,
               "first_frame": self.first_frame, "contact_model": self.contact_model, "times": r(self.times),
               "positions": r(self.positions), "orientations_xyzw": r(self.orientations),
               "linear_velocities": r(self.linear_velocities), "angular_velocities": r(self.angular_velocities),
               "contacts": [c.to_dict() for c in self.contacts]}
        if self.release_positions is not None:
            out["release_positions"] = r(self.release_positions)
            out["release_orientations_xyzw"] = r(self.release_orientations)
        return out


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


KUBRIC_ENGINE = {"restitutionVelocityThreshold": 0.0, "warmStartingFactor": 0.0, "useSplitImpulse": True,
                 "contactSlop": 0.0, "enableConeFriction": False, "deterministicOverlappingPairs": True}


def configure_engine(pb: Any, client: int, contact_model: str) -> None:
    """The engine parameters of a contact model (see the module docstring)."""
    if contact_model == "pybullet":
        pb.setPhysicsEngineParameter(deterministicOverlappingPairs=1, physicsClientId=client)
        return
    pb.setPhysicsEngineParameter(physicsClientId=client, **KUBRIC_ENGINE)
    if contact_model == "exact":
        pb.setPhysicsEngineParameter(splitImpulsePenetrationThreshold=0.0, physicsClientId=client)


def collider_kind(obj: SceneObject, decompose: bool = True) -> str:
    """``primitive``, ``parts`` (the asset's convex parts), ``decomposition`` (V-HACD) or ``hull``."""
    if obj.shape != "mesh":
        return "primitive"
    info = mesh_info(obj.mesh, obj.collision_mesh)
    if info.collision_parts > 1:
        return "parts"
    if decompose and info.concave and obj.collision_mesh is None:
        return "decomposition"
    return "hull"


def collision_shape(pb: Any, client: int, obj: SceneObject, decompose: bool = True,
                    vhacd_resolution: int | None = None) -> int:
    """Collision shape with its frame at the object's centre (visual AABB centre): primitives; for meshes the
    asset's convex parts, a V-HACD decomposition of a concave mesh, or one hull of ≤ 128 vertices."""
    if obj.shape == "sphere":
        return pb.createCollisionShape(pb.GEOM_SPHERE, radius=obj.half_extents[0], physicsClientId=client)
    if obj.shape == "box":
        return pb.createCollisionShape(pb.GEOM_BOX, halfExtents=list(obj.half_extents), physicsClientId=client)
    if obj.shape == "cylinder":
        return pb.createCollisionShape(pb.GEOM_CYLINDER, radius=obj.half_extents[0],
                                       height=2 * obj.half_extents[2], physicsClientId=client)
    scale, offset = np.asarray(obj.scale), np.asarray(obj.mesh_offset)
    kind = collider_kind(obj, decompose)
    if kind in ("parts", "decomposition"):
        path = obj.collision_mesh or obj.mesh
        if kind == "decomposition":
            path = convex_decomposition(obj.mesh, **({"resolution": vhacd_resolution} if vhacd_resolution else {}))
        return pb.createCollisionShape(pb.GEOM_MESH, fileName=path, meshScale=scale.tolist(),
                                       collisionFramePosition=(-offset * scale).tolist(), physicsClientId=client)
    hull = np.asarray(mesh_info(obj.mesh, obj.collision_mesh).hull_points)
    return pb.createCollisionShape(pb.GEOM_MESH, vertices=((hull - offset) * scale).tolist(), physicsClientId=client)


def inertial_frame(obj: SceneObject) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Centre of mass (body frame), principal-axes quaternion (xyzw) and principal moments of a mesh object;
    primitives keep PyBullet's own (exact) inertia."""
    if obj.shape != "mesh":
        return np.zeros(3), np.array([0.0, 0.0, 0.0, 1.0]), None
    from scipy.spatial.transform import Rotation

    info = mesh_info(obj.mesh, obj.collision_mesh)
    scale = np.asarray(obj.scale)
    com = (np.asarray(info.com) - np.asarray(obj.mesh_offset)) * scale
    moments, axes = scaled_inertia(info, scale, 1.0)
    moments = moments * obj.mass / max(info.volume * abs(float(np.prod(scale))), 1e-18)
    return com, Rotation.from_matrix(axes).as_quat(), moments


def _add_body(pb: Any, client: int, obj: SceneObject, cfg: Any, position: Any = None) -> tuple[int, tuple]:
    """A body and its inertial frame (body-frame pose of PyBullet's reported frame)."""
    maximal = cfg.contact_model != "pybullet"
    com, axes_q, moments = inertial_frame(obj)
    body = pb.createMultiBody(baseMass=obj.mass,
                              baseCollisionShapeIndex=collision_shape(pb, client, obj, cfg.decompose,
                                                                      cfg.vhacd_resolution),
                              basePosition=list(obj.position if position is None else position),
                              baseOrientation=list(obj.orientation), baseInertialFramePosition=com.tolist(),
                              baseInertialFrameOrientation=axes_q.tolist(), useMaximalCoordinates=maximal,
                              physicsClientId=client)
    extra = {"contactProcessingThreshold": 0.0} if maximal else {}
    pb.changeDynamics(body, -1, lateralFriction=obj.friction, restitution=obj.restitution,
                      linearDamping=0.0, angularDamping=0.0, physicsClientId=client, **extra)
    if moments is not None:  # its own call, with the mass: PyBullet's rigid bodies get NaN inertia otherwise
        pb.changeDynamics(body, -1, mass=obj.mass, localInertiaDiagonal=moments.tolist(), physicsClientId=client)
    return body, pb.invertTransform(com.tolist(), axes_q.tolist())


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


def body_state(pb: Any, client: int, body: int, to_body: tuple) -> tuple:
    """Body-frame position, orientation, linear and angular velocity (PyBullet reports the inertial frame)."""
    p, q = pb.getBasePositionAndOrientation(body, physicsClientId=client)
    v, w = pb.getBaseVelocity(body, physicsClientId=client)
    bp, bq = pb.multiplyTransforms(p, q, to_body[0], to_body[1])
    v_body = np.asarray(v) + np.cross(np.asarray(w), np.asarray(bp) - np.asarray(p))
    return bp, bq, v_body, w


def lifted_position(obj: SceneObject, tower_top: float, rule: str) -> tuple[float, float, float]:
    """Where the authors' code puts a dropper over its settled tower (``run.py``): if the bottom of its unrotated
    box is below the tower top, its centre goes to the top + gap (``centre``), or its rotated bottom does."""
    from vidalign.simulation.scene import predicted_release_z

    x, y, z = obj.position
    return (x, y, predicted_release_z(z, obj.half_extents[2], float(obj.world_half_extents[2]), tower_top,
                                      obj.lift_gap or 0.0, rule))


def simulate(scene: Scene) -> Trajectories:
    """Run the scene: tower pre-settling, the lift, then the drop; ``num_frames`` frames from ``first_frame``."""
    cfg = scene.config
    n, steps = len(scene.objects), cfg.substeps
    dt = 1.0 / cfg.physics_hz
    with direct_client() as (pb, client):
        configure_engine(pb, client, cfg.contact_model)
        pb.setGravity(0, 0, cfg.gravity, physicsClientId=client)
        pb.setTimeStep(dt, physicsClientId=client)
        floor = pb.createMultiBody(0, pb.createCollisionShape(pb.GEOM_PLANE, physicsClientId=client),
                                   useMaximalCoordinates=cfg.contact_model != "pybullet", physicsClientId=client)
        pb.changeDynamics(floor, -1, lateralFriction=cfg.floor_friction, restitution=cfg.floor_restitution,
                          physicsClientId=client,
                          **({} if cfg.contact_model == "pybullet" else {"contactProcessingThreshold": 0.0}))
        bodies: dict[int, int] = {}
        frames: dict[int, tuple] = {}
        for obj in scene.objects:
            if obj.role == "tower":
                bodies[obj.index], frames[obj.index] = _add_body(pb, client, obj, cfg)
        settle_steps = 0
        if bodies:
            for _ in range(cfg.settle_frames + 1):  # run(-settle_frames, 0): both ends inclusive
                for _ in range(steps):
                    pb.stepSimulation(physicsClientId=client)
                settle_steps += steps
                if cfg.settle_until_rest and _at_rest(pb, client, list(bodies.values())):
                    break
        for obj in scene.objects:
            if obj.role != "dropper":
                continue
            position = None
            tower = [o for o in scene.objects if o.tower_of == obj.index]
            if tower:  # the settled tower's top, from each object's unrotated box (as get_world_object_bounds)
                top = max(body_state(pb, client, bodies[t.index], frames[t.index])[0][2] + t.half_extents[2]
                          for t in tower)
                position = lifted_position(obj, top, cfg.lift_rule)
            bodies[obj.index], frames[obj.index] = _add_body(pb, client, obj, cfg, position)
        order = [bodies[i] for i in range(n)]
        to_body = [frames[i] for i in range(n)]
        index_of = {body: i for i, body in enumerate(order)}
        index_of[floor] = FLOOR

        t = cfg.num_frames
        pos, orn = np.zeros((t, n, 3)), np.zeros((t, n, 4))
        lin, ang = np.zeros((t, n, 3)), np.zeros((t, n, 3))
        events: list[ContactEvent] = []

        def state() -> list[tuple]:
            return [body_state(pb, client, body, fr) for body, fr in zip(order, to_body)]

        release = state()
        touching = set(_contacts(pb, client, index_of))  # resting contacts of settled towers are not events
        step = 0
        for frame in range(cfg.first_frame + t):
            if frame >= cfg.first_frame:
                for i, (p, q, v, w) in enumerate(state()):
                    k = frame - cfg.first_frame
                    pos[k, i], orn[k, i], lin[k, i], ang[k, i] = p, q, v, w
            if frame == cfg.first_frame + t - 1:
                break
            for _ in range(steps):
                pb.stepSimulation(physicsClientId=client)
                step += 1
                now = _contacts(pb, client, index_of)
                for key in sorted(set(now) - touching):
                    points, force = now[key]
                    video_frame = max(0, -(-step // steps) - cfg.first_frame)
                    events.append(ContactEvent(video_frame, step, step * dt, key[0], key[1],
                                               tuple(float(v) for v in np.mean(points, axis=0)), force))
                touching = set(now)
    return Trajectories(cfg.fps, cfg.physics_hz, pos, orn, lin, ang, tuple(events), settle_steps, cfg.first_frame,
                        np.array([r[0] for r in release]), np.array([r[1] for r in release]), cfg.contact_model)


__all__ = ["simulate", "Trajectories", "ContactEvent", "direct_client", "collision_shape", "collider_kind",
           "configure_engine", "inertial_frame", "body_state", "lifted_position", "FLOOR", "CONTACT_TOLERANCE",
           "KUBRIC_ENGINE"]
