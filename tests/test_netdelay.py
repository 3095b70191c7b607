"""bench/netdelay.py, for real: the proxy in front of an echo server this test starts on
127.0.0.1 (no database). Round trips take at least twice the one-way delay and not much
more, a burst is not delayed chunk after chunk, bytes arrive intact and in order, and
closing either side closes the other. Example::

    PYTHONPATH=$PWD:$PWD/backoffice OFFLOAD_TEST_DB=sqlite .venv/bin/python -m pytest tests/test_netdelay.py -q
"""

import os
import queue
import socket
import statistics
import subprocess
import sys
import threading
import time

import pytest

from bench.netdelay import delayed, delayed_process
from tests.conftest import ROOT

DELAY_MS = 0.5
SLACK_MS = 5.0  # a loaded 2-core machine: scheduling, not the proxy


class EchoServer:
    """Echoes every connection on 127.0.0.1; ``accepted`` hands the test its server-side
    sockets, ``ended`` the connections whose client side was seen closing."""

    def __init__(self):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = self.listener.getsockname()
        self.accepted = queue.SimpleQueue()
        self.ended = queue.SimpleQueue()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.accepted.put(conn)
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    def _echo(self, conn):
        try:
            while data := conn.recv(65536):
                conn.sendall(data)
        except OSError:
            pass
        self.ended.put(conn)

    def close(self):
        try:
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.listener.close()


@pytest.fixture
def echo():
    server = EchoServer()
    yield server
    server.close()


def connect(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def recv_exactly(s, n):
    out = bytearray()
    while len(out) < n:
        chunk = s.recv(n - len(out))
        assert chunk, f"closed after {len(out)} of {n} bytes"
        out += chunk
    return bytes(out)


def round_trips(port, count=200):
    with connect(port) as s:
        times = []
        for i in range(count):
            message = b"%08d" % i
            t0 = time.perf_counter()
            s.sendall(message)
            assert recv_exactly(s, len(message)) == message
            times.append((time.perf_counter() - t0) * 1000)
    return times


def test_a_round_trip_costs_twice_the_delay(echo):
    direct = statistics.median(round_trips(echo.address[1], 50))
    with delayed(target=echo.address, delay_ms=DELAY_MS) as port:
        rtts = round_trips(port)
    median = statistics.median(rtts)
    print(f"direct p50 {direct:.3f} ms, through the proxy p50 {median:.3f} ms "
          f"(one way ≈ {(median - direct) / 2:.3f} ms for {DELAY_MS} ms asked)")
    assert 2 * DELAY_MS <= median <= 2 * DELAY_MS + SLACK_MS
    assert min(rtts) >= 2 * DELAY_MS  # never early


def test_a_burst_waits_once_not_once_per_chunk(echo):
    """A delay line: 50 messages sent back to back come back about one round trip after
    the last was sent, not 50 delays later."""
    delay_ms = 20  # long enough that a per-chunk delay could not hide in the slack
    with delayed(target=echo.address, delay_ms=delay_ms) as port, connect(port) as s:
        recv_exactly(s, s.send(b"warm"))
        t0 = time.perf_counter()
        for i in range(50):
            s.sendall(b"%04d" % i)
            time.sleep(0.0002)  # separate chunks
        sent = time.perf_counter()
        assert recv_exactly(s, 200) == b"".join(b"%04d" % i for i in range(50))
        done = time.perf_counter()
    assert (done - t0) * 1000 >= 2 * delay_ms
    # One round trip after the last send; a proxy that delayed each chunk behind the
    # ones before it would take about 50 x 40 ms. Twice the round trip: a loaded machine
    # may wake each of the six threads on the way late.
    assert (done - sent) * 1000 <= 4 * delay_ms


def test_bytes_arrive_intact_and_in_order(echo):
    payload = os.urandom(4 << 20)
    with delayed(target=echo.address, delay_ms=DELAY_MS) as port, connect(port) as s:
        # Write from a thread while reading here: neither side's buffers fill up.
        def write():
            view = memoryview(payload)
            for at in range(0, len(payload), 1500):  # many chunks, varying through the proxy
                s.sendall(view[at:at + 1500])

        writer = threading.Thread(target=write)
        writer.start()
        received = recv_exactly(s, len(payload))
        writer.join()
    assert received == payload


def test_closing_the_client_closes_the_server_side(echo):
    with delayed(target=echo.address, delay_ms=DELAY_MS) as port:
        s = connect(port)
        s.sendall(b"hi")
        assert recv_exactly(s, 2) == b"hi"
        server_side = echo.accepted.get(timeout=5)
        s.close()
        assert echo.ended.get(timeout=5) is server_side  # the echo server saw its end


def test_closing_the_server_closes_the_client_side(echo):
    with delayed(target=echo.address, delay_ms=DELAY_MS) as port, connect(port) as s:
        s.sendall(b"hi")
        assert recv_exactly(s, 2) == b"hi"
        server_side = echo.accepted.get(timeout=5)
        server_side.shutdown(socket.SHUT_RDWR)
        server_side.close()
        s.settimeout(5)
        try:
            assert s.recv(10) == b""
        except ConnectionResetError:
            pass  # closed, rudely: also closed


def test_many_connections_at_once(echo):
    with delayed(target=echo.address, delay_ms=DELAY_MS) as port:
        results = []

        def client():
            results.append(statistics.median(round_trips(port, 20)))

        threads = [threading.Thread(target=client) for _ in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    assert len(results) == 20
    assert all(r >= 2 * DELAY_MS for r in results)


def test_the_cli_listens_on_loopback_and_stops_by_itself(echo):
    host, port = echo.address
    proc = subprocess.Popen([sys.executable, str(ROOT / "bench" / "netdelay.py"), "--delay-ms", "0.5",
                             "--target", f"{host}:{port}", "--seconds", "1.5"],
                            stdout=subprocess.PIPE, text=True)
    try:
        listen = int(proc.stdout.readline())
        with connect(listen) as s:
            assert s.getpeername() == ("127.0.0.1", listen)
            s.sendall(b"ping")
            assert recv_exactly(s, 4) == b"ping"
        out, _ = proc.communicate(timeout=10)  # --seconds: it ends without being told
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0
    assert '"connections": 1' in out
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", listen), timeout=1).close()


def test_delayed_process_reports_its_port_and_summary(echo):
    with delayed_process(target=echo.address, delay_ms=DELAY_MS) as proxy:
        rtt = statistics.median(round_trips(proxy.port, 50))
    assert rtt >= 2 * DELAY_MS
    assert proxy.summary["connections"] == 1 and proxy.summary["chunks"] == 100
    assert DELAY_MS <= proxy.summary["held_p50_ms"] <= DELAY_MS + SLACK_MS
