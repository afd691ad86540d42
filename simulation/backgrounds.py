"""Backgrounds: environment maps (a folder of yours, or procedural skies) over floors (procedural ground textures).

PISA's scenes stand in an HDRI dome: the panorama is the backdrop, the light and, projected onto the dome's
floor, the ground. Here:

- ``background_dir``: equirectangular maps (``.hdr``, ``.exr`` with the ``exr`` extra, ``.png``, ``.jpg``), or a
  Kubric HDRI manifest (``{"assets": {id: {"asset_type": "Texture", ...}}}`` with ``<id>.tar.gz``/``<id>/``).
  Each map is a background; its lower hemisphere is projected onto the floor from the capture height
  (:data:`DOME_HEIGHT`), like Kubric's dome. Maps split seen/unseen like objects.
- no folder (``backgrounds="procedural"``, the default): deterministic procedural skies × ground textures
  (concrete, wood, tiles, grass, sand, slate), generated once into the cache as PNG files, so a fresh machine
  renders natural-looking scenes with no download;
- ``backgrounds="studio"``: a plain or textured floor and a coloured backdrop wall (the earlier look).

Conventions (every renderer follows them): maps are z up and use Blender's equirectangular mapping, direction
``d`` → ``u = 0.5 − atan2(d_y, d_x)/2π``, ``v = 0.5 + asin(d_z)/π`` (``v`` = 1 at the top row), so +x (where the
camera looks) is the image centre. RGB values in PNG/JPG files and all ``*_rgb`` colours are sRGB display values;
``.hdr``/``.exr`` maps are linear.
"""

from __future__ import annotations

import functools
import io
import json
import math
import re
from pathlib import Path

import numpy as np

from vidalign.errors import ConfigError, InputError, missing_extra
from vidalign.simulation.assets import Background, pybullet_data_dir
from vidalign.simulation.meshes import atomic_write, cache_dir

DOME_HEIGHT = 1.7  # m: panoramas are shot at eye height; the floor shows their ground as seen from there
WALL_OFFSET = 5.0  # m: a studio wall stands this far behind the spawn region (every renderer)
FOG_START, FOG_END = 25.0, 80.0  # m: where the pybullet renderer fades the floor into the map's horizon
HDR_SKY_LEVEL = 0.75  # display level of an HDR map's sky (cosine-weighted mean luminance); LDR maps show as stored
ENV_EXTENSIONS = (".hdr", ".exr", ".png", ".jpg", ".jpeg")
BACKGROUND_KINDS = ("procedural", "studio", "all")
_VERSION = "v1"


# --------------------------------------------------------------------------------------------------
# colour and image IO
# --------------------------------------------------------------------------------------------------


def srgb_to_linear(c: np.ndarray) -> np.ndarray:
    c = np.asarray(c, dtype=np.float32)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4).astype(np.float32)


def linear_to_srgb(c: np.ndarray) -> np.ndarray:
    c = np.clip(np.asarray(c, dtype=np.float32), 0.0, 1.0)
    return np.where(c <= 0.0031308, c * 12.92, 1.055 * c ** (1 / 2.4) - 0.055).astype(np.float32)


def luminance(rgb: np.ndarray) -> np.ndarray:
    """Rec. 709 luminance of linear RGB ``[..., 3]``."""
    rgb = np.asarray(rgb)
    return rgb[..., 0] * 0.2126 + rgb[..., 1] * 0.7152 + rgb[..., 2] * 0.0722


def read_hdr(path: str) -> np.ndarray:
    """Radiance RGBE (``.hdr``) → linear float32 ``[H, W, 3]`` (flat and run-length encoded scanlines)."""
    data = Path(path).read_bytes()
    header_end = data.find(b"\n\n")
    match = re.search(rb"\n([-+])Y (\d+) ([-+])X (\d+)\n", data[max(0, header_end - 1):header_end + 64])
    if header_end < 0 or not match or not data.startswith(b"#?"):
        raise InputError(path, None, "not a Radiance .hdr file", "export the map as .hdr, .exr or .png")
    h, w = int(match.group(2)), int(match.group(4))
    pos = max(0, header_end - 1) + match.end()
    buf = np.frombuffer(data, dtype=np.uint8, offset=pos)
    out = np.empty((h, w, 4), np.uint8)
    i = 0
    try:
        for y in range(h):
            if 8 <= w < 32768 and buf[i] == 2 and buf[i + 1] == 2 and (buf[i + 2] << 8 | buf[i + 3]) == w:
                i += 4
                for ch in range(4):
                    x = 0
                    while x < w:
                        n = int(buf[i])
                        i += 1
                        if n > 128:
                            out[y, x:x + n - 128, ch] = buf[i]
                            x, i = x + n - 128, i + 1
                        else:
                            out[y, x:x + n, ch] = buf[i:i + n]
                            x, i = x + n, i + n
            else:
                out[y] = buf[i:i + 4 * w].reshape(w, 4)
                i += 4 * w
    except (IndexError, ValueError) as exc:
        raise InputError(path, None, f"truncated .hdr data ({exc})", "re-export the map") from exc
    scale = np.ldexp(1.0, out[..., 3].astype(np.int32) - 136).astype(np.float32)
    rgb = out[..., :3].astype(np.float32) * scale[..., None]
    rgb[out[..., 3] == 0] = 0
    return rgb


def write_hdr(path: Path, rgb: np.ndarray) -> None:
    """Linear float ``[H, W, 3]`` → Radiance RGBE with flat scanlines (every reader accepts them)."""
    rgb = np.maximum(np.asarray(rgb, dtype=np.float64), 0)
    peak = rgb.max(axis=-1)
    mant, expo = np.frexp(peak)
    scale = np.where(peak > 1e-32, mant * 256.0 / np.maximum(peak, 1e-300), 0)
    rgbe = np.zeros(rgb.shape[:2] + (4,), np.uint8)
    rgbe[..., :3] = np.clip(rgb * scale[..., None], 0, 255).astype(np.uint8)
    rgbe[..., 3] = np.where(peak > 1e-32, expo + 128, 0).astype(np.uint8)
    h, w = rgb.shape[:2]
    atomic_write(Path(path), b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n" + f"-Y {h} +X {w}\n".encode() + rgbe.tobytes())


def read_env_map(path: str) -> np.ndarray:
    """An environment image as linear float32 ``[H, W, 3]``."""
    suffix = Path(path).suffix.lower()
    if suffix == ".hdr":
        return read_hdr(path)
    if suffix == ".exr":
        try:
            import OpenEXR
        except ImportError as exc:
            raise missing_extra("exr", "OpenEXR") from exc
        with OpenEXR.File(str(path)) as f:
            channels = f.channels()
            if "RGB" in channels:
                img = np.asarray(channels["RGB"].pixels, dtype=np.float32)
            else:
                img = np.stack([np.asarray(channels[c].pixels, dtype=np.float32) for c in "RGB"], axis=-1)
        return img[..., :3]
    from PIL import Image

    try:
        with Image.open(path) as im:
            return srgb_to_linear(np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0)
    except OSError as exc:
        raise InputError(path, None, f"cannot read image ({exc})", "use .hdr, .exr, .png or .jpg") from exc


@functools.lru_cache(maxsize=32)
def texture_pyramid(path: str) -> tuple[np.ndarray, ...]:
    """Linear-RGB mip levels of an sRGB texture image (2×2 box filter down to one pixel), as every renderer
    filters a tiled floor texture."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            level = srgb_to_linear(np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0)
    except OSError as exc:
        raise InputError(path, "floor_texture", f"cannot read the image ({exc})", "use a readable .png/.jpg") from exc
    levels = [level]
    while min(level.shape[:2]) >= 2:
        h, w = level.shape[0] // 2 * 2, level.shape[1] // 2 * 2
        level = level[:h, :w].reshape(h // 2, 2, w // 2, 2, 3).mean(axis=(1, 3))
        levels.append(level)
    return tuple(levels)


def mip_level(footprint: np.ndarray | float, size: int, levels: int) -> np.ndarray:
    """The mip level that samples a texture of ``size`` columns at ``footprint`` tiles per pixel (the nearest
    power of two of texels per pixel)."""
    lod = np.round(np.log2(np.maximum(np.asarray(footprint, dtype=np.float64) * size, 1e-9)))
    return np.clip(lod, 0, levels - 1).astype(int)


def _downsample(img: np.ndarray, max_width: int) -> np.ndarray:
    while img.shape[1] > max_width and img.shape[0] >= 2:
        h, w = img.shape[0] // 2 * 2, img.shape[1] // 2 * 2
        img = img[:h, :w].reshape(h // 2, 2, w // 2, 2, 3).mean(axis=(1, 3))
    return img


@functools.lru_cache(maxsize=16)
def load_env(path: str, max_width: int = 1024) -> EnvMap:
    """An environment map for lookups (cached per process, downsampled to at most ``max_width`` columns)."""
    return EnvMap(_downsample(read_env_map(path), max_width).astype(np.float32))


class EnvMap:
    """Bilinear lookups of a linear equirectangular map by direction (Blender's mapping, z up)."""

    def __init__(self, image: np.ndarray):
        self.image = image

    def uv(self, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        d = np.asarray(dirs, dtype=np.float64)
        d = d / np.maximum(np.linalg.norm(d, axis=-1, keepdims=True), 1e-12)
        u = 0.5 - np.arctan2(d[..., 1], d[..., 0]) / (2 * math.pi)
        v = 0.5 + np.arcsin(np.clip(d[..., 2], -1, 1)) / math.pi
        return u, v

    def lookup(self, dirs: np.ndarray) -> np.ndarray:
        h, w = self.image.shape[:2]
        u, v = self.uv(dirs)
        x = u * w - 0.5
        y = np.clip((1 - v) * h - 0.5, 0, h - 1)
        x0, y0 = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
        fx, fy = (x - x0)[..., None], (y - y0)[..., None]
        x0m, x1m = x0 % w, (x0 + 1) % w
        y1 = np.minimum(y0 + 1, h - 1)
        im = self.image
        top = im[y0, x0m] * (1 - fx) + im[y0, x1m] * fx
        bottom = im[y1, x0m] * (1 - fx) + im[y1, x1m] * fx
        return (top * (1 - fy) + bottom * fy).astype(np.float32)

    @functools.cached_property
    def hemispheres(self) -> tuple[np.ndarray, np.ndarray]:
        """Cosine-weighted mean radiance of the upper (sky) and lower (ground) hemispheres."""
        h = self.image.shape[0]
        lat = (0.5 - (np.arange(h) + 0.5) / h) * math.pi
        weight = (np.cos(lat) * np.abs(np.sin(lat)))[:, None, None]
        upper, lower = lat > 0, lat < 0
        sky = (self.image[upper] * weight[upper]).sum(axis=(0, 1)) / weight[upper].sum() / self.image.shape[1]
        ground = (self.image[lower] * weight[lower]).sum(axis=(0, 1)) / weight[lower].sum() / self.image.shape[1]
        return sky.astype(np.float32), ground.astype(np.float32)


def env_display_scale(env: EnvMap, path: str) -> float:
    """Display exposure of a map (every renderer shows its sky times this): LDR images (``.png``/``.jpg``) as they
    are; HDR maps (``.hdr``/``.exr``) scaled so their sky's cosine-weighted mean luminance is
    :data:`HDR_SKY_LEVEL`."""
    if not path.lower().endswith((".hdr", ".exr")):
        return 1.0
    sky, _ = env.hemispheres
    return HDR_SKY_LEVEL / max(float(luminance(sky)), 1e-6)


def dome_floor_dirs(points: np.ndarray) -> np.ndarray:
    """Directions under which a panorama shot at :data:`DOME_HEIGHT` above the origin sees floor ``points``."""
    return np.asarray(points, dtype=np.float64) - np.array([0.0, 0.0, DOME_HEIGHT])


# --------------------------------------------------------------------------------------------------
# procedural textures (periodic noise from filtered white noise: tileable by construction)
# --------------------------------------------------------------------------------------------------


def _noise(rng: np.random.Generator, shape: tuple[int, int], scale: float, aniso: tuple[float, float] = (1, 1),
           octaves: int = 5) -> np.ndarray:
    """Tileable fractal noise in [0, 1]: white noise shaped by a 1/f spectrum above ``scale`` cycles."""
    h, w = shape
    fy = np.fft.fftfreq(h)[:, None] * h / aniso[0]
    fx = np.fft.fftfreq(w)[None, :] * w / aniso[1]
    f = np.sqrt(fx ** 2 + fy ** 2)
    spectrum = np.where(f > 0, 1.0 / np.maximum(f, 1e-9) ** (1 + 0.5 * (octaves > 3)), 0.0)
    spectrum *= np.exp(-((f / (scale * 2 ** octaves)) ** 2))
    spectrum *= f >= scale * 0.5
    field = np.real(np.fft.ifft2(np.fft.fft2(rng.standard_normal(shape)) * spectrum))
    field = (field - field.mean()) / (field.std() + 1e-12)
    return np.clip(0.5 + 0.18 * field, 0, 1)


def _mix(a, b, t):
    return np.asarray(a)[None, None] * (1 - t[..., None]) + np.asarray(b)[None, None] * t[..., None]


def ground_texture(kind: str, size: int = 512) -> tuple[np.ndarray, float]:
    """A tileable ground texture (sRGB float ``[size, size, 3]``) and the metres one tile spans."""
    rng = np.random.default_rng(sum(map(ord, kind)) * 7919)
    n = lambda s, **k: _noise(rng, (size, size), s, **k)  # noqa: E731
    yy, xx = np.mgrid[0:size, 0:size] / size
    if kind == "concrete":
        t = 0.6 * n(2) + 0.4 * n(16)
        img = _mix((0.50, 0.49, 0.47), (0.68, 0.67, 0.64), t)
        img *= (1 - 0.25 * (rng.random((size, size)) > 0.985))[..., None]
        return img, _TILE[kind]
    if kind == "wood":
        planks = 5
        row = np.floor(yy * planks).astype(int)
        offset = rng.random(planks)[row]
        grain = n(3, aniso=(8, 0.5))
        rings = 0.5 + 0.5 * np.sin(2 * math.pi * (grain * 6 + offset * 3))
        tone = rng.uniform(-0.08, 0.08, planks)[row]
        img = _mix((0.42, 0.26, 0.14), (0.66, 0.46, 0.28), np.clip(0.55 * rings + 0.45 * n(8) + tone, 0, 1))
        seam = (np.abs((yy * planks) % 1 - 0.5) > 0.485) | (np.abs(((xx + offset) * 1.0) % 1 - 0.5) > 0.497)
        img[seam] *= 0.55
        return img, _TILE[kind]
    if kind == "tiles":
        k = 4
        cell = (np.floor(yy * k) * k + np.floor(xx * k)).astype(int)
        tone = rng.uniform(-0.04, 0.04, k * k)[cell]
        img = _mix((0.80, 0.78, 0.74), (0.90, 0.89, 0.86), np.clip(n(12) + tone, 0, 1))
        grout = (np.abs((yy * k) % 1 - 0.5) > 0.475) | (np.abs((xx * k) % 1 - 0.5) > 0.475)
        img[grout] = (0.45, 0.44, 0.42)
        return img, _TILE[kind]
    if kind == "grass":
        t = 0.5 * n(3) + 0.5 * n(48)
        img = _mix((0.20, 0.33, 0.10), (0.42, 0.56, 0.20), t)
        img *= (0.85 + 0.3 * rng.random((size, size)))[..., None]
        return np.clip(img, 0, 1), _TILE[kind]
    if kind == "sand":
        t = 0.5 * n(2) + 0.5 * n(32)
        img = _mix((0.70, 0.60, 0.44), (0.86, 0.77, 0.60), t)
        img *= (0.92 + 0.16 * rng.random((size, size)))[..., None]
        return np.clip(img, 0, 1), _TILE[kind]
    if kind == "slate":
        t = 0.7 * n(4) + 0.3 * n(24)
        return _mix((0.22, 0.24, 0.27), (0.40, 0.42, 0.45), t), _TILE[kind]
    raise ValueError(f"unknown ground texture {kind!r}")


GROUNDS = ("concrete", "wood", "tiles", "grass", "sand", "slate")
_TILE = {"concrete": 2.0, "wood": 1.0, "tiles": 1.2, "grass": 1.5, "sand": 1.5, "slate": 1.5}
# sky kinds: (zenith, horizon, ground below the horizon, cloud cover), sRGB
SKIES = {
    "clear": ((0.25, 0.45, 0.80), (0.75, 0.85, 0.95), (0.45, 0.42, 0.38), 0.15),
    "hazy": ((0.45, 0.60, 0.80), (0.85, 0.88, 0.90), (0.50, 0.48, 0.44), 0.35),
    "overcast": ((0.62, 0.65, 0.70), (0.80, 0.81, 0.82), (0.42, 0.42, 0.40), 0.9),
    "sunset": ((0.20, 0.28, 0.55), (0.98, 0.66, 0.40), (0.35, 0.28, 0.24), 0.3),
    "dusk": ((0.10, 0.14, 0.30), (0.55, 0.45, 0.55), (0.22, 0.20, 0.22), 0.2),
}


def sky_map(kind: str, width: int = 1024) -> np.ndarray:
    """An equirectangular sky (sRGB float ``[width/2, width, 3]``): gradient, clouds, and a ground below."""
    zenith, horizon, ground, cover = SKIES[kind]
    h = width // 2
    rng = np.random.default_rng(sum(map(ord, kind)) * 104729)
    lat = (0.5 - (np.arange(h) + 0.5) / h)[:, None] * math.pi * np.ones((1, width))
    t = np.clip(np.sin(np.maximum(lat, 0)) ** 0.5, 0, 1)
    img = _mix(horizon, zenith, t)
    clouds = _noise(rng, (h, width), 3, aniso=(1, 2))
    mask = np.clip((clouds - (1 - cover) * 0.75 - 0.2) * 3, 0, 1) * (lat > 0.02)
    cloud_col = np.asarray(horizon) * 0.3 + 0.7 * np.array([0.96, 0.96, 0.97]) * (1 - 0.25 * (kind == "overcast"))
    img = img * (1 - mask[..., None]) + cloud_col[None, None] * mask[..., None]
    below = lat < 0
    fade = np.clip(-lat / 0.08, 0, 1)
    ground_img = _mix(horizon, ground, fade) * (0.9 + 0.2 * _noise(rng, (h, width), 6))[..., None]
    img[below] = ground_img[below]
    return np.clip(img, 0, 1)


def _png(path: Path, img: np.ndarray) -> None:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)).save(buf, format="PNG")
    atomic_write(path, buf.getvalue())


def _cached(name: str, make) -> tuple[str, dict]:
    """``<cache>/backgrounds/<version>/<name>.png`` and its sidecar of mean colours (sRGB), made once."""
    path = cache_dir() / "backgrounds" / _VERSION / f"{name}.png"
    side = path.with_suffix(".json")
    if not (path.is_file() and side.is_file()):
        img = make()
        lin = srgb_to_linear(img)
        h = img.shape[0]
        stats = {"mean": linear_to_srgb(lin.reshape(-1, 3).mean(axis=0)).tolist(),
                 "horizon": linear_to_srgb(lin[h // 2 - max(1, h // 64):h // 2].reshape(-1, 3).mean(axis=0)).tolist()}
        _png(path, img)
        atomic_write(side, json.dumps(stats).encode())
    return str(path), json.loads(side.read_text())


@functools.lru_cache(maxsize=4)
def procedural_backgrounds() -> tuple[Background, ...]:
    """Procedural skies × ground textures (files generated once into the cache)."""
    out = []
    grounds = {g: _cached(f"ground_{g}", lambda g=g: ground_texture(g)[0]) for g in GROUNDS}
    for sky in SKIES:
        env, stats = _cached(f"sky_{sky}", lambda sky=sky: sky_map(sky))
        horizon = tuple(stats["horizon"])
        for g, (tex, tstats) in grounds.items():
            out.append(Background(f"procedural/{sky}_sky/{g}", tuple(tstats["mean"]), horizon, tex, env_map=env,
                                  floor_tile_m=_TILE[g], source="procedural",
                                  ref=f"procedural/sky_{sky}.png+ground_{g}.png"))
    return tuple(out)


# studio floors and walls: (name, sRGB, texture under pybullet_data or None)
_FLOORS = (
    ("gray", (0.55, 0.55, 0.55), None), ("beige", (0.80, 0.72, 0.58), None),
    ("white", (0.88, 0.88, 0.86), None), ("green", (0.35, 0.50, 0.32), None),
    ("slate", (0.30, 0.33, 0.38), None), ("checker", (0.60, 0.50, 0.42), "checker_grid.jpg"),
    ("wood", (0.55, 0.40, 0.25), "table/table.png"),
)
_WALLS = (
    ("white", (0.90, 0.90, 0.90)), ("light gray", (0.72, 0.72, 0.74)), ("sky blue", (0.60, 0.72, 0.90)),
    ("beige", (0.85, 0.80, 0.68)), ("dark gray", (0.32, 0.32, 0.34)), ("pale green", (0.70, 0.82, 0.68)),
)


def studio_backgrounds() -> tuple[Background, ...]:
    root = pybullet_data_dir()
    out = []
    for fname, frgb, ftex in _FLOORS:
        tex = str(Path(root) / ftex) if ftex and (Path(root) / ftex).exists() else None
        for wname, wrgb in _WALLS:
            bid = f"studio/{fname.replace(' ', '_')}_floor/{wname.replace(' ', '_')}_wall"
            out.append(Background(bid, frgb, wrgb, tex, source="studio", floor_tile_m=1.0,
                                  ref=None if tex is None else f"pybullet_data/{ftex}"))
    return tuple(out)


def folder_backgrounds(background_dir: str) -> list[Background]:
    """Every environment map under ``background_dir`` (files, or a Kubric HDRI manifest's Texture assets)."""
    from vidalign.simulation.asset_folders import _extract

    root = Path(background_dir)
    out: dict[str, Background] = {}
    for manifest in sorted(root.rglob("*.json")):
        try:
            data = json.loads(manifest.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError):
            continue
        if not isinstance(data, dict) or not isinstance(data.get("assets"), dict):
            continue
        for key in sorted(data["assets"]):
            entry = data["assets"][key]
            if entry.get("asset_type") != "Texture":
                continue
            folder = manifest.parent / key
            if not folder.is_dir() and (manifest.parent / f"{key}.tar.gz").is_file():
                folder = _extract(manifest.parent / f"{key}.tar.gz", key)
            name = str((entry.get("kwargs") or {}).get("filename", "")).replace("{asset_dir}/", "")
            path = folder / name if name else next(iter(sorted(folder.glob("*.hdr"))), None)
            if path is None or not Path(path).is_file():
                raise InputError(manifest, f"assets.{key}", "its map file is missing", "extract the HDRI archives")
            out[key] = Background(f"env/{key}", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), None, env_map=str(Path(path).resolve()),
                                  source=str(manifest.resolve()), ref=f"background_dir/{key}")
    for path in sorted(p for p in root.rglob("*") if p.suffix.lower() in ENV_EXTENSIONS and p.is_file()):
        key = path.stem
        if key in out or any(part.startswith(".") for part in path.relative_to(root).parts):
            continue
        if path.parent != root and (path.parent / "data.json").exists():
            continue  # part of a Kubric texture folder handled above
        out[key] = Background(f"env/{key}", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), None, env_map=str(path.resolve()),
                              source=f"{root.resolve()}#maps", ref=f"background_dir/{path.relative_to(root).as_posix()}")
    if not out:
        raise ConfigError(f"DropSceneConfig.background_dir={background_dir!r} is invalid: it holds no environment "
                          f"maps ({', '.join(ENV_EXTENSIONS)}); point it at a folder of equirectangular panoramas")
    return list(out.values())


def load_backgrounds(background_dir: str | None, kind: str = "procedural") -> list[Background]:
    if background_dir is not None:
        return folder_backgrounds(background_dir)
    if kind == "procedural":
        return list(procedural_backgrounds())
    if kind == "studio":
        return list(studio_backgrounds())
    return list(procedural_backgrounds()) + list(studio_backgrounds())


__all__ = ["DOME_HEIGHT", "WALL_OFFSET", "FOG_START", "FOG_END", "HDR_SKY_LEVEL", "luminance", "env_display_scale",
           "texture_pyramid", "mip_level", "ENV_EXTENSIONS", "BACKGROUND_KINDS", "EnvMap", "load_env", "read_env_map", "read_hdr",
           "write_hdr", "srgb_to_linear", "linear_to_srgb", "dome_floor_dirs", "ground_texture", "sky_map",
           "procedural_backgrounds", "studio_backgrounds", "folder_backgrounds", "load_backgrounds", "GROUNDS",
           "SKIES"]
