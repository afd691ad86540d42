"""A restricted unpickler for the authors' track pickles: numpy arrays of plain dtypes and builtin values only.

SpatialAlign's ``detection.py`` stores detection tracks with ``pickle.dump`` (any protocol: numpy arrays arrive
through ``_reconstruct`` + ``__setstate__`` up to protocol 4, through ``_frombuffer`` with protocol 5). Loading a
pickle can run code, so vidalign reads them only behind ``--allow-pickle``, and then through this unpickler: any
global outside a short allow-list is refused, numpy's constructors are wrapped, and every dtype or array state is
checked *before* it takes effect, so raw bytes can never be read as object pointers.
"""

from __future__ import annotations

import io
import pickle

import numpy as np

from vidalign.errors import InputError

_ALLOWED_BUILTINS = frozenset({"list", "tuple", "dict", "set", "frozenset", "int", "float", "str", "bytes",
                               "bytearray", "bool", "complex", "slice", "range"})
_PLAIN_KINDS = frozenset("biufcSU")  # bool, ints, floats, complex, byte and unicode strings: no object pointers


def _plain_dtype(d) -> bool:
    """A dtype whose items hold no object references, with the flags numpy itself gives that type."""
    try:
        return (isinstance(d, np.dtype) and d.kind in _PLAIN_KINDS and not d.hasobject and d.fields is None
                and d.flags == np.dtype(d.str).flags)
    except TypeError:
        return False


def _refuse(what: str):
    raise pickle.UnpicklingError(f"refusing to load {what}")


def _np_attr(module: str, name: str):
    import importlib

    return getattr(importlib.import_module(module), name)


def _safe_dtype(obj, align=False, copy=False):
    """``numpy.dtype`` that always copies (``copy=False`` would hand out numpy's shared builtin dtypes)."""
    if not isinstance(obj, str):
        _refuse(f"numpy.dtype({obj!r})")
    return np.dtype(obj, bool(align), True)


def _ndarray_marker(*args, **kwargs):
    _refuse("a direct numpy.ndarray(...) call")


def _check_size(shape, dtype) -> None:
    """Refuse an array larger than the readers' limit before numpy allocates it."""
    from vidalign.inputs import max_array_bytes

    dims = shape if isinstance(shape, (tuple, list)) else (shape,)
    if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in dims):
        _refuse(f"an array shape {shape!r}")
    n = 1
    for d in dims:
        n *= d
    size = n * np.dtype(dtype).itemsize
    if size > max_array_bytes():
        _refuse(f"an array of {size:,} bytes (shape {tuple(dims)}; limit $VIDALIGN_MAX_ARRAY_BYTES)")


def _safe_reconstruct(module: str):
    inner = _np_attr(module, "_reconstruct")

    def _reconstruct(cls, shape, typecode):
        if cls is not _ndarray_marker or not isinstance(typecode, (bytes, str)):
            _refuse(f"numpy _reconstruct({cls!r}, ...)")
        _check_size(shape, np.uint8)
        return inner(np.ndarray, shape, typecode)

    return _reconstruct


def _safe_frombuffer(module: str):
    inner = _np_attr(module, "_frombuffer")

    def _frombuffer(buf, dtype, shape, order):
        if not isinstance(buf, (bytes, bytearray)) or not _plain_dtype(dtype):
            _refuse(f"numpy _frombuffer of {type(buf).__name__} as {dtype!r}")
        _check_size(shape, dtype)
        return inner(buf, dtype, shape, order)

    return _frombuffer


def _safe_scalar(module: str):
    inner = _np_attr(module, "scalar")

    def scalar(dtype, data=None):
        if not _plain_dtype(dtype) or not isinstance(data, (bytes, type(None))):
            _refuse(f"numpy scalar of {dtype!r}")
        return inner(dtype, data) if data is not None else inner(dtype)

    return scalar


_NUMPY_FACTORIES = {
    **{(m, "_reconstruct"): _safe_reconstruct for m in ("numpy.core.multiarray", "numpy._core.multiarray")},
    **{(m, "scalar"): _safe_scalar for m in ("numpy.core.multiarray", "numpy._core.multiarray")},
    # protocol 5 pickles rebuild arrays with _frombuffer(bytes, dtype, shape, order): bytes reinterpreted as a
    # plain dtype, nothing else
    **{(m, "_frombuffer"): _safe_frombuffer for m in ("numpy.core.numeric", "numpy._core.numeric")},
}


class _RestrictedUnpickler(pickle._Unpickler):
    """Builds only numpy arrays/scalars of plain dtypes (no object arrays) and builtin values; any other global is
    refused, and every numpy dtype or array state is checked before it can take effect.

    The pure-Python unpickler is used so that ``BUILD`` (``__setstate__``) can be checked: a dtype state with
    the object flag, or an array of an object dtype, would let raw bytes be read as object pointers.
    """

    dispatch = dict(pickle._Unpickler.dispatch)

    def find_class(self, module: str, name: str):
        if module == "builtins" and name in _ALLOWED_BUILTINS:
            return super().find_class(module, name)
        if (module, name) in _NUMPY_FACTORIES:
            return _NUMPY_FACTORIES[(module, name)](module)
        if (module, name) == ("numpy", "dtype"):
            return _safe_dtype
        if (module, name) == ("numpy", "ndarray"):
            return _ndarray_marker
        if (module, name) == ("_codecs", "encode"):  # protocol 2 writes bytes as _codecs.encode(str, "latin1")
            return super().find_class(module, name)
        _refuse(f"{module}.{name}")

    def _load_build(self):
        state, inst = self.stack[-1], self.stack[-2]
        if isinstance(inst, np.dtype):
            probe = np.dtype(inst, copy=True)
            probe.__setstate__(state)
            if not _plain_dtype(probe):
                _refuse(f"a numpy dtype state {state!r}")
        elif isinstance(inst, np.ndarray):
            if not isinstance(state, tuple) or len(state) < 4 or not _plain_dtype(state[2]):
                _refuse("a numpy array of a dtype with object references")
            _check_size(state[1], state[2])
        elif not isinstance(inst, (list, dict, set)):
            _refuse(f"a state for {type(inst).__name__}")
        pickle._Unpickler.load_build(self)

    dispatch[pickle.BUILD[0]] = _load_build


def restricted_load(data: bytes, source: str) -> object:
    """Unpickle ``data`` allowing only numpy arrays and builtins."""
    try:
        return _RestrictedUnpickler(io.BytesIO(data)).load()
    except (pickle.UnpicklingError, EOFError, AttributeError, ValueError, TypeError, MemoryError, OverflowError,
            IndexError, KeyError, RecursionError, UnicodeError) as exc:
        raise InputError(source, None, f"cannot be read as an authors' track pickle ({exc})",
                         "convert it to tracks JSONL with trusted tools") from None
