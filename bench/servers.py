"""Throwaway redis-server and PostgreSQL for the benchmarks: free ports,
temporary directories, stopped on exit. Standard library only."""

import argparse
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODULE = os.path.join(REPO, "target", "release", "libredis_campaign.so")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_cluster_port():
    """A free port whose cluster bus port (+10000) is free too."""
    import random
    while True:
        port = random.randint(20000, 40000)
        try:
            for candidate in (port, port + 10000):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", candidate))
            return port
        except OSError:
            continue


class Redis:
    """A minimal RESP2 client: enough for pipelined benchmark traffic."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.file = self.sock.makefile("rb")

    @staticmethod
    def encode(*args):
        out = [b"*%d\r\n" % len(args)]
        for arg in args:
            if not isinstance(arg, bytes):
                arg = str(arg).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
        return b"".join(out)

    def read(self):
        line = self.file.readline()
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.file.read(n + 2)[:-2]
            return data.decode(errors="replace")
        if kind == b"*":
            return [self.read() for _ in range(int(rest))]
        raise RuntimeError("bad reply %r" % line)

    def call(self, *args):
        self.sock.sendall(self.encode(*args))
        return self.read()

    def pipeline(self, commands):
        self.sock.sendall(b"".join(self.encode(*c) for c in commands))
        return [self.read() for _ in commands]

    def info(self, section):
        text = self.call("INFO", section)
        return dict(
            line.split(":", 1) for line in text.splitlines() if ":" in line
        )

    def status(self):
        flat = self.call("CAMPAIGN.STATUS")
        return dict(zip(flat[::2], flat[1::2]))


class RedisServer:
    def __init__(self, *module_args, load_module=True, extra=(), port=None):
        self.dir = tempfile.mkdtemp(prefix="bench-redis-")
        self.port = port or free_port()
        args = [
            "redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
            "--dir", self.dir, "--save", "", "--appendonly", "no",
            "--logfile", os.path.join(self.dir, "redis.log"),
        ]
        args += list(extra)
        if load_module:
            args += ["--loadmodule", MODULE] + [str(a) for a in module_args]
        self.process = subprocess.Popen(args)
        for _ in range(200):
            try:
                self.client().call("PING")
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def client(self):
        return Redis(self.port)

    def stop(self):
        self.process.kill()
        self.process.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def settled_used_memory(redis):
    """used_memory once it stops moving (a DEL may free in the background)."""
    previous = -1
    while True:
        used = int(redis.info("memory")["used_memory"])
        if used == previous:
            return used
        previous = used
        time.sleep(0.3)


def pg_bin():
    bins = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda p: int(p.split("/")[-2]) if p.split("/")[-2].isdigit() else 0,
    )
    return bins[-1]


class Postgres:
    """A cluster of our own (as the postgres user when run as root)."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="bench-pg-")
        self.port = free_port()
        self.root = os.geteuid() == 0
        if self.root:
            os.chmod(self.dir, 0o755)
            subprocess.run(["chown", "-R", "postgres:postgres", self.dir], check=True)
        self.data = os.path.join(self.dir, "data")
        self.tool("initdb", "-D", self.data, "-U", "postgres", "-A", "trust",
                  "--no-sync", "-E", "UTF8")
        self.tool("pg_ctl", "-D", self.data, "-l", os.path.join(self.dir, "pg.log"),
                  "-o", "-p %d -c listen_addresses=127.0.0.1 -k %s" % (self.port, self.dir),
                  "-w", "start")
        self.url = "host=127.0.0.1 port=%d user=postgres dbname=postgres" % self.port

    def tool(self, name, *args):
        command = [os.path.join(pg_bin(), name)] + list(args)
        if self.root:
            command = ["runuser", "-u", "postgres", "--"] + command
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)

    def psql(self, sql, stdin=None):
        command = [os.path.join(pg_bin(), "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1",
                   "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                   "-d", "postgres", "-At", "-c", sql]
        return subprocess.run(command, check=True, input=stdin,
                              capture_output=True).stdout.decode().strip()

    def stop(self):
        self.tool("pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)


def arguments(description, output_name):
    """The options every benchmark takes: size, rounds, where figures go."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=os.path.join(REPO, "docs", "bench", output_name))
    return parser.parse_args()
