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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--manifest", help="export manifest.json (default: the newest under runs/)")
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--backend", default="onnx", choices=("onnx", "paddle"))
    p.add_argument("--concurrency", type=int, default=None, help="passed to serve/app.py (default: its own)")
    p.add_argument("--large-rounds", type=int, default=3, help="rounds of --clients clients each sending a 40 Mpx PNG")
    args = p.parse_args(argv)
    try:
        manifest = load(args.manifest or newest(os.path.join(ROOT, "runs")))
    except ManifestError as e:
        print(f"bench/bench_serve.py: {e}", file=sys.stderr)
        return 2
    import httpx
    from gradio_client import Client, handle_file
    from tqdm import tqdm

    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per HTTP request otherwise

    tmp = tempfile.mkdtemp(prefix="bench_serve_")
    photos = photos_for(manifest, tmp)
    names = list(manifest.models)
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    cmd = [sys.executable, "serve/app.py", "--manifest", manifest.path, "--port", str(port), "--backend", args.backend]
    if args.concurrency:
        cmd += ["--concurrency", str(args.concurrency)]
    log = open(os.path.join(tmp, "app.log"), "w")
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        while True:
            if proc.poll() is not None:
                print(f"serve/app.py exited {proc.returncode}; see {log.name}", file=sys.stderr)
                return 1
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        t_listen = time.perf_counter() - t0
        Client(url, verbose=False).predict(handle_file(photos[0]), names[0], args.backend, api_name="/classify")
        t_first = time.perf_counter() - t0

        latencies, compute, failures, lock = [], [], [], threading.Lock()
        bar = tqdm(total=args.requests, desc="requests", unit="req", leave=False)

        def worker(k: int):
            client = Client(url, verbose=False)
            for i in range(k, args.requests, args.clients):
                t = time.perf_counter()
                try:
                    label, info = client.predict(handle_file(photos[i % len(photos)]), names[i % len(names)],
                                                 args.backend, api_name="/classify")
                    took = re.search(r"in \*\*([0-9.]+) ms\*\*", info)  # the page's own preprocess + model time
                    ok = label.get("label") in manifest.classes and took
                    err = None if ok else f"unexpected answer {label!r} {info!r}"
                except Exception as e:  # noqa: BLE001 - every failure is counted and reported below
                    err = f"{type(e).__name__}: {e}"
                with lock:
                    if err:
                        failures.append(err)
                    else:
                        latencies.append(time.perf_counter() - t)
                        compute.append(float(took.group(1)))
                    bar.update()

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(args.clients)]
        t_load, cpu_load, client_cpu = time.perf_counter(), cpu_seconds(proc.pid), cpu_seconds(os.getpid())
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t_load
        server_cpu = cpu_seconds(proc.pid) - cpu_load
        client_cpu = cpu_seconds(os.getpid()) - client_cpu
        bar.close()

        # Large images: memory before, at the peak (sampled every 20 ms), and after.
        big = large_pngs(tmp) if args.large_rounds else []
        time.sleep(1)
        mem_base, mem_peak, large_ok, large_failed, sampling = rss_mb(proc.pid), 0.0, 0, [], True

        def sample():
            nonlocal mem_peak
            while sampling:
                mem_peak = max(mem_peak, rss_mb(proc.pid))
                time.sleep(0.02)

        def send_large(k: int):
            nonlocal large_ok
            try:
                label, _ = Client(url, verbose=False).predict(handle_file(big[k % 2]), names[0], args.backend,
                                                              api_name="/classify")
                with lock:
                    large_ok += label.get("label") in manifest.classes
            except Exception as e:  # noqa: BLE001 - counted and reported
                with lock:
                    large_failed.append(f"{type(e).__name__}: {e}")

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        t_large = time.perf_counter()
        for _ in range(args.large_rounds):
            rounds = [threading.Thread(target=send_large, args=(k,)) for k in range(args.clients)]
            for t in rounds:
                t.start()
            for t in rounds:
                t.join()
        t_large = time.perf_counter() - t_large
        time.sleep(1)
        sampling = False
        sampler.join()
        mem_after = rss_mb(proc.pid)
    finally:
        t_stop = time.perf_counter()
        proc.terminate()
        proc.wait(30)
        t_stop = time.perf_counter() - t_stop
        log.close()

    ms = np.array(latencies) * 1000
    lost = args.requests - len(latencies) - len(failures)
    print(f"manifest: {manifest.path} ({len(names)} models, {manifest.size} px, backend {args.backend}, "
          f"{len(photos)} photos, {os.cpu_count()} CPU cores)")
    print(f"start-up: listening after {t_listen:.2f} s, first prediction after {t_first:.2f} s")
    if len(ms):
        print(f"{args.clients} clients, {args.requests} requests ({args.requests // args.clients} each): p50 {np.percentile(ms, 50):.1f} ms, "
              f"p95 {np.percentile(ms, 95):.1f} ms, max {ms.max():.1f} ms, {len(ms) / wall:.1f} requests/s")
    if compute:
        print(f"inside the server (preprocess + model): p50 {np.percentile(compute, 50):.1f} ms, "
              f"p95 {np.percentile(compute, 95):.1f} ms")
    print(f"CPU per request: server {1000 * server_cpu / args.requests:.1f} ms, "
          f"the {args.clients} gradio_client clients {1000 * client_cpu / args.requests:.1f} ms")
    print(f"answered {len(latencies)}, failed {len(failures)}, lost {lost}")
    for f in failures[:5]:
        print("  failed:", f)
    back = True
    if args.large_rounds:
        n = args.large_rounds * args.clients
        back = mem_after <= 1.2 * mem_base
        print(f"large images: {args.large_rounds} rounds x {args.clients} clients at once, 40 Mpx PNG (RGB/RGBA): "
              f"classified {large_ok} of {n} in {t_large:.1f} s")
        print(f"server memory (RSS): baseline {mem_base:.0f} MB, peak {mem_peak:.0f} MB, after {mem_after:.0f} MB "
              f"({100 * (mem_after / mem_base - 1):+.1f}% of baseline; limit +20%: {'ok' if back else 'NOT back'})")
        for f in large_failed[:5]:
            print("  large image failed:", f)
    print(f"stopped (SIGTERM) in {t_stop:.2f} s, exit status {proc.returncode}")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0 if not failures and not lost and back and not large_failed else 1


if __name__ == "__main__":
    sys.exit(main())
