"""Handing a SO_REUSEPORT port from an old worker to a new one without resetting a connection.

Closing a listening socket resets the connections the kernel had queued on it but the
process had not accepted yet, and with SO_REUSEPORT the kernel keeps queueing new
connections on every socket of the port's group until it closes. So a rolling restart (1)
steers every new connection to the new worker: a one-instruction classic BPF program
attached to the group (``SO_ATTACH_REUSEPORT_CBPF``, no privilege needed) returns the new
socket's index; (2) waits until the old worker has accepted what was queued on its socket
(its accept queue, ``rx_queue`` of a listener in /proc/net/tcp, is empty); (3) stops it.

The index: the kernel appends a socket joining the group at the end of its array and, when
one leaves, moves the last one into its place. A worker started while the N others listen
is therefore at index N; once an old one has closed, the group has N sockets again, N is out
of range and the kernel falls back to its hash (``run_bpf_filter`` returns no socket): the
program needs no detaching. A steered worker started while one of the others was missing
gets index N-1 and the program is inert from the start (the restart is then no better than
before, never worse).

Linux only; elsewhere (or when the kernel refuses) :func:`steer_group_to` says so by
returning False and the restart goes on as before. ``net.ipv4.tcp_migrate_req=1`` would
migrate the queue instead (Linux 5.14+), but it is a system-wide setting.
"""

from __future__ import annotations

import ctypes
import os
import socket
import struct
import sys
import time
from typing import Optional

# include/uapi/asm-generic/socket.h
SO_ATTACH_REUSEPORT_CBPF = 51
# BPF_RET | BPF_K: return the constant k.
_BPF_RET_K = 0x06
_TCP_LISTEN = "0A"


def listening_socket_fd(port: int) -> Optional[int]:
    """The descriptor of this process's listening TCP socket on ``port`` (None if none).

    Args:
        port: the port the socket is bound to.
    """
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            if not os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                continue
            probe = socket.socket(fileno=os.dup(fd))
        except OSError:
            continue
        try:
            if (probe.type == socket.SOCK_STREAM and probe.family in (socket.AF_INET, socket.AF_INET6)
                    and probe.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
                    and probe.getsockname()[1] == port):
                return fd
        except OSError:
            pass
        finally:
            probe.close()
    return None


def steer_group_to(fd: int, index: int) -> bool:
    """Attaches to the reuseport group of listening socket ``fd`` a program sending every new
    connection to the socket at ``index`` (see the module's docstring); False when this
    system cannot (not Linux, or the kernel refused).

    Args:
        fd: a listening socket of the group (this process's).
        index: the position of the socket that should get the connections.
    """
    if not sys.platform.startswith("linux"):
        return False
    instruction = (ctypes.c_ubyte * 8).from_buffer_copy(struct.pack("=HBBI", _BPF_RET_K, 0, 0, index))
    # struct sock_fprog { unsigned short len; struct sock_filter *filter; }
    program = struct.pack("@HP", 1, ctypes.addressof(instruction))  # native alignment, as the C struct
    sock = socket.socket(fileno=os.dup(fd))
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, program)
        return True
    except OSError:
        return False
    finally:
        sock.close()


def socket_inodes(pid: int) -> set[int]:
    """The inodes of the sockets process ``pid`` holds (empty if it is gone)."""
    found = set()
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return found
    for name in names:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{name}")
        except OSError:
            continue
        if target.startswith("socket:["):
            found.add(int(target[8:-1]))
    return found


def queued_connections(pid: int, port: int) -> Optional[int]:
    """How many connections wait in the accept queue of ``pid``'s listening socket on
    ``port`` (None when it has none: gone, or closed already).

    Args:
        pid: the process holding the socket.
        port: the port it listens on.
    """
    inodes = socket_inodes(pid)
    total: Optional[int] = None
    for table in ("tcp", "tcp6"):
        try:
            with open(f"/proc/{pid}/net/{table}") as handle:
                lines = handle.readlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or fields[3] != _TCP_LISTEN or int(fields[9]) not in inodes:
                continue
            if int(fields[1].rsplit(":", 1)[1], 16) != port:
                continue
            # For a listener, rx_queue is the accept queue's length.
            total = (total or 0) + int(fields[4].split(":")[1], 16)
    return total


def wait_until_drained(pid: int, port: int, timeout: float = 2.0, settle: float = 0.05) -> bool:
    """Waits until ``pid``'s listener on ``port`` has an empty accept queue (True) or
    ``timeout`` seconds passed (False). ``settle``: first, for handshakes in flight to land.

    Args:
        pid: the old worker.
        port: the port.
        timeout: the most seconds to wait.
        settle: seconds to wait first.
    """
    time.sleep(settle)
    deadline = time.monotonic() + timeout
    while True:
        queued = queued_connections(pid, port)
        if not queued:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
