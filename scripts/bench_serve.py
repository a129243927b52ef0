#!/usr/bin/env python3
"""A bounded load test of `modernft serve`, side by side with offline `modernft embed` and
sentence-transformers' `encode` on the same texts and the same weights, in one run.

    cargo build --release
    python scripts/bench_serve.py                       # 2,048 SST-2 sentences, 32 clients, 2 rounds
    python scripts/bench_serve.py --rows 4096 --rounds 3 --out bench-results.jsonl

The model is a random-init ModernBERT-base folder (scripts/make_bench_model.py, written to
target/bench-model if missing), saved once as a sentence-transformers folder (`modernft save
--format sentence-transformers`) so that all three read the same weights and pooling.

Each round, in turn (the host drifts 10-20% over minutes, so the tools alternate):
1. serve: `modernft serve` on a free loopback port; `--clients` threads, each on its own keep-alive
   connection, POST /embed one sentence per request until every sentence is sent. Timed from the
   first request to the last answer (the model is loaded before). Reports texts/s, tokens/s (the
   answers' `x-compute-tokens`), p50/p99 latency, errors (any answer other than 200, or none), the
   mean rows per batch from /metrics.
2. offline: `modernft embed --input FILE --batch-size 32 --format npy`, wall time from process start
   to the last vector written (loading and tokenizing included).
3. sentence-transformers: `SentenceTransformer(folder).encode(texts, batch_size=32)` in this process,
   the model loaded before, tokenizing included (it sorts by length, as serve's batches run unpadded).
Before timing, the first 16 answers of serve are compared with sentence-transformers' vectors.

Needs `pip install -r scripts/requirements.txt` (torch, sentence-transformers) and a release build.
Prints a table; every round's numbers go to --out as JSON lines.
"""
import argparse
import http.client
import json
import os
import subprocess
import sys
import threading
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def start_server(binary, model, extra, timeout=180):
    """`modernft serve --port 0`; returns the process and its address once it listens."""
    p = subprocess.Popen([binary, "serve", "--model", model, "--port", "0", *extra],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    found, log = [], []

    def read():
        for line in p.stderr:
            log.append(line)
            if "listening on http://" in line and not found:
                found.append(line.split("listening on http://")[1].strip())

    threading.Thread(target=read, daemon=True).start()
    deadline = time.time() + timeout
    while not found:
        if p.poll() is not None or time.time() > deadline:
            p.kill()
            sys.exit(f"the server did not start: {''.join(log)}")
        time.sleep(0.05)
    return p, found[0]


def stop_server(p):
    p.terminate()
    try:
        p.wait(timeout=60)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def post(conn, path, body):
    conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
    r = conn.getresponse()
    return r, r.read()


def load(addr, texts, clients, timeout):
    """Every text once, one per request, from `clients` threads; per request its latency, status,
    tokens and the rows of the batch it ran in."""
    host, port = addr.rsplit(":", 1)
    n = len(texts)
    latency, status, tokens = [0.0] * n, [None] * n, [0] * n
    state = {"next": 0}
    lock = threading.Lock()

    def client():
        conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
        while True:
            with lock:
                i = state["next"]
                state["next"] += 1
            if i >= n:
                break
            t0 = time.perf_counter()
            try:
                r, data = post(conn, "/embed", {"inputs": texts[i]})
                status[i] = r.status
                tokens[i] = int(r.getheader("x-compute-tokens", "0"))
                if r.status == 200 and len(json.loads(data)) != 1:
                    status[i] = "wrong number of vectors"
            except Exception as e:  # noqa: BLE001 - every failure is counted as an error
                status[i] = repr(e)
                conn.close()
                conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
            latency[i] = time.perf_counter() - t0
        conn.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0, latency, status, tokens


def metric(text, name):
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return float("nan")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--binary", default=os.path.join(ROOT, "target/release/modernft"))
    ap.add_argument("--model", default=os.path.join(ROOT, "target/bench-model"), help="a transformers folder (made if missing)")
    ap.add_argument("--data", default=os.path.join(ROOT, "../shared/data/sst2/train.jsonl"))
    ap.add_argument("--rows", type=int, default=2048)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2, help="torch threads (modernft uses every core: 2 here)")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds a request may take before it counts as an error")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench-results.jsonl"))
    args = ap.parse_args()

    if not os.path.exists(os.path.join(args.model, "model.safetensors")):
        subprocess.run([sys.executable, os.path.join(ROOT, "scripts/make_bench_model.py"), args.model], check=True, stdout=subprocess.DEVNULL)
    st_folder = args.model.rstrip("/") + "-st"
    if not os.path.exists(os.path.join(st_folder, "modules.json")):
        subprocess.run([args.binary, "save", args.model, "--out", st_folder, "--format", "sentence-transformers"], check=True, stdout=subprocess.DEVNULL)
    with open(args.data) as f:
        texts = [json.loads(line)["text"] for line, _ in zip(f, range(args.rows))]
    rows_file = os.path.join(ROOT, f"target/bench-serve-{len(texts)}.jsonl")
    with open(rows_file, "w") as f:
        for t in texts:
            f.write(json.dumps({"text": t}) + "\n")

    import torch
    from sentence_transformers import SentenceTransformer
    torch.set_num_threads(args.threads)
    st = SentenceTransformer(st_folder, device="cpu")
    st.encode(texts[:64], batch_size=32)

    print(f"{len(texts)} texts, {args.clients} clients, model {args.model}", flush=True)
    print(f"{'round':>5} {'tool':<26} {'texts/s':>9} {'tokens/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6} {'rows/batch':>10}", flush=True)
    results = []
    for rnd in range(1, args.rounds + 1):
        # 1. serve
        server, addr = start_server(args.binary, st_folder, [])
        try:
            host, port = addr.rsplit(":", 1)
            conn = http.client.HTTPConnection(host, int(port), timeout=args.timeout)
            r, data = post(conn, "/embed", {"inputs": texts[:16]})
            served = np.array(json.loads(data))
            want = st.encode(texts[:16], batch_size=16, normalize_embeddings=True)
            gap = float(np.abs(served - want).max())
            if gap > 1e-4:
                sys.exit(f"serve's vectors differ from sentence-transformers' by {gap:.2e}: not the same model")
            conn.request("GET", "/metrics")
            before = conn.getresponse().read().decode()
            wall, latency, status, tokens = load(addr, texts, args.clients, args.timeout)
            conn.request("GET", "/metrics")
            after = conn.getresponse().read().decode()
            conn.close()
        finally:
            stop_server(server)
        errors = sum(s != 200 for s in status)
        batches = metric(after, "modernft_batch_rows_count") - metric(before, "modernft_batch_rows_count")
        rows = metric(after, "modernft_batch_rows_sum") - metric(before, "modernft_batch_rows_sum")
        lat = np.array(latency) * 1000
        serve = {"tool": "modernft serve", "round": rnd, "texts": len(texts), "clients": args.clients, "seconds": wall,
                 "texts_per_s": len(texts) / wall, "tokens": sum(tokens), "tokens_per_s": sum(tokens) / wall,
                 "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99)), "errors": errors,
                 "rows_per_batch": rows / batches if batches else float("nan"), "max_abs_diff_to_st": gap,
                 "failures": sorted({str(s) for s in status if s != 200})[:5]}
        n_tokens = sum(tokens)

        # 2. offline modernft embed
        t0 = time.perf_counter()
        with open(os.devnull, "wb") as sink:
            subprocess.run([args.binary, "embed", "--model", st_folder, "--input", rows_file, "--batch-size", "32", "--format", "npy"],
                           check=True, stdout=sink, stderr=subprocess.DEVNULL)
        t = time.perf_counter() - t0
        offline = {"tool": "modernft embed (end to end)", "round": rnd, "seconds": t, "texts_per_s": len(texts) / t, "tokens_per_s": n_tokens / t}

        # 3. sentence-transformers encode
        t0 = time.perf_counter()
        st.encode(texts, batch_size=32)
        t = time.perf_counter() - t0
        sbert = {"tool": "sentence-transformers encode", "round": rnd, "seconds": t, "texts_per_s": len(texts) / t, "tokens_per_s": n_tokens / t}

        for r in (serve, offline, sbert):
            extra = (f"{r['p50_ms']:8.0f} {r['p99_ms']:8.0f} {r['errors']:6d} {r['rows_per_batch']:10.1f}" if "p50_ms" in r else "")
            print(f"{rnd:>5} {r['tool']:<26} {r['texts_per_s']:9.1f} {r['tokens_per_s']:9.1f} {extra}", flush=True)
        print(f"{rnd:>5} serve / embed = {serve['texts_per_s'] / offline['texts_per_s']:.2f}, "
              f"serve / sentence-transformers = {serve['texts_per_s'] / sbert['texts_per_s']:.2f}", flush=True)
        results.append({"case": "serve-sst2", "serve": serve, "embed": offline, "sentence_transformers": sbert})
        with open(args.out, "a") as f:
            f.write(json.dumps(results[-1]) + "\n")

    med = lambda xs: float(np.median(xs))  # noqa: E731
    a = med([r["serve"]["texts_per_s"] / r["embed"]["texts_per_s"] for r in results])
    b = med([r["serve"]["texts_per_s"] / r["sentence_transformers"]["texts_per_s"] for r in results])
    errors = sum(r["serve"]["errors"] for r in results)
    print(f"median over {len(results)} round(s): serve / embed = {a:.2f}, serve / sentence-transformers = {b:.2f}; errors {errors}")
    if errors:
        print(f"failures: {[r['serve']['failures'] for r in results]}")
        sys.exit(1)


if __name__ == "__main__":
    main()
