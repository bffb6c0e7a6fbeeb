"""Free ports for the servers the tests start."""

import random
import socket


def free_ports(count: int) -> int:
    """The first of `count` consecutive free ports, below the kernel's ephemeral range.

    Ports the kernel hands out (to outgoing connections too) would be taken
    again between this check and the server's bind far more often.
    """
    for _ in range(200):
        base = random.randrange(20_000, 32_000 - count)
        if all(_is_free(base + offset) for offset in range(count)):
            return base
    raise AssertionError(f"no {count} consecutive free ports")


def _is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    return free_ports(1)
