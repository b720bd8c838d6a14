"""Tensors of a ``torch.save`` file (the zip format of torch >= 1.6) as NumPy arrays, without
torch and without running code from the file.

The pickle inside (``<name>/data.pkl``) is read by an unpickler that admits only what a state
dict is made of: ``collections.OrderedDict``, torch's tensor rebuild functions and its storage
types, whose bytes come from ``<name>/data/<key>`` through pickle's persistent ids. Any other
global (``os.system``, a class of the training code, ``builtins.eval``) is refused before it
is looked up, so nothing in the file runs.
"""

from __future__ import annotations

import collections
import io
import pickle
import zipfile
from pathlib import Path

import numpy as np

from kerasface.errors import BadInputError

STORAGE_DTYPES = {
    "FloatStorage": "float32",
    "DoubleStorage": "float64",
    "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16",
    "LongStorage": "int64",
    "IntStorage": "int32",
    "ShortStorage": "int16",
    "CharStorage": "int8",
    "ByteStorage": "uint8",
    "BoolStorage": "bool",
}


class _StorageType:
    def __init__(self, name: str):
        self.name = name
        self.dtype = np.dtype(STORAGE_DTYPES[name]) if name != "BFloat16Storage" else _bfloat16()


def _bfloat16() -> np.dtype:
    import ml_dtypes

    return np.dtype(ml_dtypes.bfloat16)


def _rebuild_tensor(storage, offset, size, stride, requires_grad=False, hooks=None, metadata=None):
    data, where = storage
    size, stride = tuple(size), tuple(stride)
    if offset < 0 or len(size) != len(stride) or min((*size, *stride), default=0) < 0:
        raise BadInputError(f"{where}: bad tensor layout (offset {offset}, size {size}, stride {stride})")
    needed = offset + sum((n - 1) * s for n, s in zip(size, stride)) + 1 if all(size) else offset
    if needed > data.size:
        raise BadInputError(f"{where}: a tensor of shape {size} reads past its storage of {data.size} values")
    view = np.lib.stride_tricks.as_strided(data[offset:], shape=size,
                                           strides=[s * data.itemsize for s in stride])
    return np.array(view)


def _rebuild_parameter(data, requires_grad=False, hooks=None):
    return data


ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    **{("torch", name): _StorageType(name) for name in STORAGE_DTYPES},
}


class _StateDictUnpickler(pickle.Unpickler):
    def __init__(self, file, archive: zipfile.ZipFile, prefix: str, path: Path, byteorder: str):
        super().__init__(file)
        self.archive, self.prefix, self.path, self.byteorder = archive, prefix, path, byteorder
        self.storages: dict[str, np.ndarray] = {}

    def find_class(self, module, name):
        allowed = ALLOWED_GLOBALS.get((module, name))
        if allowed is None:
            raise BadInputError(
                f"{self.path}: refused {module}.{name}: a state dict holds only tensors and "
                "OrderedDicts (the file may run code when opened with torch.load)")
        return allowed

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 4 and pid[0] == "storage"
                and isinstance(pid[1], _StorageType) and isinstance(pid[2], str)):
            raise BadInputError(f"{self.path}: unexpected persistent id {pid!r} in data.pkl")
        storage_type, key = pid[1], pid[2]
        if key not in self.storages:
            entry = f"{self.prefix}data/{key}"
            try:
                raw = self.archive.read(entry)
            except KeyError:
                raise BadInputError(f"{self.path}: storage {entry} is missing") from None
            dtype = storage_type.dtype.newbyteorder("<" if self.byteorder == "little" else ">")
            if len(raw) % dtype.itemsize:
                raise BadInputError(f"{self.path}: storage {entry} is not a whole number of {dtype} values")
            self.storages[key] = np.frombuffer(raw, dtype=dtype).astype(storage_type.dtype)
        return self.storages[key], f"{self.path}: {self.prefix}data/{key}"


def load_state_dict(path) -> "collections.OrderedDict[str, np.ndarray]":
    """The ``name -> array`` mapping saved by ``torch.save(module.state_dict(), path)``.
    A checkpoint dict holding it under ``state_dict`` or ``state_dict_backbone`` works too."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    if not zipfile.is_zipfile(path):
        raise BadInputError(f"{path}: not a torch.save zip file (saved by torch < 1.6, or not a .pt at all); "
                            "re-save it with a current torch")
    try:
        with zipfile.ZipFile(path) as archive:
            pickles = [n for n in archive.namelist() if n.endswith("data.pkl") and n.count("/") == 1]
            if len(pickles) != 1:
                raise BadInputError(f"{path}: expected one <name>/data.pkl in the zip, found {len(pickles)}")
            prefix = pickles[0][: -len("data.pkl")]
            if prefix + "constants.pkl" in archive.namelist():
                raise BadInputError(f"{path}: a TorchScript archive, not a state dict; save "
                                    "model.state_dict() instead")
            byteorder = "little"
            if prefix + "byteorder" in archive.namelist():
                byteorder = archive.read(prefix + "byteorder").decode().strip()
            unpickler = _StateDictUnpickler(io.BytesIO(archive.read(pickles[0])), archive, prefix, path, byteorder)
            loaded = unpickler.load()
    except BadInputError:
        raise
    except (zipfile.BadZipFile, EOFError, pickle.UnpicklingError, TypeError, ValueError, IndexError,
            AttributeError) as error:
        raise BadInputError(f"{path}: unreadable torch file ({error})") from None
    return _tensors_of(loaded, path)


def _tensors_of(loaded, path: Path) -> "collections.OrderedDict[str, np.ndarray]":
    if isinstance(loaded, dict):
        for key in ("state_dict_backbone", "state_dict"):
            if isinstance(loaded.get(key), dict):
                loaded = loaded[key]
                break
    if not isinstance(loaded, dict) or not loaded:
        raise BadInputError(f"{path}: holds a {type(loaded).__name__}, not a state dict of tensors")
    out = collections.OrderedDict()
    for name, value in loaded.items():
        if not isinstance(value, np.ndarray):
            raise BadInputError(f"{path}: entry {name!r} is a {type(value).__name__}, not a tensor")
        out[name.removeprefix("module.")] = value
    return out
