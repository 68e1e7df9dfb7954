"""Serving figures: start-up time to first prediction, then 8 concurrent gradio_client clients
sending `classify` requests on localhost (p50/p95 latency, how many were lost or failed), then rounds of
8 clients at once each sending a 40-megapixel PNG: the server's resident memory (RSS) before, at its
peak and after, which must come back within 20% of the baseline.

    python bench/bench_serve.py                                  # newest run's manifest under runs/
    python bench/bench_serve.py --manifest runs/hym/export/manifest.json --clients 8 --requests 400

It launches `python serve/app.py` as a user would (a free localhost port) and stops it at the end
(SIGTERM). Photos: the manifest's example images, else one generated photo. Exit status 1 when a
request was lost or failed or the memory did not come back.
"""
from __future__ import annotations

import argparse
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402

from serve.engines import AUTO, CHOICES  # noqa: E402
from serve.manifest import ManifestError, load, newest  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc), to split server cost from client cost."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def large_pngs(tmp: str) -> list[str]:
    """Two 39.97-megapixel PNGs, RGB and RGBA (smooth ramps: about 1 MB each, under the upload limit)."""
    from PIL import Image

    w, h = 7300, 5475
    rgb = np.full((h, w, 3), 90, np.uint8)
    rgb[..., 0] = np.linspace(0, 255, w)[None, :]
    rgb[..., 1] = np.linspace(0, 255, h)[:, None]
    paths = [os.path.join(tmp, "large_rgb.png"), os.path.join(tmp, "large_rgba.png")]
    Image.fromarray(rgb).save(paths[0])
    Image.fromarray(rgb).convert("RGBA").save(paths[1])
    return paths


def photos_for(manifest, tmp: str) -> list[str]:
    if manifest.examples:
        return manifest.examples
    from PIL import Image

    path = os.path.join(tmp, "photo.jpg")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)).save(path, quality=90)
    return [path]


def start_app(manifest, backend: str, concurrency, tmp: str):
    """`python serve/app.py` on a free port; (process, url, log file, seconds to listen); None if it exited."""
    import httpx

    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    cmd = [sys.executable, "serve/app.py", "--manifest", manifest.path, "--port", str(port), "--backend", backend]
    cmd += ["--concurrency", str(concurrency)] if concurrency else []
    log = open(os.path.join(tmp, "app.log"), "w")
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    while True:
        if proc.poll() is not None:
            print(f"serve/app.py exited {proc.returncode}; see {log.name}", file=sys.stderr)
            return None
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return proc, url, log, time.perf_counter() - t0
        except httpx.TransportError:
            time.sleep(0.1)


def concurrent_load(url: str, manifest, photos: list, names: list, args, pid: int) -> dict:
    """args.clients gradio_client clients at once sending args.requests /classify calls in all."""
    from gradio_client import Client, handle_file
    from tqdm import tqdm

    out = {"latencies": [], "compute": [], "failures": []}
    lock, bar = threading.Lock(), tqdm(total=args.requests, desc="requests", unit="req", leave=False)

    def worker(k: int):
        client = Client(url, verbose=False)
        for i in range(k, args.requests, args.clients):
            t = time.perf_counter()
            try:
                label, info = client.predict(handle_file(photos[i % len(photos)]), names[i % len(names)],
                                             args.backend, api_name="/classify")
                took = re.search(r"in \*\*([0-9.]+) ms\*\*", info)  # the page's own preprocess + model time
                err = None if label.get("label") in manifest.classes and took else f"unexpected answer {label!r} {info!r}"
            except Exception as e:  # noqa: BLE001 - every failure is counted and reported below
                err = f"{type(e).__name__}: {e}"
            with lock:
                if err:
                    out["failures"].append(err)
                else:
                    out["latencies"].append(time.perf_counter() - t)
                    out["compute"].append(float(took.group(1)))
                bar.update()

    t0, server0, client0 = time.perf_counter(), cpu_seconds(pid), cpu_seconds(os.getpid())
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(args.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    bar.close()
    out.update(wall=time.perf_counter() - t0, server_cpu=cpu_seconds(pid) - server0, client_cpu=cpu_seconds(os.getpid()) - client0)
    return out


def large_images(url: str, manifest, names: list, args, pid: int, tmp: str) -> dict:
    """Rounds of args.clients clients each sending a 40 Mpx PNG at once: server memory before, at the peak
    (sampled every 20 ms) and after."""
    from gradio_client import Client, handle_file

    big = large_pngs(tmp)
    time.sleep(1)
    out = {"base": rss_mb(pid), "peak": 0.0, "ok": 0, "failed": []}
    lock, sampling = threading.Lock(), [True]

    def sample():
        while sampling[0]:
            out["peak"] = max(out["peak"], rss_mb(pid))
            time.sleep(0.02)

    def send(k: int):
        try:
            label, _ = Client(url, verbose=False).predict(handle_file(big[k % 2]), names[0], args.backend, api_name="/classify")
            with lock:
                out["ok"] += label.get("label") in manifest.classes
        except Exception as e:  # noqa: BLE001 - counted and reported
            with lock:
                out["failed"].append(f"{type(e).__name__}: {e}")

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.perf_counter()
    for _ in range(args.large_rounds):
        senders = [threading.Thread(target=send, args=(k,)) for k in range(args.clients)]
        for t in senders:
            t.start()
        for t in senders:
            t.join()
    out["seconds"] = time.perf_counter() - t0
    time.sleep(1)
    sampling[0] = False
    sampler.join()
    out["after"] = rss_mb(pid)
    return out


def report(manifest, photos, names, args, times: dict, load_: dict, large: dict | None) -> bool:
    """Print the figures; whether every request was answered and memory came back."""
    ms = np.array(load_["latencies"]) * 1000
    lost = args.requests - len(ms) - len(load_["failures"])
    print(f"manifest: {manifest.path} ({len(names)} models, {manifest.size} px, backend {args.backend}, "
          f"{len(photos)} photos, {os.cpu_count()} CPU cores)")
    print(f"start-up: listening after {times['listen']:.2f} s, first prediction after {times['first']:.2f} s")
    if len(ms):
        print(f"{args.clients} clients, {args.requests} requests ({args.requests // args.clients} each): p50 {np.percentile(ms, 50):.1f} ms, "
              f"p95 {np.percentile(ms, 95):.1f} ms, max {ms.max():.1f} ms, {len(ms) / load_['wall']:.1f} requests/s")
    if load_["compute"]:
        print(f"inside the server (preprocess + model): p50 {np.percentile(load_['compute'], 50):.1f} ms, "
              f"p95 {np.percentile(load_['compute'], 95):.1f} ms")
    print(f"CPU per request: server {1000 * load_['server_cpu'] / args.requests:.1f} ms, "
          f"the {args.clients} gradio_client clients {1000 * load_['client_cpu'] / args.requests:.1f} ms")
    print(f"answered {len(ms)}, failed {len(load_['failures'])}, lost {lost}")
    for f in load_["failures"][:5]:
        print("  failed:", f)
    back = True
    if large:
        back = large["after"] <= 1.2 * large["base"]
        print(f"large images: {args.large_rounds} rounds x {args.clients} clients at once, 40 Mpx PNG (RGB/RGBA): "
              f"classified {large['ok']} of {args.large_rounds * args.clients} in {large['seconds']:.1f} s")
        print(f"server memory (RSS): baseline {large['base']:.0f} MB, peak {large['peak']:.0f} MB, after {large['after']:.0f} MB "
              f"({100 * (large['after'] / large['base'] - 1):+.1f}% of baseline; limit +20%: {'ok' if back else 'NOT back'})")
        for f in large["failed"][:5]:
            print("  large image failed:", f)
    print(f"stopped (SIGTERM) in {times['stop']:.2f} s, exit status {times['status']}")
    return not load_["failures"] and not lost and back and not (large or {}).get("failed")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--manifest", help="export manifest.json (default: the newest under runs/)")
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--backend", default=AUTO, choices=list(CHOICES), help="as serve/app.py's (default auto)")
    p.add_argument("--concurrency", type=int, default=None, help="passed to serve/app.py (default: its own)")
    p.add_argument("--large-rounds", type=int, default=3, help="rounds of --clients clients each sending a 40 Mpx PNG")
    args = p.parse_args(argv)
    try:
        manifest = load(args.manifest or newest(os.path.join(ROOT, "runs")))
    except ManifestError as e:
        print(f"bench/bench_serve.py: {e}", file=sys.stderr)
        return 2
    from gradio_client import Client, handle_file

    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per HTTP request otherwise
    tmp = tempfile.mkdtemp(prefix="bench_serve_")
    photos, names = photos_for(manifest, tmp), list(manifest.models)
    started = start_app(manifest, args.backend, args.concurrency, tmp)
    if started is None:
        return 1
    proc, url, log, listen = started
    try:
        t0 = time.perf_counter()
        Client(url, verbose=False).predict(handle_file(photos[0]), names[0], args.backend, api_name="/classify")
        times = {"listen": listen, "first": listen + time.perf_counter() - t0}
        load_ = concurrent_load(url, manifest, photos, names, args, proc.pid)
        large = large_images(url, manifest, names, args, proc.pid, tmp) if args.large_rounds else None
    finally:
        t_stop = time.perf_counter()
        proc.terminate()
        proc.wait(30)
        log.close()
    times.update(stop=time.perf_counter() - t_stop, status=proc.returncode)
    ok = report(manifest, photos, names, args, times, load_, large)
    shutil.rmtree(tmp, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
