"""The ``kubric`` renderer: Kubric's Blender/Cycles pipeline at the authors' settings (extra ``vidalign[kubric]``).

The authors rendered with Kubric (PyBullet physics + Blender Cycles on CPU, 64 samples per pixel,
denoised). Here the physics is vidalign's own PyBullet simulation (the same engine and 240 Hz step
Kubric's ``PyBullet`` simulator wraps), and the recorded poses are keyframed onto Kubric objects, so a
clip shows exactly the trajectories in its metadata whichever renderer drew it. The light rig follows
the authors' script: a sun of energy U(1, 6) plus key/fill/back point lights (100/75/75 W) at 2.5 m,
1.5 m high. The background follows the scene model as the other renderers draw it: colours are sRGB display
values (made linear for Cycles); a studio background is its floor (colour, or ``floor_texture`` tiled every
``floor_tile_m`` m) and a backdrop wall shown at its declared colour that casts no shadow (Kubric's
``FlatMaterial`` without indirect visibility: a cyclorama lit evenly); an environment map is the world
(Kubric's background and ambient-light HDRI, HDR maps at the display scale of
:func:`~vidalign.simulation.backgrounds.env_display_scale`) over a floor that shows ``floor_texture`` or the
map's ground seen from :data:`~vidalign.simulation.backgrounds.DOME_HEIGHT` (Kubric's dome).

Outputs match :class:`~vidalign.simulation.render.Rendering`: RGB from Blender's PNGs, depth as the distance to
the camera centre (Blender's z-depth from the EXR ``Depth`` pass, converted as Kubric's ``camera.z_to_depth``),
visible masks from the rank-0 object cryptomatte. Textured meshes keep the material Blender imports from their
``.mtl`` (as the authors' GSO objects do). Exposure is Cycles' own (the authors' look), not metered as the
``pybullet`` and ``mitsuba`` renderers meter it. kubric 0.1.1 needs the patches in
:mod:`vidalign.simulation.kubric_compat`.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vidalign.errors import VidalignError
from vidalign.simulation.assets import MATERIALS
from vidalign.simulation.backgrounds import (
    DOME_HEIGHT,
    WALL_OFFSET,
    env_display_scale,
    load_env,
    srgb_to_linear,
)
from vidalign.simulation.geometry import quat_to_matrix
from vidalign.simulation.physics import Trajectories
from vidalign.simulation.render import Rendering, quiet_stdout
from vidalign.simulation.scene import Scene, SceneObject

_LIGHTS = (("key_light", 100.0), ("fill_light", 75.0), ("back_light", 75.0))


def write_cylinder_obj(path: Path, segments: int = 48) -> str:
    """A closed unit cylinder (radius 1, z ∈ [−1, 1]) as OBJ; Kubric has no cylinder primitive."""
    lines = []
    for z in (-1.0, 1.0):
        for k in range(segments):
            a = 2 * math.pi * k / segments
            lines.append(f"v {math.cos(a):.6f} {math.sin(a):.6f} {z:.1f}")
    lines += ["v 0 0 -1", "v 0 0 1"]
    bottom_c, top_c = 2 * segments + 1, 2 * segments + 2
    for k in range(segments):
        a0, a1 = k + 1, (k + 1) % segments + 1
        b0, b1 = a0 + segments, a1 + segments
        lines += [f"f {a0} {a1} {b1} {b0}", f"f {bottom_c} {a1} {a0}", f"f {top_c} {b0} {b1}"]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def _linear(kb: Any, srgb: Any) -> Any:
    """A declared colour (sRGB display value) as the linear colour Blender's shaders take."""
    return kb.Color(*(float(v) for v in srgb_to_linear(np.asarray(srgb, np.float64))), 1.0)


def _material(kb: Any, obj: SceneObject) -> Any:
    m = MATERIALS[obj.material]
    return kb.PrincipledBSDFMaterial(color=_linear(kb, obj.rgb), roughness=m["roughness"],
                                     metallic=m["metallic"], specular=m["specular"])


def _floor_albedo(bpy: Any, blender_obj: Any, image: str, tile: float | None, scale: float = 1.0) -> None:
    """Replace the floor's base colour by an image: tiled every ``tile`` m in world x, y (first image row at
    y = 0, as the other renderers), or (``tile`` None) an equirectangular map looked up in the direction from
    the dome's eye height, times ``scale``, clamped to 1."""
    tree = blender_obj.active_material.node_tree
    bsdf = next(n for n in tree.nodes if n.type == "BSDF_PRINCIPLED")
    geometry = tree.nodes.new("ShaderNodeNewGeometry")
    if tile is not None:
        mapping = tree.nodes.new("ShaderNodeMapping")
        mapping.inputs["Scale"].default_value = (1.0 / tile, -1.0 / tile, 1.0)  # Blender's v runs up the image
        tex = tree.nodes.new("ShaderNodeTexImage")
        tex.extension = "REPEAT"
        tree.links.new(geometry.outputs["Position"], mapping.inputs["Vector"])
        tree.links.new(mapping.outputs["Vector"], tex.inputs["Vector"])
        tex.image = bpy.data.images.load(image, check_existing=True)
        tree.links.new(tex.outputs["Color"], bsdf.inputs["Base Color"])
        return
    eye = tree.nodes.new("ShaderNodeVectorMath")
    eye.operation = "SUBTRACT"
    eye.inputs[1].default_value = (0.0, 0.0, DOME_HEIGHT)
    env = tree.nodes.new("ShaderNodeTexEnvironment")
    env.image = bpy.data.images.load(image, check_existing=True)
    gain = tree.nodes.new("ShaderNodeVectorMath")
    gain.operation = "SCALE"
    gain.inputs["Scale"].default_value = float(scale)
    clamp = tree.nodes.new("ShaderNodeVectorMath")
    clamp.operation = "MINIMUM"
    clamp.inputs[1].default_value = (1.0, 1.0, 1.0)
    tree.links.new(geometry.outputs["Position"], eye.inputs[0])
    tree.links.new(eye.outputs["Vector"], env.inputs["Vector"])
    tree.links.new(env.outputs["Color"], gain.inputs[0])
    tree.links.new(gain.outputs["Vector"], clamp.inputs[0])
    tree.links.new(clamp.outputs["Vector"], bsdf.inputs["Base Color"])


@dataclass
class KubricRenderer:
    """Blender Cycles via Kubric; ``samples_per_pixel=64`` and denoising are the authors' settings."""

    samples_per_pixel: int = 64
    use_denoising: bool = True
    adaptive_sampling: bool = False
    threads: int | None = None
    scratch_dir: str | None = None
    keep_scratch: bool = False
    verbose: bool = False
    name: str = "kubric"

    def __post_init__(self) -> None:
        if int(self.samples_per_pixel) < 1:
            raise VidalignError(f"kubric renderer: samples_per_pixel={self.samples_per_pixel!r} is invalid; use >= 1")

    def _objects(self, kb: Any, scene: Scene, tmp: Path) -> list[Any]:
        out = []
        for obj in scene.objects:
            common = {"name": f"object_{obj.index:02d}", "material": _material(kb, obj)}
            if obj.shape == "mesh" and obj.texture:  # as the authors' GSO objects: keep the .mtl's textured material
                del common["material"]
            if obj.shape == "sphere":
                kobj = kb.Sphere(scale=obj.half_extents[0], **common)
            elif obj.shape == "box":
                kobj = kb.Cube(scale=tuple(obj.half_extents), **common)  # Blender's cube spans [-1, 1]
            elif obj.shape == "cylinder":
                path = tmp / "cylinder.obj"
                if not path.exists():
                    write_cylinder_obj(path)
                r, h = obj.half_extents[0], obj.half_extents[2]
                kobj = kb.FileBasedObject(asset_id=obj.asset_id, render_filename=str(path), scale=(r, r, h),
                                          render_import_kwargs={"axis_forward": "Y", "axis_up": "Z"}, **common)
            else:  # OBJ meshes are z-up in PyBullet: import without Blender's Y-up conversion
                kobj = kb.FileBasedObject(asset_id=obj.asset_id, render_filename=obj.mesh, scale=tuple(obj.scale),
                                          render_import_kwargs={"axis_forward": "Y", "axis_up": "Z"}, **common)
            out.append(kobj)
        return out

    def render(self, scene: Scene, trajectories: Trajectories) -> Rendering:
        from vidalign.simulation.kubric_compat import (
            configure_cycles,
            import_kubric,
            mm3hash,
            read_exr_layers,
        )

        kb, blender_cls, bpy = import_kubric()
        cam, cfg = scene.camera, scene.config
        t, w = trajectories.num_frames, cam.resolution
        tmp = Path(tempfile.mkdtemp(prefix="vidalign_kubric_", dir=self.scratch_dir))
        quiet = contextlib.nullcontext() if self.verbose else quiet_stdout(stderr=True)  # Blender's chatter
        try:
            with quiet:
                ks = kb.Scene(frame_start=1, frame_end=t, frame_rate=cfg.fps, step_rate=cfg.physics_hz,
                              resolution=(w, w), gravity=(0.0, 0.0, cfg.gravity))
                renderer = blender_cls(ks, scratch_dir=str(tmp), adaptive_sampling=self.adaptive_sampling,
                                       use_denoising=self.use_denoising, samples_per_pixel=int(self.samples_per_pixel),
                                       verbose=self.verbose)
                configure_cycles(bpy, self.threads)
                camera = kb.PerspectiveCamera(name="camera", focal_length=cam.focal_length_mm,
                                              sensor_width=cam.sensor_width_mm, position=cam.position,
                                              look_at=cam.target)
                ks += camera
                ks.camera = camera
                bg = scene.background
                reach = cam.far + float(np.linalg.norm(np.asarray(cam.position[:2]))) + 1.0  # to the far clip
                floor_half = 15.0 if bg.has_wall else reach
                floor = kb.Cube(name="floor", scale=(floor_half, floor_half, 0.01), position=(0.0, 0.0, -0.01),
                                static=True, background=True,
                                material=kb.PrincipledBSDFMaterial(color=_linear(kb, bg.floor_rgb), roughness=0.8))
                ks += floor
                if bg.has_wall:
                    ks.background = _linear(kb, bg.wall_rgb)
                    ks.ambient_illumination = kb.Color(0.05, 0.05, 0.05, 1.0)
                    # shown at its declared colour, casting no shadow and no light: a cyclorama lit evenly
                    ks += kb.Cube(name="backdrop", scale=(0.01, 15.0, 15.0),  # front face on the wall plane
                                  position=(cfg.spawn_max[0] + WALL_OFFSET + 0.01, 0.0, 0.0),
                                  static=True, background=True,
                                  material=kb.FlatMaterial(color=_linear(kb, bg.wall_rgb), indirect_visibility=False))
                else:
                    scale = env_display_scale(load_env(bg.env_map), bg.env_map)
                    renderer._set_background_hdri(bg.env_map)  # camera rays: the backdrop
                    renderer._set_ambient_light_hdri(bg.env_map)  # every other ray: the light
                    for node in (renderer.bg_node, renderer.ambient_node):
                        node.inputs["Strength"].default_value = scale
                if bg.floor_texture:
                    _floor_albedo(bpy, floor.linked_objects[renderer], bg.floor_texture, bg.floor_tile_m)
                elif not bg.has_wall:
                    _floor_albedo(bpy, floor.linked_objects[renderer], bg.env_map, None,
                                  env_display_scale(load_env(bg.env_map), bg.env_map))
                light = scene.lighting
                ks += kb.DirectionalLight(name="sun", euler=(math.radians(light.sun_euler_deg[0]),
                                                             math.radians(light.sun_euler_deg[1]), 0.0),
                                          intensity=light.sun_energy)
                angles = (light.key_angles_deg[0], light.fill_angles_deg[0], 180.0)
                for (lname, energy), horizontal in zip(_LIGHTS, angles):
                    a = math.radians(horizontal)
                    ks += kb.PointLight(name=lname, position=(-2.5 * math.cos(a), -2.5 * math.sin(a), 1.5),
                                        intensity=energy)
                kobjs = self._objects(kb, scene, tmp)
                for kobj in kobjs:
                    ks += kobj
                for i, (obj, kobj) in enumerate(zip(scene.objects, kobjs)):
                    shift = np.asarray(obj.mesh_offset) * np.asarray(obj.scale) if obj.shape == "mesh" else np.zeros(3)
                    for f in range(t):
                        q = trajectories.orientations[f, i]
                        kobj.position = tuple(trajectories.positions[f, i] - quat_to_matrix(q) @ shift)
                        kobj.quaternion = (float(q[3]), float(q[0]), float(q[1]), float(q[2]))  # Kubric: wxyz
                        kobj.keyframe_insert("position", f + 1)
                        kobj.keyframe_insert("quaternion", f + 1)
                renderer.render(png_filepath=str(tmp / "images" / "frame_"), exr_filepath=str(tmp / "exr" / "frame_"))
                return self._read_back(scene, kobjs, tmp, t, w, mm3hash, read_exr_layers)
        finally:
            if not self.keep_scratch:
                shutil.rmtree(tmp, ignore_errors=True)

    def _read_back(self, scene: Scene, kobjs: list[Any], tmp: Path, t: int, w: int, mm3hash: Any,
                   read_exr_layers: Any) -> Rendering:
        from PIL import Image

        pngs = sorted((tmp / "images").glob("*.png"))
        exrs = sorted((tmp / "exr").glob("*.exr"))
        if len(pngs) != t or len(exrs) != t:
            raise VidalignError(f"kubric renderer: Blender wrote {len(pngs)} PNG and {len(exrs)} EXR frames for "
                                f"{t} frames in {tmp}; rerun with verbose=True to see Blender's log")
        ids = np.array([mm3hash(k.uid) for k in kobjs], dtype=np.uint32)[:, None, None]
        rgb = np.zeros((t, w, w, 3), np.uint8)
        depth = np.zeros((t, w, w), np.float32)
        masks = np.zeros((t, len(kobjs), w, w), bool)
        for f, (png, exr) in enumerate(zip(pngs, exrs)):
            with Image.open(png) as im:
                rgb[f] = np.asarray(im.convert("RGB"))
            layers = read_exr_layers(str(exr), ("Depth.V", "CryptoObject00.R"))
            depth[f] = np.minimum(scene.camera.z_to_distance(layers["Depth.V"]), scene.camera.far)
            rank0 = np.ascontiguousarray(layers["CryptoObject00.R"], dtype=np.float32).view(np.uint32)
            masks[f] = rank0[None] == ids
        return Rendering(rgb, depth, masks, self.name,
                         {"samples_per_pixel": int(self.samples_per_pixel), "use_denoising": self.use_denoising,
                          "engine": "cycles", "device": "CPU"})


__all__ = ["KubricRenderer", "write_cylinder_obj"]
