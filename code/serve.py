"""The HTTP service (code/api.py) in several worker processes, each accepting on a socket of its own.

    python code/serve.py --workers 2 --host 127.0.0.1 --port 8000      (from the repository root, after `make train`)

Why not `uvicorn api:app --workers 2`: uvicorn's workers share one listening socket, and the first worker awake
accepts a whole burst of new connections, so a client's keep-alive connections can all land on one worker while
the other idles (one of two workers answered every request of a load test: docs/serving.md). Here each
worker binds its own socket to the same port with SO_REUSEPORT (Linux), and the kernel spreads new connections
over the sockets by their addresses. Each worker runs the same uvicorn server as the command in api.py's
docstring (httptools with api:JSONErrorsHTTP), configured by the same NOSTRADE_* variables. SIGINT or SIGTERM
stops every worker; when a worker exits by itself the others are stopped too and the exit status is 1.
"""
from __future__ import annotations

import argparse
import multiprocessing
import multiprocessing.connection
import signal
import socket
import sys

import uvicorn

LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


def reuse_port_sockets(host: str, port: int, n: int) -> list[socket.socket]:
    """``n`` TCP sockets bound to (host, port) with SO_REUSEPORT; port 0: a free port, the same for all."""
    sockets = []
    for _ in range(n):
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        port = sock.getsockname()[1]
        sockets.append(sock)
    return sockets


def run_worker(sock: socket.socket, log_level: str) -> None:
    from api import JSONErrorsHTTP  # here, in the worker: the parent never loads the app
    config = uvicorn.Config("api:app", http=JSONErrorsHTTP, log_level=log_level, access_log=False)
    uvicorn.Server(config).run(sockets=[sock])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0: a free port (printed)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--log-level", choices=LOG_LEVELS, default="info")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error(f"--workers: {args.workers} is not a positive number")
    try:
        sockets = reuse_port_sockets(args.host, args.port, args.workers)
    except OSError as err:
        print(f"error: cannot listen on {args.host}:{args.port}: {err.strerror}", file=sys.stderr)
        return 2
    spawn = multiprocessing.get_context("spawn")  # a fresh interpreter each: no state forked from this one
    workers = [spawn.Process(target=run_worker, args=(sock, args.log_level)) for sock in sockets]
    stopping = False

    def stop(*_) -> None:
        nonlocal stopping
        stopping = True
        for w in workers:
            if w.is_alive():
                w.terminate()  # SIGTERM: uvicorn's graceful shutdown

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    port = sockets[0].getsockname()[1]
    for w in workers:
        w.start()
    for sock in sockets:
        sock.close()  # each worker holds its own copy
    print(f"serving http://{args.host}:{port} with {args.workers} worker(s), one SO_REUSEPORT socket each", flush=True)
    multiprocessing.connection.wait([w.sentinel for w in workers])  # the first worker to exit
    failed = not stopping
    stop()
    for w in workers:
        w.join()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
