"""A NOTIFY_SOCKET for the end-to-end tests: a unix datagram socket the test binds,
read by a thread that keeps every message (sd_notify's "KEY=value" lines) in order."""

import os
import socket
import threading
import time

import harness as h


class NotifySocket:
    def __init__(self, directory):
        self.path = os.path.join(directory, "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.2)
        self.lock = threading.Lock()
        self.msgs = []             # (monotonic time, {key: value}) in arrival order
        self.closed = False
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        while not self.closed:
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            fields = {}
            for line in data.decode("utf-8", "replace").split("\n"):
                if "=" in line:
                    k, v = line.split("=", 1)
                    fields[k] = v
            with self.lock:
                self.msgs.append((time.monotonic(), fields))

    def close(self):
        self.closed = True
        self.thread.join()
        self.sock.close()

    def mark(self):
        """A position in the message list: later calls look only past it."""
        with self.lock:
            return len(self.msgs)

    def since(self, mark=0, key=None):
        with self.lock:
            msgs = self.msgs[mark:]
        return [m for m in msgs if key is None or key in m[1]]

    def count(self, key, mark=0):
        return len(self.since(mark, key))

    def wait(self, what, cond, timeout=30):
        h.Case.wait_for(None, what, cond, timeout=timeout, interval=0.05)

    def wait_key(self, key, mark=0, timeout=30, proc=None):
        """The first message past mark that has key; fails after timeout."""
        def seen():
            check_alive(proc)
            return self.count(key, mark) > 0
        self.wait("%s= from the daemon" % key, seen, timeout)
        return self.since(mark, key)[0][1]


def check_alive(proc):
    if proc is not None and proc.poll() is not None:
        raise h.TestFailure("the daemon exited (%s)" % proc.returncode)
