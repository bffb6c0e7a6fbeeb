from collections import defaultdict


class _P:
    def __init__(self):
        self.m = defaultdict(set)

    async def join(self, room, c):
        self.m[room].add(c)
        return len(self.m[room])

    def forget(self, room, c):
        self.m[room].discard(c)

    async def leave(self, room, c):
        self.forget(room, c)
        return len(self.m[room])


_p = _P()


def get_presence():
    return _p
