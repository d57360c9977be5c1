"""Hub download throughput from a loopback HTTP server against ``curl`` of
the same file in the same run (best of N, printed as a ratio).

    python benchmarks/bench_hub.py [--size-mib 256] [--runs 3]

Both fetch from one ``http.server`` on 127.0.0.1 (port 0); ours streams
through httpx, hashes sha256 and writes a partial file renamed when
verified; curl writes to a file without hashing (``curl -s -o``)."""
import argparse
import asyncio
import hashlib
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from _hub_server import HubServer  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    from dffml_archive.hub import hub_for

    body = os.urandom(args.size_mib << 20)
    digest = hashlib.sha256(body).hexdigest()
    server = HubServer()
    server.files["/w.bin"] = body
    url = f"{server.url}/w.bin"
    ours, theirs = [], []
    try:
        for _ in range(args.runs):
            with tempfile.TemporaryDirectory() as work:
                started = time.perf_counter()
                path = asyncio.run(hub_for(url, pathlib.Path(work) / "hub").download_model(
                    url, sha256=digest))
                ours.append(time.perf_counter() - started)
                assert path.stat().st_size == len(body)
                target = pathlib.Path(work) / "curl.bin"
                started = time.perf_counter()
                subprocess.run(["curl", "-s", "-o", str(target), url], check=True)
                theirs.append(time.perf_counter() - started)
    finally:
        server.close()
    size = len(body) / 1e6
    best_ours, best_curl = min(ours), min(theirs)
    print(f"hub download: {size / best_ours:.0f} MB/s  curl: {size / best_curl:.0f} MB/s  "
          f"ratio (hub/curl time): {best_ours / best_curl:.2f}  ({args.size_mib} MiB, "
          f"best of {args.runs}; the hub also hashes sha256 and fsyncs)")


if __name__ == "__main__":
    if shutil.which("curl") is None:
        sys.exit("error: curl is not installed")
    main()
