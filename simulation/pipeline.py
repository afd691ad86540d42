"""One clip end to end: ``generate_clip(config, seed)`` = sample → simulate → render, and its metadata.

Everything a physics post-training or evaluation pipeline needs lands in :func:`clip_metadata`: the
seed and full scene config, camera intrinsics/extrinsics, the background (id, environment map, floor), every
object's asset, mesh, texture, scale, mass, friction, restitution, collider, pose at release and per-frame
trajectory, the contact events and the prompt. Frame k of the video is ``times[k]`` seconds after release
(``first_frame / fps`` for frame 0, as Kubric renders frames 1..32).
IO (encoding, shards, files) stays with the callers: the builder and the exporters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from vidalign.simulation.config import DropSceneConfig
from vidalign.simulation.physics import Trajectories, simulate
from vidalign.simulation.render import DEPTH_KIND, Rendering, render
from vidalign.simulation.scene import Scene, sample_scene
from vidalign.simulation.text import caption

FORMAT_VERSION = 2  # 2: frame 0 is first_frame/fps after release, depth is the distance to the camera centre


@dataclass(frozen=True)
class Clip:
    scene: Scene
    trajectories: Trajectories
    rendering: Rendering

    @property
    def prompt(self) -> str:
        return self.scene.prompt


def generate_clip(config: DropSceneConfig, seed: int, renderer: str = "pybullet",
                  renderer_options: dict[str, Any] | None = None) -> Clip:
    """Sample, simulate and render the clip for ``(config, seed)``."""
    scene = sample_scene(config, seed)
    trajectories = simulate(scene)
    return Clip(scene, trajectories, render(scene, trajectories, renderer, **(renderer_options or {})))


def clip_metadata(clip: Clip, caption_mode: str = "prompt", decimals: int = 6) -> dict[str, Any]:
    """The JSON record of a clip (see the module docstring); mask channel i is ``objects[i]``."""
    scene, traj, ren = clip.scene, clip.trajectories, clip.rendering
    base = scene.to_dict()
    r = lambda x: np.round(np.asarray(x, dtype=np.float64), decimals).tolist()  # noqa: E731
    from vidalign.simulation.physics import collider_kind

    objects = []
    for i, obj in enumerate(base["objects"]):
        if traj.release_positions is not None:  # towers settled, droppers lifted: the pose at release
            obj["initial_position"] = r(traj.release_positions[i])
            obj["initial_orientation_xyzw"] = r(traj.release_orientations[i])
        obj["collider"] = collider_kind(scene.objects[i], scene.config.decompose)
        obj["trajectory"] = {
            "positions": r(traj.positions[:, i]), "orientations_xyzw": r(traj.orientations[:, i]),
            "linear_velocities": r(traj.linear_velocities[:, i]),
            "angular_velocities": r(traj.angular_velocities[:, i]),
        }
        obj["first_contact_frame"] = traj.first_contact_frame(i)
        objects.append(obj)
    return {
        "format_version": FORMAT_VERSION,
        "seed": scene.seed,
        "prompt": scene.prompt,
        "caption": caption(scene.prompt, caption_mode),
        "fps": scene.config.fps,
        "num_frames": traj.num_frames,
        "height": scene.camera.resolution,
        "width": scene.camera.resolution,
        "scene_config": base["config"],
        "camera": base["camera"],
        "camera_steps_back": base["camera_steps_back"],
        "background": base["background"],
        "lighting": base["lighting"],
        "renderer": {"name": ren.renderer, **ren.options},
        "objects": objects,
        "primary_object": base["primary_object"],
        "mask_order": base["mask_order"],
        "contacts": [c.to_dict() for c in traj.contacts],
        "settle_steps": traj.settle_steps,
        "first_frame": traj.first_frame,
        "contact_model": traj.contact_model,
        "times": r(traj.times),
        "depth": {"unit": "m", "kind": DEPTH_KIND, "dtype": "float16"},
        "split": {"objects": scene.config.split, "background": scene.background.split},
        "assets": sorted({o.asset_id for o in scene.objects}),
        "background_id": scene.background.id,
    }


__all__ = ["Clip", "generate_clip", "clip_metadata", "FORMAT_VERSION"]
