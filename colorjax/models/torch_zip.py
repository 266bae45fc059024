"""A restricted reader for PyTorch's zip ``torch.save`` format (the default since torch 1.6),
without torch.

A zip-format file (torch/serialization.py, ``_save``) is an uncompressed zip archive whose
entries all sit under one folder, ``<prefix>/``: ``data.pkl`` is the pickle of the saved
object, in which every tensor's storage is a persistent id
``('storage', storage_type, key, location, numel)``, and ``data/<key>`` holds that storage's
raw bytes (little-endian unless ``byteorder`` says otherwise). Newer versions add entries
such as ``version``, ``byteorder`` and ``.data/serialization_id``; they are not needed.

``data.pkl`` is read with the same allow-list as the legacy reader
(`colorjax.models.torch_weights`: ``collections.OrderedDict``,
``torch._utils._rebuild_tensor_v2`` and the typed ``torch.*Storage`` names, each a harmless
local stand-in), so no pickled code can run; any other global is refused with one error.
Tensors come back as NumPy arrays cut from their storage by size, stride and offset.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from typing import Any

import numpy as np

from colorjax.models.torch_weights import (
    TorchWeightsError,
    _RestrictedUnpickler,
    _StorageRef,
    _StorageType,
    _view,
    build_tensors,
    load_legacy,
)

ZIP_MAGIC = b"PK\x03\x04"


class _ZipUnpickler(_RestrictedUnpickler):
    """The legacy allow-list; storages are the zip format's 5-field persistent ids."""

    WHAT = "PyTorch weight pickle (zip format)"

    def persistent_load(self, pid: Any) -> Any:
        # ('storage', storage_type, key, location, numel)
        if (not isinstance(pid, tuple) or len(pid) != 5 or pid[0] != "storage"
                or not isinstance(pid[1], _StorageType) or not isinstance(pid[2], str)
                or not isinstance(pid[4], int) or pid[4] < 0):
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r:.80}")
        return _StorageRef(pid[1], pid[2], int(pid[4]))


def is_zip(data: bytes) -> bool:
    return data[:4] == ZIP_MAGIC


def _prefix(names: list[str]) -> str:
    """The one folder holding ``data.pkl`` (torch names it after the file or "archive")."""
    found = [n[:-len("data.pkl")] for n in names
             if n.endswith("/data.pkl") and n.count("/") == 1]
    if len(found) != 1:
        raise TorchWeightsError("not a PyTorch zip file (expected one <prefix>/data.pkl, "
                                f"found {len(found)})")
    return found[0]


def load_zip(data: bytes) -> Any:
    """The object saved by a zip-format ``torch.save``, every tensor as a NumPy array.

    Raises `TorchWeightsError` for anything else: not a zip, no single ``data.pkl``, a
    forbidden global, a missing or short storage, a tensor overrunning its storage.
    """
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        names = archive.namelist()
    except (zipfile.BadZipFile, ValueError) as exc:
        raise TorchWeightsError(f"not a PyTorch zip file ({exc})") from exc
    prefix = _prefix(names)
    infos = {i.filename: i for i in archive.infolist()}

    def read(name: str, limit: int) -> bytes:
        info = infos.get(prefix + name)
        if info is None:
            raise TorchWeightsError(f"entry {name!r} is missing")
        if info.file_size > limit:
            raise TorchWeightsError(f"entry {name!r} is larger ({info.file_size} bytes) "
                                    f"than it may be ({limit})")
        try:
            return archive.read(info)
        except Exception as exc:  # noqa: BLE001  bad CRC, truncation, odd compression
            raise TorchWeightsError(f"entry {name!r} could not be read ({exc})") from exc

    if prefix + "byteorder" in infos and read("byteorder", 16).strip() != b"little":
        raise TorchWeightsError("only little-endian PyTorch files are supported")
    try:
        obj = _ZipUnpickler(io.BytesIO(read("data.pkl", len(data)))).load()
    except TorchWeightsError:
        raise
    except Exception as exc:
        raise TorchWeightsError(f"could not be read safely ({exc})") from exc

    buffers: dict[str, np.ndarray] = {}

    def storage(ref: _StorageRef) -> np.ndarray:
        if ref.key not in buffers:
            nbytes = ref.numel * ref.stype.dtype.itemsize
            raw = read(f"data/{ref.key}", nbytes)
            if len(raw) != nbytes:
                raise TorchWeightsError(f"storage {ref.key!r} has {len(raw)} bytes, its "
                                        f"record says {ref.numel} x {ref.stype.name}")
            buffers[ref.key] = np.frombuffer(raw, ref.stype.dtype, ref.numel)
        buf = buffers[ref.key]
        if buf.dtype != ref.stype.dtype:
            raise TorchWeightsError(f"storage {ref.key!r} is named with two types")
        return buf

    return build_tensors(obj, lambda t: _view(storage(t.storage), t))


def load_torch(data: bytes) -> Any:
    """A ``torch.save`` file of either format (zip, or the legacy one), read restrictedly."""
    if is_zip(data):
        return load_zip(data)
    try:
        return load_legacy(data)
    except TorchWeightsError as exc:
        raise TorchWeightsError(f"not a zip-format PyTorch file, nor a legacy one: {exc}") from exc
