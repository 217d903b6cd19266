"""A userspace TCP relay that adds latency (and retransmission-like stalls) to a link.

This kernel has no ``netem``, so a link's delay comes from here: each chunk read from one
side is written to the other ``latency`` seconds later, in order, both ways. ``stall``
is the chance that a chunk waits one more ``rto`` (what a lost segment costs TCP: the
bytes arrive, late). ``blackhole()`` stops forwarding without closing anything, as a
partition would. Runs its own asyncio loop in a thread; bounded: at most ``max_conns``
connections, a 1 MiB read size.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time


class Relay:
    """Listen on ``(host, port)`` (port 0: any) and forward to ``target`` with delay."""

    def __init__(self, host: str, target: tuple[str, int], *, latency: float = 0.05,
                 stall: float = 0.0, rto: float = 0.2, port: int = 0, max_conns: int = 64,
                 seed: int = 0) -> None:
        self.target, self.latency, self.stall, self.rto = target, latency, stall, rto
        self.max_conns, self.conns, self.forwarded = max_conns, 0, 0
        self._rng = random.Random(seed)
        self._black = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(host, port), daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the relay did not start")
        self.host, self.port = self._server.sockets[0].getsockname()[:2]

    def _run(self, host: str, port: int) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._accept, host, port))
        self._ready.set()
        self._loop.run_forever()

    def blackhole(self, on: bool = True) -> None:
        """Stop (or resume) forwarding bytes; connections stay open, as in a partition."""
        if on:
            self._black.set()
        else:
            self._black.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
                      ) -> None:
        if self.conns >= self.max_conns:
            writer.close()
            return
        self.conns += 1
        try:
            up_r, up_w = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            self.conns -= 1
            return
        await asyncio.gather(self._pipe(reader, up_w), self._pipe(up_r, writer),
                             return_exceptions=True)
        self.conns -= 1

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        queue: asyncio.Queue = asyncio.Queue()

        async def deliver() -> None:
            while (item := await queue.get()) is not None:
                due, data = item
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                while self._black.is_set():
                    await asyncio.sleep(0.05)
                writer.write(data)
                await writer.drain()
                self.forwarded += len(data)
            writer.close()

        sender = asyncio.ensure_future(deliver())
        try:
            while data := await reader.read(1 << 20):
                while self._black.is_set():  # nothing crosses a partition
                    await asyncio.sleep(0.05)
                extra = self.rto if self.stall and self._rng.random() < self.stall else 0.0
                queue.put_nowait((time.monotonic() + self.latency + extra, data))
        except (ConnectionError, OSError):
            pass
        finally:
            queue.put_nowait(None)
            await asyncio.gather(sender, return_exceptions=True)

    def close(self) -> None:
        """Stop serving, cancel every connection's tasks, stop the loop and its thread."""
        async def shutdown() -> None:
            self._server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        if self._loop.is_closed():
            return
        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
