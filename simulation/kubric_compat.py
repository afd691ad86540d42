"""Every compatibility patch that makes kubric 0.1.1 import and render on today's stack, in one place.

Pinned versions (extra ``vidalign[kubric]``): ``kubric==0.1.1`` with ``bpy==4.2.23`` (Blender 4.2 LTS
as a Python module, Python 3.11). kubric 0.1.1 was written against Blender 2.9x, TFDS 4.0 and numpy
< 1.24; :func:`import_kubric` applies the patches below (each says what it fixes) before and after
importing it, once per process. Nothing here runs unless the kubric renderer is asked for, and
nothing is imported from kubric or bpy at module import time: importing kubric's ``safeimport``
without bpy calls ``sys.exit``, so availability is checked with ``importlib.util.find_spec`` first.

Verified install (Python 3.11, numpy 2.x; kubric's declared TensorFlow/TFDS/Beam/scikit-learn dependencies
are not needed thanks to patches 2–4)::

    pip install bpy==4.2.23 OpenEXR traitlets munch pyquaternion singledispatchmethod pypng imageio pandas
    pip install --no-deps kubric==0.1.1
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import pathlib
import shutil
import sys
import types
from collections.abc import Iterator
from typing import Any

import numpy as np

from vidalign.errors import VidalignError, missing_extra

KUBRIC_VERSION = "0.1.1"
BPY_VERSION = "4.2.23"
_STATE: dict[str, Any] = {}


def kubric_available() -> bool:
    """Whether both kubric and bpy are installed (without importing either)."""
    return all(importlib.util.find_spec(m) is not None for m in ("kubric", "bpy"))


def _has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a parent package is missing or broken
        return False


# --- patch 1: numpy >= 1.24 removed the ``np.float`` alias; kubric.randomness.position_sampler and
#     PhysicalObject.bbox_3d call ``np.array(..., dtype=np.float)`` and raise AttributeError.
def _patch_numpy_aliases() -> None:
    if "float" not in np.__dict__:
        np.float = float  # type: ignore[attr-defined]


# --- patch 2: kubric/__init__ imports ``tensorflow_datasets.core.utils.generic_path.as_path``, a module
#     TFDS removed (paths moved to etils.epath), and kubric.utils / custom_types / assets use
#     ``tfds.core.as_path``, ``tfds.core.ReadWritePath`` and ``tf.io.gfile``. When TensorFlow/TFDS are
#     absent or too new, scoped stand-ins backed by pathlib/shutil are put in ``sys.modules`` only while
#     kubric imports (kubric keeps its references; nobody else ever sees the stand-ins).
def _gfile_module() -> types.ModuleType:
    gfile = types.ModuleType("tensorflow.io.gfile")
    gfile.GFile = open  # type: ignore[attr-defined]
    gfile.exists = lambda p: pathlib.Path(p).exists()  # type: ignore[attr-defined]
    gfile.makedirs = lambda p: pathlib.Path(p).mkdir(parents=True, exist_ok=True)  # type: ignore[attr-defined]
    gfile.copy = lambda src, dst, overwrite=False: shutil.copyfile(src, dst)  # type: ignore[attr-defined]
    return gfile


def _stand_ins() -> dict[str, types.ModuleType]:
    mods: dict[str, types.ModuleType] = {}
    if not _has_module("tensorflow"):
        tf = types.ModuleType("tensorflow")
        tf.io = types.SimpleNamespace(gfile=_gfile_module())  # type: ignore[attr-defined]
        mods["tensorflow"] = tf
    if not _has_module("tensorflow_datasets"):
        core = types.ModuleType("tensorflow_datasets.core")
        core.as_path = pathlib.Path  # type: ignore[attr-defined]
        core.ReadWritePath = pathlib.Path  # type: ignore[attr-defined]
        tfds = types.ModuleType("tensorflow_datasets")
        tfds.core = core  # type: ignore[attr-defined]
        api = types.ModuleType("tensorflow_datasets.public_api")
        api.core = core  # type: ignore[attr-defined]
        utils = types.ModuleType("tensorflow_datasets.core.utils")
        mods.update({"tensorflow_datasets": tfds, "tensorflow_datasets.public_api": api,
                     "tensorflow_datasets.core": core, "tensorflow_datasets.core.utils": utils})
    if not _has_module("tensorflow_datasets.core.utils.generic_path"):
        generic = types.ModuleType("tensorflow_datasets.core.utils.generic_path")
        generic.as_path = pathlib.Path  # type: ignore[attr-defined]
        mods["tensorflow_datasets.core.utils.generic_path"] = generic
    # --- patch 3: OpenEXR >= 3.3 wheels may ship without the legacy ``Imath`` module that
    #     kubric.renderer.blender_utils imports at the top; it is only used by kubric's EXR reader,
    #     which :func:`read_exr_layers` replaces.
    if not _has_module("Imath"):
        imath = types.ModuleType("Imath")
        imath.PixelType = types.SimpleNamespace(UINT=0, HALF=1, FLOAT=2)  # type: ignore[attr-defined]
        mods["Imath"] = imath
    # --- patch 4: kubric.renderer.blender_utils imports scikit-learn (a heavy dependency) only for
    #     ``sklearn.utils.murmurhash3_32`` (Cryptomatte ids); without it, a stand-in uses the pure-Python
    #     :func:`murmurhash3_32` below, which returns the same values.
    if not _has_module("sklearn"):
        sk_utils = types.ModuleType("sklearn.utils")
        sk_utils.murmurhash3_32 = lambda key, seed=0, positive=False: _murmur_compat(key, seed, positive)  # type: ignore[attr-defined]
        sklearn = types.ModuleType("sklearn")
        sklearn.utils = sk_utils  # type: ignore[attr-defined]
        mods.update({"sklearn": sklearn, "sklearn.utils": sk_utils})
    return mods


def _murmur_compat(key: Any, seed: int, positive: bool) -> int:
    h = murmurhash3_32(key.encode("utf-8") if isinstance(key, str) else bytes(key), seed)
    return h if positive or h < 2 ** 31 else h - 2 ** 32


@contextlib.contextmanager
def _scoped_modules(mods: dict[str, types.ModuleType]) -> Iterator[None]:
    saved = {name: sys.modules.get(name) for name in mods}
    sys.modules.update(mods)
    try:
        yield
    finally:
        for name, old in saved.items():
            if old is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = old


def _patch_blender(blender_module: Any, blender_utils: Any, core: Any, bpy: Any) -> None:
    blender_cls = blender_module.Blender

    # --- patch 5: the "NLM" denoiser was removed in Blender 3.0 (setting it raises TypeError); use
    #     OpenImageDenoise, Cycles' CPU denoiser.
    def _set_denoising(self: Any, value: bool) -> None:
        self.blender_scene.cycles.use_denoising = bool(value)
        if value:
            self.blender_scene.cycles.denoiser = "OPENIMAGEDENOISE"

    blender_cls.use_denoising = property(lambda self: self.blender_scene.cycles.use_denoising, _set_denoising)

    # --- patch 6: CompositorNodeSepRGBA / CombRGBA (used to route the optical-flow pass) were removed in
    #     Blender 4.0, so kubric's set_up_exr_output_node fails in Blender.__init__. This version writes
    #     only the passes vidalign reads: Image, Depth and the object cryptomatte.
    #     Since Blender 3.0 the depth pass must also be switched on explicitly (``use_pass_z``), which kubric
    #     0.1.1's ``activate_render_passes`` does not do, so its EXRs had no ``Depth`` layer.
    def set_up_exr_output_node(layers: tuple[str, ...] = ("Image", "Depth", "CryptoObject00")) -> Any:
        scene = bpy.context.scene
        scene.view_layers[0].use_pass_z = True
        scene.use_nodes = True
        tree = scene.node_tree
        for node in list(tree.nodes):
            tree.nodes.remove(node)
        render_node = tree.nodes.new(type="CompositorNodeRLayers")
        out_node = tree.nodes.new(type="CompositorNodeOutputFile")
        out_node.format.file_format = "OPEN_EXR_MULTILAYER"
        out_node.format.color_depth = "32"  # full floats: cryptomatte ids are float32 bit patterns
        out_node.file_slots.clear()
        for name in layers:
            socket = render_node.outputs.get(name)
            if socket is None:
                continue
            out_node.file_slots.new(name)
            tree.links.new(socket, out_node.inputs.get(name))
        return out_node

    blender_utils.set_up_exr_output_node = set_up_exr_output_node

    # --- patch 7: ``bpy.ops.import_scene.obj`` was removed in Blender 4.0 (the C++ importer is
    #     ``bpy.ops.wm.obj_import`` with enum axes) and ``Mesh.use_auto_smooth`` in 4.1, so kubric's
    #     FileBasedObject handler fails twice. Re-register a handler for OBJ files that uses the new
    #     importer (mapping ``axis_forward``/``axis_up`` to ``forward_axis``/``up_axis``) and joins
    #     multi-object files into one mesh.
    axis = {"X": "X", "Y": "Y", "Z": "Z", "-X": "NEGATIVE_X", "-Y": "NEGATIVE_Y", "-Z": "NEGATIVE_Z"}

    @blender_utils.prepare_blender_object
    def _add_file_object(self: Any, obj: Any) -> Any:
        if obj.render_filename is None:
            return None
        if not obj.render_filename.lower().endswith(".obj"):
            raise VidalignError(f"kubric renderer: only .obj meshes are supported, got {obj.render_filename!r}")
        kwargs = dict(obj.render_import_kwargs)
        forward = axis[str(kwargs.pop("axis_forward", "-Z")).upper()]
        up = axis[str(kwargs.pop("axis_up", "Y")).upper()]
        for sel in list(bpy.context.selected_objects):
            sel.select_set(False)
        bpy.ops.wm.obj_import(filepath=obj.render_filename, forward_axis=forward, up_axis=up, **kwargs)
        imported = list(bpy.context.selected_objects)
        if not imported:
            raise VidalignError(f"kubric renderer: Blender imported nothing from {obj.render_filename!r}")
        bpy.context.view_layer.objects.active = imported[0]
        if len(imported) > 1:
            bpy.ops.object.join()
        blender_obj = bpy.context.view_layer.objects.active
        blender_module.register_object3d_setters(obj, blender_obj)
        obj.observe(blender_module.AttributeSetter(blender_obj, "active_material",
                                                   converter=self._convert_to_blender_object), "material")
        obj.observe(blender_module.AttributeSetter(blender_obj, "scale"), "scale")
        obj.observe(blender_module.KeyframeSetter(blender_obj, "scale"), "scale", type="keyframe")
        return blender_obj

    # --- patch 8: Blender 4.0 rewrote the Principled BSDF: "Specular" → "Specular IOR Level",
    #     "Transmission" → "Transmission Weight", "Emission" → "Emission Color", "Specular Tint" became a
    #     colour and "Transmission Roughness" is gone, so kubric's material handler raises KeyError.
    #     Re-register it with the 4.x socket names, skipping traits that have no socket any more.
    sockets = {"color": "Base Color", "roughness": "Roughness", "metallic": "Metallic",
               "specular": "Specular IOR Level", "ior": "IOR", "transmission": "Transmission Weight",
               "emission": "Emission Color"}

    @blender_utils.prepare_blender_object
    def _add_bsdf_material(self: Any, obj: Any) -> Any:
        mat = bpy.data.materials.new(obj.uid)
        mat.use_nodes = True
        bsdf = mat.node_tree.nodes["Principled BSDF"]
        for trait, socket_name in sockets.items():
            socket = bsdf.inputs.get(socket_name)
            if socket is None:
                continue
            obj.observe(blender_module.AttributeSetter(socket, "default_value"), trait)
            obj.observe(blender_module.KeyframeSetter(socket, "default_value"), trait, type="keyframe")
        return mat

    dispatcher = blender_cls.__dict__["add_asset"]
    dispatcher.register(core.FileBasedObject, _add_file_object)
    dispatcher.register(core.PrincipledBSDFMaterial, _add_bsdf_material)


def import_kubric() -> tuple[Any, Any, Any]:
    """``(kubric, Blender renderer class, bpy)`` with every patch applied; a clear error when missing."""
    if "kubric" in _STATE:
        return _STATE["kubric"], _STATE["Blender"], _STATE["bpy"]
    for module in ("bpy", "kubric"):
        if not _has_module(module):
            raise missing_extra("kubric", module)
    _patch_numpy_aliases()
    try:
        with _scoped_modules(_stand_ins()):
            import bpy  # noqa: I001  (bpy first: kubric.safeimport exits the process without it)
            kubric = importlib.import_module("kubric")
            blender_module = importlib.import_module("kubric.renderer.blender")
            blender_utils = importlib.import_module("kubric.renderer.blender_utils")
            core = importlib.import_module("kubric.core")
    except ImportError as exc:
        raise missing_extra("kubric", exc.name or str(exc)) from exc
    _patch_blender(blender_module, blender_utils, core, bpy)
    _STATE.update(kubric=kubric, Blender=blender_module.Blender, bpy=bpy, blender_utils=blender_utils)
    return kubric, blender_module.Blender, bpy


def configure_cycles(bpy: Any, threads: int | None = None) -> None:
    """Render settings kubric 0.1.1 does not expose, needed for faithful colours on Blender 4.x.

    --- patch 9: Blender 4.x defaults the view transform to "AgX" (2.9x: "Filmic"), which desaturates
    the palette colours the prompts name; "Standard" keeps sRGB colours as given. Cycles is pinned
    to the CPU (the authors' setting) and optionally to a fixed thread count.
    """
    scene = bpy.context.scene
    scene.view_settings.view_transform = "Standard"
    scene.cycles.device = "CPU"
    if threads:
        scene.render.threads_mode = "FIXED"
        scene.render.threads = int(threads)


def murmurhash3_32(data: bytes, seed: int = 0) -> int:
    """MurmurHash3 x86 32-bit (unsigned), the hash Cryptomatte applies to object names."""
    c1, c2, mask = 0xCC9E2D51, 0x1B873593, 0xFFFFFFFF
    h = seed & mask
    n = len(data) - len(data) % 4
    for i in range(0, n, 4):
        k = int.from_bytes(data[i:i + 4], "little")
        k = (k * c1) & mask
        k = ((k << 15) | (k >> 17)) & mask
        h ^= (k * c2) & mask
        h = ((h << 13) | (h >> 19)) & mask
        h = (h * 5 + 0xE6546B64) & mask
    tail, k = data[n:], 0
    for j, byte in enumerate(tail):
        k |= byte << (8 * j)
    if tail:
        k = (k * c1) & mask
        k = ((k << 15) | (k >> 17)) & mask
        h ^= (k * c2) & mask
    h ^= len(data)
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & mask
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & mask
    return h ^ (h >> 16)


def mm3hash(name: str) -> int:
    """Cryptomatte's uint32 id of an object name: MurmurHash3 with the float exponent kept finite."""
    h = murmurhash3_32(name.encode("utf-8"))
    if (h >> 23) & 255 in (0, 255):
        h ^= 1 << 23
    return h


def read_exr_layers(path: str, channels: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Float32 channels of a multilayer EXR by full name (e.g. ``"Depth.V"``), via either OpenEXR API.

    --- patch 10: kubric 0.1.1 reads EXRs with ``OpenEXR.InputFile`` + ``Imath``, which OpenEXR 3.3
    replaced by ``OpenEXR.File``; this reader uses whichever the installed version has. Cryptomatte id
    channels come back as float32 and are reinterpreted as uint32 by the caller (``.view(np.uint32)``).
    """
    import OpenEXR

    out: dict[str, np.ndarray] = {}
    if hasattr(OpenEXR, "File"):
        with OpenEXR.File(str(path), separate_channels=True) as f:
            found = f.channels()
            for name in channels:
                out[name] = np.asarray(found[name].pixels).astype(np.float32, copy=False)
        return out
    import Imath

    exr = OpenEXR.InputFile(str(path))
    window = exr.header()["dataWindow"]
    w, h = window.max.x - window.min.x + 1, window.max.y - window.min.y + 1
    pt = Imath.PixelType(Imath.PixelType.FLOAT)
    for name in channels:
        out[name] = np.frombuffer(exr.channel(name, pt), dtype=np.float32).reshape(h, w)
    return out


__all__ = ["KUBRIC_VERSION", "BPY_VERSION", "kubric_available", "import_kubric", "configure_cycles", "mm3hash", "murmurhash3_32",
           "read_exr_layers"]
