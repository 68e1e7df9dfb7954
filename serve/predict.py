"""Classify photos from the command line with an exported model: the demo's answer, without the page.

    python serve/predict.py bee.jpg photos/                  # the newest run's winner; folders are walked
    python serve/predict.py bee.jpg --all --top-k 2          # every model of the run, best on validation first
    python serve/predict.py photos/ --model adam --backend paddle --json
    python serve/predict.py bee.jpg --backend onnx-int8         # the INT8 model (when it passed its proof)

Same manifest reading (serve/manifest.py), same preprocessing (serve/decode.py: the manifest's `models.Preprocessing`) and
same runners (serve/engines.py: `models.inference`) as serve/app.py, one photo at a time as the page
does, so the probabilities equal the page's /classify for the same file and model. Default model: the
run's winner (chosen on validation accuracy); default backend: each model's fastest that passed its proof
(batch-1 latency measured at export), named beside the answer. Exit status: 0 when every photo was classified, 1 when
some could not be read (one line each on stderr; the others are still classified), 2 for usage errors.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import models  # noqa: E402  (first: quiets Paddle)
from util import runtime  # noqa: E402
from serve import decode  # noqa: E402
from models.inference import Refused  # noqa: E402
from serve.engines import AUTO, CHOICES, Engines, NotServed  # noqa: E402
from serve.manifest import ManifestError, load, newest  # noqa: E402
from serve.text import SYNTHETIC, answer, knows, unsure_note  # noqa: E402
from util.fmt import pct  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("photos", nargs="+", metavar="PHOTO", help="image files, or folders (walked for image files)")
    p.add_argument("--manifest", help="export manifest.json (default: the newest under runs/, like the demo)")
    p.add_argument("--runs", default=os.path.join(ROOT, "runs"), help="where to look for the newest run (default: runs/)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--model", help="optimizer whose model to use (default: the run's winner)")
    which.add_argument("--all", action="store_true", help="every servable model, best on validation first")
    p.add_argument("--backend", choices=list(CHOICES), default=AUTO,
                   help="auto (default): each model's fastest backend that passed its proof; onnx (ONNX Runtime), "
                        "onnx-int8 (its INT8 model) or paddle (Paddle Inference)")
    p.add_argument("--top-k", type=int, default=1, help="classes shown per photo, most confident first (default 1)")
    p.add_argument("--json", action="store_true", help="print one JSON document instead of the table")
    args = p.parse_args(argv)
    if args.top_k < 1:
        p.error("--top-k must be at least 1")
    return args


def photo_files(paths: list) -> tuple[list, list]:
    """(files to classify, [(path, reason)] for paths that are neither files nor folders with photos).
    Folders are walked in name order for files with an image extension PIL knows; files named on the
    command line are always tried."""
    from PIL import Image

    exts = {e.lower() for e in Image.registered_extensions()}
    files, bad = [], []
    for path in paths:
        if os.path.isdir(path):
            found = [os.path.join(d, f) for d, subdirs, names in sorted(os.walk(path)) for f in sorted(names)
                     if os.path.splitext(f)[1].lower() in exts]
            files += [f for f in found if os.path.isfile(f)]
            bad += [(f, not_a_file(f)) for f in found if not os.path.isfile(f)]
            if not found:
                bad.append((path, "folder without image files"))
        elif os.path.isfile(path):
            files.append(path)
        else:
            bad.append((path, not_a_file(path)))
    return files, bad


def not_a_file(path: str) -> str:
    """Why `path`, which is neither a regular file nor a folder, is not read (a FIFO would block, /dev/zero never ends)."""
    if os.path.exists(path):
        return "not a regular file (a FIFO, device or socket); give an image file"
    return "dangling link" if os.path.islink(path) else "no such file or folder"


def shown(path: str) -> str:
    """`path` on one line: control characters (a newline in a file name) written as escapes."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in path)


def chosen_models(manifest, args) -> list[str]:
    """--all, --model NAME, or the run's winner; ValueError (one line) for a model that cannot be used."""
    if args.all:
        return list(manifest.models)
    if args.model:
        if args.model not in manifest.models:
            why = manifest.unavailable.get(args.model, "not in this manifest")
            raise ValueError(f"model {args.model!r} cannot be used ({why}); choose one of {', '.join(manifest.models)}")
        return [args.model]
    if manifest.winner_note:
        print(f"note: {manifest.winner_note}", file=sys.stderr)
    return [manifest.winner]


def classify(manifest, engines, used: dict, paths: list, top_k: int) -> tuple[list, list]:
    """(one row per photo and model of `used` (model -> the backend it runs on), [(photo, why)] for the unreadable ones)."""
    rows, bad = [], []
    for path in paths:
        try:
            x = decode.preprocess(path, manifest.preprocessing)[None]
        except models.ImageError as e:
            bad.append((path, str(e)))
            continue
        for name, backend in used.items():
            probs, _, _ = engines.run(backend, name, x)
            p = {c: float(v) for c, v in zip(manifest.classes, probs[0])}
            top = sorted(p.items(), key=lambda kv: -kv[1])[:top_k]
            said = answer(manifest.classes, probs[0], manifest.models[name].threshold)
            rows.append({"photo": path, "model": name, "backend": backend, "answer": said, "sure": said == top[0][0],
                         "class": top[0][0], "model_confidence": top[0][1],
                         "top_k": [[c, v] for c, v in top], "probabilities": p})
    return rows, bad


def print_json(manifest, engines, used, rows, bad, backend: str) -> None:
    json.dump({"manifest": manifest.path, "run": manifest.run, "backend": backend, "classes": list(manifest.classes),
               "synthetic": manifest.synthetic, "winner": manifest.run_winner or manifest.winner,
               "models": {n: {"backend": b, "device": engines.where(b), "best_val_acc": manifest.models[n].best_val_acc,
                              "test_acc": manifest.models[n].accuracy(b),
                              "temperature": manifest.models[n].temperature,
                              "not_sure_below": manifest.models[n].threshold} for n, b in used.items()},
               "results": rows, "unreadable": [{"photo": f, "error": why} for f, why in bad]},
              sys.stdout, indent=2)
    print()


def print_table(manifest, engines, used, rows, backend: str, top_k: int) -> None:
    if manifest.synthetic:
        print(f"warning: {SYNTHETIC}", file=sys.stderr)
    print(knows(manifest.classes))
    for n, b in used.items():
        e = manifest.models[n]
        tag = " (the run's winner)" if n == manifest.run_winner else ""
        why = " (the fastest that passed its proof)" if backend == AUTO else ""
        print(f"model {n}{tag}: best validation accuracy {pct(e.best_val_acc)}, "
              f"test accuracy {pct(e.accuracy(b))}; {engines.where(b)}{why}")
        if e.threshold > 0:
            print(f"  {unsure_note(e.threshold)}")
    table = [("photo", "answer", "model confidence", "model") + (("next",) if top_k > 1 else ())]
    for r in rows:
        more = ", ".join(f"{c} {pct(v)}" for c, v in r["top_k"][1:])
        table.append((shown(r["photo"]), r["answer"], pct(r["model_confidence"]), r["model"]) + ((more,) if top_k > 1 else ()))
    widths = [max(len(t[i]) for t in table) for i in range(len(table[0]))]
    for t in table if rows else []:
        print("  ".join(c.ljust(w) for c, w in zip(t, widths)).rstrip())


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        manifest = load(args.manifest or newest(args.runs))
        engines = Engines(manifest)
        used = {n: engines.resolve(args.backend, n) for n in chosen_models(manifest, args)}
    except (ManifestError, NotServed, ValueError) as e:
        print(f"serve/predict.py: {e}", file=sys.stderr)
        return 2
    files, bad = photo_files(args.photos)
    try:
        rows, unreadable = classify(manifest, engines, used, files, args.top_k)
    except Refused as e:  # a model file refused before it was opened, or an output that is not probabilities
        print(f"serve/predict.py: {e}", file=sys.stderr)
        return 2
    bad += unreadable
    if args.json:
        print_json(manifest, engines, used, rows, bad, args.backend)
    else:
        print_table(manifest, engines, used, rows, args.backend, args.top_k)
    for f, why in bad:
        print(f"serve/predict.py: {shown(f)}: {shown(why.removeprefix(os.path.basename(f) + ': '))}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    runtime.on_stop_signals()
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("serve/predict.py: interrupted", file=sys.stderr)
        sys.exit(runtime.INTERRUPTED)
