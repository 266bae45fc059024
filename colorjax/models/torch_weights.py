"""A restricted reader for PyTorch's legacy (non-zip) ``torch.save`` format, without torch.

The legacy layout (torch/serialization.py, ``_legacy_save``) is five things back to back:
a pickled magic number, a pickled protocol version, a pickled sys-info dict, the pickle of the
saved object (tensors appear in it as persistent ids naming a storage), a pickled list of the
storage keys, and then, for each key in that order, the storage as an int64 element count
followed by its raw little-endian bytes.

The object pickle is read by an unpickler whose ``find_class`` admits only
``collections.OrderedDict``, ``torch._utils._rebuild_tensor_v2`` and a few
``torch.*Storage`` types, each mapped to a harmless local stand-in, so no pickled code can run
(the same idea as the "safe weight loading" of `colorjax.models.pretrained`). Tensors come back
as NumPy arrays.
"""

from __future__ import annotations

import collections
import io
import pickle
from typing import Any, NamedTuple

import numpy as np

from colorjax.models.safe_pickle import AllowListUnpickler

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # torch.serialization.MAGIC_NUMBER
LEGACY_PROTOCOL = 1001  # torch.serialization.PROTOCOL_VERSION


class TorchWeightsError(RuntimeError):
    """The file is not a plain legacy PyTorch state dict this reader accepts."""


class _StorageType(NamedTuple):
    name: str
    dtype: np.dtype


# Little-endian element types of the legacy typed storages.
_STORAGE_TYPES = {
    name: _StorageType(name, np.dtype(dt)) for name, dt in [
        ("FloatStorage", "<f4"), ("DoubleStorage", "<f8"), ("HalfStorage", "<f2"),
        ("LongStorage", "<i8"), ("IntStorage", "<i4"), ("ShortStorage", "<i2"),
        ("CharStorage", "i1"), ("ByteStorage", "u1"), ("BoolStorage", "?"),
    ]
}


class _StorageRef(NamedTuple):
    """A storage named by a persistent id; its bytes come after the pickles."""
    stype: _StorageType
    key: str
    numel: int


class _TensorRef(NamedTuple):
    """What ``_rebuild_tensor_v2`` returns here: a view to be cut from its storage later."""
    storage: _StorageRef
    offset: int
    size: tuple
    stride: tuple


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None) -> _TensorRef:
    if not isinstance(storage, _StorageRef):
        raise pickle.UnpicklingError("tensor rebuilt from something that is not a storage")
    return _TensorRef(storage, int(storage_offset), tuple(int(s) for s in size),
                      tuple(int(s) for s in stride))


_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    **{("torch", name): st for name, st in _STORAGE_TYPES.items()},
}


class _RestrictedUnpickler(AllowListUnpickler):
    """Admits only the globals above; storages come as persistent ids."""

    ALLOWED, WHAT = _ALLOWED_GLOBALS, "PyTorch weight pickle"

    def persistent_load(self, pid: Any) -> Any:
        # ('storage', storage_type, root_key, location, numel, view_metadata)
        if (not isinstance(pid, tuple) or len(pid) != 6 or pid[0] != "storage"
                or not isinstance(pid[1], _StorageType) or pid[5] is not None):
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r:.80}")
        return _StorageRef(pid[1], str(pid[2]), int(pid[4]))


def restricted_loads(data: bytes) -> Any:
    """Unpickle ``data`` with the restricted unpickler (raises on any other global)."""
    return _RestrictedUnpickler(io.BytesIO(data)).load()


def _plain_load(f: io.BytesIO) -> Any:
    # The header pickles hold only ints, strings and dicts: no globals at all.
    return _NoGlobalsUnpickler(f).load()


class _NoGlobalsUnpickler(AllowListUnpickler):
    ALLOWED, WHAT = {}, "header pickle"


def _view(buf: np.ndarray, t: _TensorRef) -> np.ndarray:
    """The tensor ``t`` as a fresh array cut from its storage (offset, size, stride)."""
    if any(s < 0 for s in t.size) or any(s < 0 for s in t.stride) or len(t.size) != len(t.stride):
        raise TorchWeightsError(f"bad tensor geometry {t.size} / {t.stride}")
    if 0 in t.size:
        return np.zeros(t.size, buf.dtype)
    last = t.offset + sum((n - 1) * s for n, s in zip(t.size, t.stride))
    if t.offset < 0 or last >= buf.size:
        raise TorchWeightsError(f"tensor {t.size} at offset {t.offset} overruns its storage")
    item = buf.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(
        buf[t.offset:], shape=t.size, strides=tuple(s * item for s in t.stride), writeable=False)
    return np.array(view)


def load_legacy(data: bytes) -> Any:
    """The object saved by a legacy ``torch.save``, with every tensor as a NumPy array.

    Raises `TorchWeightsError` for anything else (zip files, other globals, truncation).
    """
    f = io.BytesIO(data)
    try:
        if _plain_load(f) != LEGACY_MAGIC:
            raise TorchWeightsError("not a legacy PyTorch file (bad magic number)")
        if _plain_load(f) != LEGACY_PROTOCOL:
            raise TorchWeightsError("unsupported legacy PyTorch protocol version")
        sys_info = _plain_load(f)
        if not isinstance(sys_info, dict) or not sys_info.get("little_endian", False):
            raise TorchWeightsError("only little-endian legacy files are supported")
        obj = _RestrictedUnpickler(f).load()
        keys = _plain_load(f)
    except TorchWeightsError:
        raise
    except Exception as exc:
        raise TorchWeightsError(f"could not be read safely ({exc})") from exc
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise TorchWeightsError("storage key list is malformed")

    tensors: list[_TensorRef] = []

    def collect(x: Any) -> None:
        if isinstance(x, _TensorRef):
            tensors.append(x)
        elif isinstance(x, dict):
            for v in x.values():
                collect(v)
        elif isinstance(x, (list, tuple)):
            for v in x:
                collect(v)

    collect(obj)
    storages = {t.storage.key: t.storage for t in tensors}
    buffers: dict[str, np.ndarray] = {}
    pos = f.tell()
    for key in keys:
        if key not in storages:
            raise TorchWeightsError(f"storage {key!r} is not used by any tensor")
        dtype = storages[key].stype
        if pos + 8 > len(data):
            raise TorchWeightsError("file truncated in the storage data")
        numel = int(np.frombuffer(data, "<i8", 1, pos)[0])
        pos += 8
        nbytes = numel * dtype.dtype.itemsize
        if numel < 0 or numel != storages[key].numel or pos + nbytes > len(data):
            raise TorchWeightsError(f"storage {key!r} size does not match its record")
        buffers[key] = np.frombuffer(data, dtype.dtype, numel, pos)
        pos += nbytes
    if pos != len(data):
        raise TorchWeightsError(f"{len(data) - pos} unexpected trailing bytes")

    def tensor(t: _TensorRef) -> np.ndarray:
        if t.storage.key not in buffers:
            raise TorchWeightsError(f"storage {t.storage.key!r} has no data")
        return _view(buffers[t.storage.key], t)

    return build_tensors(obj, tensor)


def build_tensors(obj: Any, tensor) -> Any:
    """`obj` with every tensor reference replaced by `tensor(ref)`, containers rebuilt as
    their own types (the readers of both formats end here)."""
    if isinstance(obj, _TensorRef):
        return tensor(obj)
    if isinstance(obj, dict):
        return type(obj)((k, build_tensors(v, tensor)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(build_tensors(v, tensor) for v in obj)
    return obj
