"""The three ways to run a classifier, behind one call: float32 NCHW batch -> softmax probabilities.

Shared by export (which proves the exported files) and serve (which runs them for the demo).

- `DygraphRunner`: the trained network in eval mode (the reference every exported file is checked against);
- `PaddleRunner`: the static model through Paddle Inference (`paddle.inference`; `clone()` for threads);
- `OnnxRunner`: the ONNX file through ONNX Runtime.

`choose_device` decides, once per process, where they run: the GPU when Paddle / ONNX Runtime can use
one (Paddle Inference `enable_use_gpu`, ONNX Runtime `CUDAExecutionProvider`), else the CPU with a fixed
thread count and, for Paddle Inference, oneDNN (bench/bench_export.py measures what each setting buys).
`predict` evaluates a whole split in batches; `call_times` is the one timing routine the export
manifest and the benchmark share (median of repeated calls on the same inputs).
"""
from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass

# Exact float32 on Ampere+ GPUs: cuBLAS/cuDNN would otherwise use TF32 for convs and matmuls (about
# 1e-3 relative error), and the exported models could not be held to |Δprob| <= 1e-4. Must be set
# before CUDA starts, i.e. before any model runs; harmless on CPU.
os.environ.setdefault("NVIDIA_TF32_OVERRIDE", "0")

import numpy as np  # noqa: E402

import models  # noqa: E402  (first: quiets Paddle before it is imported)
import paddle  # noqa: E402
from util import runtime  # noqa: E402
from util.io import within  # noqa: E402

CUDA_EP, CPU_EP = "CUDAExecutionProvider", "CPUExecutionProvider"


@dataclass(frozen=True)
class Device:
    """Where and how the backends run; recorded in the manifest as `device`."""
    paddle: str  # "cpu" | "gpu:0": dygraph reference and Paddle Inference
    onnx: str  # ONNX Runtime execution provider
    threads: int  # CPU threads given to each backend (same for all three, so timings compare)
    onednn: bool  # Paddle Inference on CPU uses oneDNN kernels

    def as_dict(self) -> dict:
        return asdict(self)


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def default_threads() -> int:
    """CPU threads per backend: half the usable cores, 1 to 4. bench/bench_export.py --sweep on a 2-core machine:
    with the machine otherwise idle, 2 threads beat 1 (ONNX Runtime batch 1: 0.19 vs 0.31 ms); with other jobs
    running, 2 threads were 2-4x slower than 1 for dygraph and Paddle Inference. Half the cores keeps the
    figures steady and leaves room for the demo's web server; --threads overrides it."""
    return max(1, min(4, usable_cores() // 2))


def choose_device(pref: str = "auto", threads: int | None = None, onednn: bool = True) -> Device:
    """'auto' | 'cpu' | 'gpu' -> Device. 'gpu' raises RuntimeError (one line) when a backend cannot use one."""
    import onnxruntime as ort

    paddle_dev = runtime.pick_device(pref)
    ort_cuda = CUDA_EP in ort.get_available_providers()
    if pref == "gpu" and not ort_cuda:
        raise RuntimeError("--device gpu: ONNX Runtime has no CUDA provider (pip install onnxruntime-gpu==1.22.0 "
                           "in place of onnxruntime)")
    threads = threads or default_threads()
    set_dygraph_threads(threads)
    return Device(paddle=paddle_dev, onnx=CUDA_EP if ort_cuda and pref != "cpu" else CPU_EP,
                  threads=threads, onednn=onednn and paddle_dev == "cpu")


def set_dygraph_threads(n: int) -> None:
    """CPU math threads of dygraph (eager) kernels in this process."""
    if hasattr(paddle.base.core, "set_num_threads"):
        paddle.base.core.set_num_threads(n)


# Test-time views: what the deployed model averages its logits over (`--tta`). "hflip": the photo and its mirror
# image (exact: no resampling, so cached features of flipped images equal the exported graph's in-graph flip).
TTA = {"none": ("identity",), "hflip": ("identity", "hflip")}


def check_tta(tta: str) -> str:
    if tta not in TTA:
        raise ValueError(f"unknown test-time views {tta!r}; choose one of {', '.join(TTA)}")
    return tta


class Deployed(paddle.nn.Layer):
    """What gets exported, so every backend outputs the calibrated answer: the classifier's logits averaged over
    the test-time views of the input (`TTA`), divided by the model's temperature (train/calibration.py), softmax.

        p = softmax(mean_v z(view_v(x)) / T)

    The same rule as `log_probabilities(layer, views, temperature)`, written in Paddle ops for the static graph."""

    def __init__(self, net, temperature: float = 1.0, tta: str = "none"):
        super().__init__()
        self.net, self.temperature, self.tta = net, float(temperature), check_tta(tta)

    def forward(self, x):
        z = self.net(x)
        if self.tta == "hflip":
            z = (z + self.net(paddle.flip(x, axis=[3]))) * 0.5
        return paddle.nn.functional.softmax(z / self.temperature, axis=-1)


class DygraphRunner:
    def __init__(self, layer):
        self.layer = layer.eval()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        with paddle.no_grad():
            return self.layer(paddle.to_tensor(x)).numpy()


class PaddleRunner:
    """Paddle Inference predictor over `<prefix>.json` + `<prefix>.pdiparams` (Paddle 3 PIR files)."""
    def __init__(self, model_json: str, params: str, device: Device, ir_optim: bool = True):
        from paddle import inference

        cfg = inference.Config(model_json, params)
        cfg.disable_glog_info()
        cfg.switch_ir_optim(ir_optim)
        if device.paddle.startswith("gpu"):
            cfg.enable_use_gpu(256, int(device.paddle.split(":")[1]))
        else:
            cfg.disable_gpu()
            cfg.set_cpu_math_library_num_threads(device.threads)
            if device.onednn:
                cfg.enable_onednn()
            else:
                cfg.disable_onednn()
        self.predictor = inference.create_predictor(cfg)
        self.input_name = self.predictor.get_input_names()[0]
        self.output_name = self.predictor.get_output_names()[0]
        self._in = self.predictor.get_input_handle(self.input_name)
        self._out = self.predictor.get_output_handle(self.output_name)

    def clone(self) -> "PaddleRunner":
        """Another runner sharing this one's weights (Paddle predictors are not thread-safe; clones are)."""
        twin = object.__new__(PaddleRunner)
        twin.predictor = self.predictor.clone()
        twin.input_name, twin.output_name = self.input_name, self.output_name
        twin._in = twin.predictor.get_input_handle(self.input_name)
        twin._out = twin.predictor.get_output_handle(self.output_name)
        return twin

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self._in.reshape(x.shape)
        self._in.copy_from_cpu(np.ascontiguousarray(x))
        self.predictor.run()
        return self._out.copy_to_cpu()


class Refused(ValueError):
    """An ONNX model that reads outside its folder or does not have the shapes it should, or an output that is
    not probabilities; the message is one line."""


def _tensors(graph):
    """Every TensorProto of an ONNX graph (or function) that may carry data: initializers, sparse ones, node
    attributes, and those of the subgraphs (If, Loop, Scan bodies)."""
    yield from getattr(graph, "initializer", ())
    for s in getattr(graph, "sparse_initializer", ()):
        yield from (s.values, s.indices)
    for node in graph.node:
        for a in node.attribute:
            yield from ([a.t] if a.HasField("t") else []) + list(a.tensors)
            yield from ([a.sparse_tensor.values, a.sparse_tensor.indices] if a.HasField("sparse_tensor") else [])
            for g in ([a.g] if a.HasField("g") else []) + list(a.graphs):
                yield from _tensors(g)


def _dims(value_info) -> list:
    return [d.dim_value or None for d in value_info.type.tensor_type.shape.dim]


def check_onnx(path: str, input_name: str | None = None, image_size: int | None = None, classes: int | None = None) -> None:
    """What is checked before ONNX Runtime opens `path`: no tensor keeps its data in a file outside the model's own
    folder (links followed; ONNX Runtime would read it, /etc/passwd included), and, when given, one float32 input
    `input_name` of shape (batch, 3, image_size, image_size) and one output of shape (batch, classes). Refused
    (one line naming the file) otherwise."""
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model = onnx.load(path, load_external_data=False)
    except (OSError, DecodeError, ValueError) as e:
        raise Refused(f"{path} is not a readable ONNX model ({type(e).__name__})") from None
    folder = os.path.dirname(path)
    for t in (t for g in [model.graph, *model.functions] for t in _tensors(g)):
        if t.data_location != onnx.TensorProto.EXTERNAL:
            continue
        where = {e.key: e.value for e in t.external_data}.get("location", "")
        if not within(os.path.join(folder, where), folder):
            raise Refused(f"{path} refused: tensor {t.name!r} keeps its data in {where!r}, outside the model's folder; "
                          f"not opened (export the model again)")
    if input_name is None:
        return
    weights = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in weights]
    want_in, want_out = [None, 3, image_size, image_size], [None, classes]
    got_in = [(i.name, i.type.tensor_type.elem_type, _dims(i)) for i in inputs]
    got_out = [_dims(o) for o in model.graph.output]
    if got_in != [(input_name, onnx.TensorProto.FLOAT, want_in)] or got_out != [want_out]:
        raise Refused(f"{path} refused: it takes {got_in} and gives {got_out}, the manifest says one float32 input "
                      f"{input_name!r} of shape {want_in} and one output of shape {want_out}; not opened")


def check_probabilities(probs: np.ndarray, classes: int, what: str) -> np.ndarray:
    """`probs` if it is a (N, classes) batch of probabilities (finite, in [0, 1], each row summing to 1 within
    1e-3), else Refused naming `what`: a model's output is never shown unchecked."""
    p = np.asarray(probs)
    if p.ndim != 2 or p.shape[1] != classes:
        raise Refused(f"{what} gave an output of shape {list(p.shape)}, not (batch, {classes}) probabilities; not shown")
    ok = np.isfinite(p).all() and (p >= 0).all() and (p <= 1).all() and np.allclose(p.sum(axis=1), 1, rtol=0, atol=1e-3)
    if not ok:
        sums = p.sum(axis=1)
        raise Refused(f"{what} gave values that are not probabilities (from {p.min():.3g} to {p.max():.3g}, rows "
                      f"summing to {sums.min():.3g}-{sums.max():.3g}); not shown")
    return p


class OnnxRunner:
    """ONNX Runtime session; `provider` is the one ONNX Runtime actually took (CUDA can fall back to CPU). The file
    is checked first (`check_onnx`; `expect`: its input name, image size and class count)."""
    def __init__(self, path: str, device: Device, graph_opt: str = "all", expect: tuple | None = None):
        import onnxruntime as ort

        check_onnx(path, *(expect or ()))
        so = ort.SessionOptions()
        so.log_severity_level = 3  # errors only
        so.graph_optimization_level = {"basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                                       "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}[graph_opt]
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.intra_op_num_threads = device.threads
        so.inter_op_num_threads = 1
        providers = [device.onnx, CPU_EP] if device.onnx != CPU_EP else [CPU_EP]
        self.session = ort.InferenceSession(path, so, providers=providers)
        self.provider = self.session.get_providers()[0]
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.session.run([self.output_name], {self.input_name: x})[0]


@paddle.no_grad()
def log_probabilities(layer, inputs, temperature: float = 1.0) -> np.ndarray:
    """The one "weights -> answers" function: log softmax(mean_v z_v / T) (N x classes, float32) of a Paddle layer in
    eval mode over an iterable of float32 input batches — one array per batch, or a list of arrays, one per test-time
    view of the same images (their logits are averaged, as `Deployed` does). Inputs are normalized images for a whole
    network, or cached features for its trainable top. Training's evaluation and test probabilities, tuning,
    calibration and export's parity reference all call it."""
    layer.eval()
    out = []
    for x in inputs:
        views = x if isinstance(x, (list, tuple)) else [x]
        z = sum(layer(paddle.to_tensor(v)) for v in views) * (1.0 / len(views))
        out.append(paddle.nn.functional.log_softmax(z / float(temperature), axis=-1).numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def image_batches(images: np.ndarray, spec: "models.Preprocessing", batch_size: int = 64):
    """uint8 NHWC images (`spec.load_array` outputs) -> normalized float32 NCHW batches, in order."""
    for i in range(0, len(images), batch_size):
        yield spec.normalize(images[i:i + batch_size])


def predict(run, images: np.ndarray, spec: "models.Preprocessing", batch_size: int = 64) -> np.ndarray:
    """What a runner (an exported backend) outputs for uint8 NHWC images, normalized batch by batch by `spec`."""
    return np.concatenate([run(x) for x in image_batches(images, spec, batch_size)])


def call_times(run, x: np.ndarray, budget_s: float = 0.5, min_calls: int = 5, warmup: int = 3) -> list:
    """Wall times (s) of repeated `run(x)` calls after warm-up, until both `budget_s` and `min_calls` are reached.
    A call slower than the whole budget (a big model in dygraph on a CPU) gets 1 warm-up call and 3 timed ones."""
    t = time.perf_counter()
    run(x)
    if time.perf_counter() - t > budget_s:
        warmup, min_calls = 1, min(min_calls, 3)
    for _ in range(warmup - 1):
        run(x)
    times, start = [], time.perf_counter()
    while len(times) < min_calls or time.perf_counter() - start < budget_s:
        t = time.perf_counter()
        run(x)
        times.append(time.perf_counter() - t)
    return times


def timing_inputs(images: np.ndarray, spec: "models.Preprocessing", batch: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """The same inputs for every backend: the first test image (batch 1) and the first `batch` (repeated if fewer)."""
    xb = spec.normalize(np.resize(images, (batch, *images.shape[1:])) if len(images) < batch else images[:batch])
    return np.ascontiguousarray(xb[:1]), xb


def speed(run, x1: np.ndarray, xb: np.ndarray | None, budget_s: float = 0.25) -> tuple[float, float | None]:
    """(batch-1 latency in ms, batch-len(xb) throughput in images/s; None without xb)."""
    b1 = float(np.median(call_times(run, x1, budget_s)))
    return b1 * 1e3, None if xb is None else len(xb) / float(np.median(call_times(run, xb, budget_s)))


class ConversionError(RuntimeError):
    """paddle2onnx or onnx.checker refused a model; the message is one line."""


@contextlib.contextmanager
def own_home(folder: str):
    """HOME pointed at a new folder inside `folder` (removed after) for Paddle code that writes under ~/.cache/paddle:
    jit.save's to_static translation writes there (paddle/jit/dy2static/utils.py get_temp_dir; no setting moves it),
    so with a read-only HOME it failed. Nothing is left in the user's HOME either."""
    home, before = tempfile.mkdtemp(prefix=".home-", dir=folder), os.environ.get("HOME")
    os.environ["HOME"] = home
    try:
        yield home
    finally:
        if before is None:
            os.environ.pop("HOME", None)
        else:
            os.environ["HOME"] = before
        shutil.rmtree(home, ignore_errors=True)


def save_static(layer, folder: str, shape: list, input_name: str = "x") -> None:
    """`paddle.jit.save` the layer (eval mode) as folder/inference.json + inference.pdiparams (PIR), one
    float32 input of `shape` (None = dynamic), with a HOME of its own (`own_home`). A stop signal waits for it to
    finish (runtime.stops_held): 0.3 s for smallcnn, 1.2 s for efficientnet_lite0 here."""
    from paddle.static import InputSpec

    layer.eval()
    with runtime.stops_held(), own_home(folder):
        paddle.jit.save(layer, os.path.join(folder, "inference"), input_spec=[InputSpec(shape, "float32", name=input_name)])


def to_onnx(model_dir: str, opset: int) -> int:
    """paddle2onnx in a child process (it exits the process on failure), then onnx.checker; returns the opset."""
    import onnx

    tmp = os.path.join(model_dir, ".model.onnx.tmp")
    cmd = [sys.executable, "-m", "paddle2onnx.command", "--model_dir", model_dir,
           "--model_filename", "inference.json", "--params_filename", "inference.pdiparams",
           "--save_file", tmp, "--opset_version", str(opset), "--enable_auto_update_opset", "False",
           # onnxoptimizer (a paddle2onnx dependency) only drops unused initializers; the default, polygraphy,
           # pip-installs onnx_graphsurgeon at run time, and ONNX Runtime folds constants itself anyway.
           "--optimize_tool", "onnxoptimizer"]
    with own_home(model_dir):  # paddle2onnx runs Paddle too
        env = dict(os.environ, GLOG_minloglevel="2", PYTHONWARNINGS="ignore")
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    if p.returncode != 0 or not os.path.isfile(tmp):
        lines = [ln.strip() for ln in (p.stderr + p.stdout).splitlines() if ln.strip()]
        raise ConversionError(f"paddle2onnx exited {p.returncode}: {(lines or ['no output'])[-1][:200]}"
                          f" (try another --opset)")
    try:
        onnx.checker.check_model(tmp, full_check=True)
    except onnx.checker.ValidationError as e:
        raise ConversionError(f"onnx.checker: {str(e).splitlines()[0][:200]}") from None
    os.replace(tmp, os.path.join(model_dir, "model.onnx"))
    return max(o.version for o in onnx.load(os.path.join(model_dir, "model.onnx"), load_external_data=False).opset_import
               if o.domain in ("", "ai.onnx"))
