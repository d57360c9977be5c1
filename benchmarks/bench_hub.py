"""Hub download throughput from a loopback HTTP server against ``curl`` of
the same file in the same run (best of N, printed as a ratio), then what
the cache's locks cost: a miss (download of a small file) and a hit, with
``MODELHUB_LOCK_MODE=flock`` against ``lease`` (the mode network
filesystems get), on a local temporary directory.

    python benchmarks/bench_hub.py [--size-mib 256] [--runs 3] [--lock-files 10]

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
    parser.add_argument("--lock-files", type=int, default=10)
    args = parser.parse_args()
    throughput(args)
    lock_modes(args.lock_files)


def throughput(args):
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


def lock_modes(files: int, hits: int = 200):
    """Median miss and hit per lock mode: a miss takes the file's lock and
    the lock file's; a hit takes none."""
    from dffml_archive.hub import hub_for

    body = os.urandom(1 << 20)
    digest = hashlib.sha256(body).hexdigest()
    server = HubServer()
    urls = [f"{server.url}/f{index}.bin" for index in range(files)]
    for url in urls:
        server.files[url[len(server.url):]] = body
    medians = {}
    try:
        for mode in ("flock", "lease"):
            os.environ["MODELHUB_LOCK_MODE"] = mode
            with tempfile.TemporaryDirectory() as work:
                cache = pathlib.Path(work) / "hub"
                misses = [_timed(hub_for(url, cache).download_model(url, sha256=digest))
                          for url in urls]
                found = [_timed(hub_for(urls[0], cache).download_model(urls[0], sha256=digest))
                         for _ in range(hits)]
            medians[mode] = (sorted(misses)[len(misses) // 2], sorted(found)[len(found) // 2])
    finally:
        os.environ.pop("MODELHUB_LOCK_MODE", None)
        server.close()
    (flock_miss, flock_hit), (lease_miss, lease_hit) = medians["flock"], medians["lease"]
    print(f"lock modes (median of {files} misses of 1 MiB / {hits} hits, local disk): "
          f"miss flock {flock_miss * 1e3:.0f} ms, lease {lease_miss * 1e3:.0f} ms "
          f"(lease/flock {lease_miss / flock_miss:.1f}x); hit flock {flock_hit * 1e3:.2f} ms, "
          f"lease {lease_hit * 1e3:.2f} ms ({lease_hit / flock_hit:.2f}x)")


def _timed(coroutine) -> float:
    started = time.perf_counter()
    asyncio.run(coroutine)
    return time.perf_counter() - started


if __name__ == "__main__":
    if shutil.which("curl") is None:
        sys.exit("error: curl is not installed")
    main()
