#!/usr/bin/env python3
"""How many fdatasyncs per second this machine's disk does with 1, 2 and 3
processes syncing at once (BENCHMARKS.md, "State flushes are not the cost").

Each process rewrites 4 KiB pages of its own preallocated 64 MiB file under
DIR (default /work) and fdatasyncs after every write, for 5 s.

usage: fsync-concurrency.py [DIR]
"""

import multiprocessing as mp
import os
import sys
import time

DIR = sys.argv[1] if len(sys.argv) > 1 else "/work"
SIZE = 64 << 20
SECONDS = 5


def worker(i, out):
    path = os.path.join(DIR, f"fsync-concurrency-{os.getpid()}-{i}.dat")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.posix_fallocate(fd, 0, SIZE)
        os.fsync(fd)
        page, pos, n = b"x" * 4096, 0, 0
        start = time.time()
        while time.time() - start < SECONDS:
            os.pwrite(fd, page, pos)
            os.fdatasync(fd)
            pos, n = (pos + 4096) % SIZE, n + 1
        out.put((n, (time.time() - start) / n * 1000))
    finally:
        os.close(fd)
        os.unlink(path)


def main():
    for procs in (1, 2, 3):
        q = mp.Queue()
        ps = [mp.Process(target=worker, args=(i, q)) for i in range(procs)]
        for p in ps:
            p.start()
        for p in ps:
            p.join()
        results = [q.get() for _ in ps]
        total = sum(n for n, _ in results) / SECONDS
        each = ", ".join(f"{ms:.3f}" for _, ms in results)
        print(f"{procs} process(es): {total:,.0f} fdatasyncs/s in all; {each} ms each")


if __name__ == "__main__":
    main()
