"""A delay line in front of a TCP server: the database on another machine, emulated.

Listens on 127.0.0.1 (only: there is no option for another address) on a free port and
forwards every connection to ``--target`` (PostgreSQL at 127.0.0.1:5432 by default),
adding a fixed one-way delay in each direction. A chunk read at time t is written at
t + delay; the chunks behind it wait only for their own due time (a delay line, not a
bandwidth limit), and each direction keeps its bytes in order. When either side closes,
the proxy closes both. The TCP handshake is not delayed (opening a connection costs one
round trip less than over a real hop; Django and the workers keep theirs open).

How the delay is made: four threads per connection, a reader and a writer for each
direction, joined by a FIFO queue of (due time, bytes). The reader stamps a chunk as it
returns from ``recv``; the writer sleeps (``time.sleep``) until that chunk's due time
and sends it. asyncio would not do: on Linux its timers round up to whole milliseconds
(epoll), and ``asyncio.sleep(0.0005)`` measured p50 1.107 ms, ``loop.call_later(0.0005)``
1.099 ms, where ``time.sleep(0.0005)`` (``clock_nanosleep``) measured 0.573 ms: the rest
is the thread's timer slack, 50 µs by default. The writer threads set theirs to 1 ns
(``prctl(PR_SET_TIMERSLACK)``, Linux; ignored elsewhere), which brings
``time.sleep(0.0005)`` to 0.523 ms p50, 0.551 ms p99 (2-core machine, 2026-12-01).
No spinning: an idle proxy uses no CPU. The proxy never writes a chunk early; it is
late by the sleep's wake-up, by a thread switch on a busy machine, never by the chunks
ahead of it. Achieved, 0.5 ms asked: through the proxy (tests/test_netdelay.py, an echo
server on loopback) a small message's round trip measured p50 1.06-1.10 ms against
0.014-0.056 ms direct, a one-way delay of 0.51-0.53 ms (ten runs, six of them beside
three or four busy loops); in bench/latency.py's and bench/drain.py's runs the proxy held each
chunk p50 0.52-0.54 ms, p99 0.7-2.9 ms (a shared, loaded machine). The CLI's exit summary
gives these held delays (read to write, per chunk) for any run. Queues are unbounded:
the proxy reads as fast as the sender writes (fine for a benchmark's traffic).

From the shell (prints the port on the first line of stdout, runs for ``--seconds``
(600 unless told) or until SIGTERM/SIGINT, then prints a JSON summary line)::

    .venv/bin/python bench/netdelay.py --delay-ms 0.5
    .venv/bin/python bench/netdelay.py --delay-ms 0.5 --target 127.0.0.1:5432 --seconds 60

From Python, in this process (threads) or in a process of its own (what the benchmarks
use, so that its threads do not wait for the benchmark's GIL)::

    with delayed(target=("127.0.0.1", 5432), delay_ms=0.5) as port:
        psycopg.connect(host="127.0.0.1", port=port, user="postgres")
    with delayed_process(target=("127.0.0.1", 5432), delay_ms=0.5) as proxy:
        ...  # proxy.port; after the block, proxy.summary (the CLI's summary)
"""

import argparse
import ctypes
import json
import queue
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

LISTEN_HOST = "127.0.0.1"
CHUNK = 65536
_HELD_KEPT = 1_000_000  # per proxy: enough for any benchmark, bounded memory

try:
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # not Linux
    _prctl = None


def tight_timers():
    """Make this thread's sleeps end when asked (Linux timer slack 50 µs -> 1 ns)."""
    if _prctl is not None:
        _prctl(29, 1, 0, 0, 0)  # PR_SET_TIMERSLACK


class DelayProxy:
    """The delay line: ``start()``, ``port``, ``close()``; see the module docstring."""

    def __init__(self, target=("127.0.0.1", 5432), delay_ms=0.5, port=0):
        if delay_ms < 0:
            raise ValueError("delay_ms must be >= 0")
        self.target = (target[0], int(target[1]))
        self.delay_ms = delay_ms
        self.delay = delay_ms / 1000
        self.listener = socket.create_server((LISTEN_HOST, port), backlog=128)
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        self.chunks = 0
        self.bytes = 0
        self.held = []  # seconds from read to write, per chunk (the first _HELD_KEPT)
        self._pairs = set()
        self._lock = threading.Lock()
        self._closing = False
        self._acceptor = threading.Thread(target=self._accept, name="netdelay-accept", daemon=True)

    def start(self):
        self._acceptor.start()
        return self

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:  # close() shut the listener down
                return
            threading.Thread(target=self._open, args=(client,), name="netdelay-open", daemon=True).start()

    def _open(self, client):
        try:
            upstream = socket.create_connection(self.target, timeout=10)
            upstream.settimeout(None)
        except OSError:
            client.close()
            return
        for s in (client, upstream):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pair = _Pair(self, client, upstream)
        with self._lock:
            if self._closing:
                pair.shutdown()
            self._pairs.add(pair)
            self.connections += 1
        pair.start()

    def _count(self, nbytes, held):
        # Writers of several connections run at once: the counters take the lock.
        with self._lock:
            self.chunks += 1
            self.bytes += nbytes
            if len(self.held) < _HELD_KEPT:
                self.held.append(held)

    def _forget(self, pair):
        with self._lock:
            self._pairs.discard(pair)

    def close(self, timeout=5.0):
        """Stop accepting, close every connection (both sides), wait for the threads."""
        with self._lock:
            self._closing = True
            pairs = list(self._pairs)
        try:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes accept() (Linux)
        except OSError:
            pass
        self.listener.close()
        if self._acceptor.is_alive():
            self._acceptor.join(timeout)
        for pair in pairs:
            pair.shutdown()
        deadline = time.monotonic() + timeout
        for pair in pairs:
            pair.join(max(0.0, deadline - time.monotonic()))

    def summary(self):
        with self._lock:
            held = sorted(self.held)
        usage = resource.getrusage(resource.RUSAGE_SELF)

        def ms(p):
            return round(held[min(len(held) - 1, int(len(held) * p))] * 1000, 3) if held else None

        return {"listen": f"{LISTEN_HOST}:{self.port}", "target": f"{self.target[0]}:{self.target[1]}",
                "delay_ms": self.delay_ms, "connections": self.connections, "chunks": self.chunks,
                "bytes": self.bytes, "held_p50_ms": ms(0.5), "held_p99_ms": ms(0.99),
                "held_max_ms": round(held[-1] * 1000, 3) if held else None,
                "cpu_s": round(usage.ru_utime + usage.ru_stime, 2)}


class _Pair:
    """One proxied connection: two sockets, a reader and a writer per direction."""

    def __init__(self, proxy, client, upstream):
        self.proxy = proxy
        self.sockets = (client, upstream)
        self._closed = False
        self._lock = threading.Lock()
        self._threads = []
        for src, dst in ((client, upstream), (upstream, client)):
            line = queue.SimpleQueue()
            self._threads += [threading.Thread(target=self._read, args=(src, line), name="netdelay-read",
                                               daemon=True),
                              threading.Thread(target=self._write, args=(line, dst), name="netdelay-write",
                                               daemon=True)]
        self._alive = len(self._threads)

    def start(self):
        for t in self._threads:
            t.start()

    def _read(self, src, line):
        delay = self.proxy.delay
        try:
            while True:
                data = src.recv(CHUNK)
                if not data:
                    break
                line.put((time.monotonic() + delay, data))
        except OSError:
            pass
        finally:
            line.put(None)  # the end, after everything read before it
            self._exit()

    def _write(self, line, dst):
        tight_timers()
        try:
            while (item := line.get()) is not None:
                due, data = item
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                self.proxy._count(len(data), time.monotonic() - due + self.proxy.delay)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            # One side closed (or failed) and what it sent before is delivered: close both.
            self.shutdown()
            self._exit()

    def shutdown(self):
        with self._lock:
            if self._closed:
                return
            self._closed = True
        for s in self.sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)  # wakes the readers blocked in recv()
            except OSError:
                pass

    def _exit(self):
        with self._lock:
            self._alive -= 1
            last = self._alive == 0
        if last:  # no thread uses the sockets any more
            for s in self.sockets:
                s.close()
            self.proxy._forget(self)

    def join(self, timeout):
        deadline = time.monotonic() + timeout
        for t in self._threads:
            if t.ident is not None:
                t.join(max(0.0, deadline - time.monotonic()))


@contextmanager
def delayed(target=("127.0.0.1", 5432), delay_ms=0.5):
    """Run the proxy in this process for the block; yields the port it listens on."""
    with DelayProxy(target, delay_ms) as proxy:
        yield proxy.port


class ProxyProcess:
    """What ``delayed_process`` yields: ``port``, and after the block ``summary``."""

    def __init__(self, process, port):
        self.process, self.port, self.summary = process, port, None


@contextmanager
def delayed_process(target=("127.0.0.1", 5432), delay_ms=0.5, seconds=3600):
    """Run the proxy as ``bench/netdelay.py`` in a process of its own for the block.

    ``seconds`` bounds it should this process die without stopping it."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--delay-ms", str(delay_ms),
           "--target", f"{target[0]}:{target[1]}", "--seconds", str(seconds)]
    process = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        if not line.strip().isdigit():
            raise RuntimeError(f"bench/netdelay.py did not start (printed {line!r})")
        handle = ProxyProcess(process, int(line))
        yield handle
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            out, _ = process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            out, _ = process.communicate()
    lines = [x for x in out.splitlines() if x.startswith("{")]
    handle.summary = json.loads(lines[-1]) if lines else None


def run_fields(delay_ms, proxy):
    """The JSON fields a benchmark's row gains from a run through ``delayed_process``
    (``proxy`` None: no delay): the delay, and the delay the proxy held and its CPU."""
    fields = {"delay_ms": delay_ms}
    if proxy is not None and proxy.summary:
        fields.update(proxy_held_p50_ms=proxy.summary["held_p50_ms"], proxy_held_p99_ms=proxy.summary["held_p99_ms"],
                      proxy_cpu_s=proxy.summary["cpu_s"])
    return fields


def summary_line(proxy):
    """One line of what a finished ``delayed_process`` did, for a benchmark's progress."""
    s = proxy.summary or {}
    return (f"netdelay: {s.get('connections')} connections, {s.get('chunks')} chunks, held p50 "
            f"{s.get('held_p50_ms')} ms, p99 {s.get('held_p99_ms')} ms, cpu {s.get('cpu_s')} s")


def parse_target(text):
    host, _, port = text.rpartition(":")
    return host or "127.0.0.1", int(port)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--delay-ms", type=float, default=0.5, help="one-way delay, each direction")
    parser.add_argument("--target", type=parse_target, default=("127.0.0.1", 5432), help="host:port")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (0: a free one)")
    parser.add_argument("--seconds", type=float, default=600, help="stop after this long")
    args = parser.parse_args()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    with DelayProxy(args.target, args.delay_ms, args.port) as proxy:
        print(proxy.port, flush=True)
        print(f"netdelay: 127.0.0.1:{proxy.port} -> {args.target[0]}:{args.target[1]}, "
              f"{args.delay_ms} ms each way, for at most {args.seconds:g} s", file=sys.stderr, flush=True)
        stop.wait(args.seconds)
    print(json.dumps(proxy.summary()), flush=True)


if __name__ == "__main__":
    main()
