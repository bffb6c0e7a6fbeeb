"""What the tests of every app share: ports, server processes, sockets, clocks and bids.

Test modules import from here, never from one another.
"""
