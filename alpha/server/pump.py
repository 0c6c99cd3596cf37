"""One thread that writes every streaming completion's events, instead of one thread per stream.

    pump = StreamPump(poll_s=0.25)
    pump.run(generation, sse_stream)   # in the request's thread: returns when the stream is done
    pump.wake()                        # the engine finished a step: tokens are waiting

Why: with a thread per stream, every engine step woke 32 request threads, each to format one
chunk and write it; on a 2-core VM that was ~3 context switches a token and a fifth of the
server's CPU time in the kernel's scheduler, all of it taken from the decode step's kernels. The
pump wakes once a step (the engine's "step" event) and serves every stream in turn: it drains the
events waiting on the request's queue, lets the request turn them into SSE text
(`_Generation.pump_events`, the same code as before), and writes that text in one chunk.

Writes never block the pump: each goes out only when the socket has room (poll) and with
MSG_DONTWAIT, and what the socket does not take waits in the stream's own buffer for the next
round (rounds come every few milliseconds while one is pending), so a client that reads slowly
holds up only itself. A write that fails (the client
left), or a closed socket noticed while a stream waits for tokens, ends that stream with
ClientGone in its request thread, which cancels its sequences as before.
"""

from __future__ import annotations

import select
import socket
import threading
import time

from alpha.server.http import ClientGone

RETRY_S = 0.005  # how soon a stream with unsent bytes is tried again


def _writable(sock) -> bool:
    """Whether the socket takes bytes now. Asked first because a socket with a timeout (the
    server's connections have one) waits up to that timeout for room before it sends, whatever
    the flags: a full socket would stall every stream."""
    p = select.poll()
    p.register(sock, select.POLLOUT)
    return bool(p.poll(0))


class _Entry:
    def __init__(self, gen, stream):
        self.gen = gen
        self.req = gen.req
        self.sock = stream._handler.connection
        self.pending = b""
        self.finished = False  # the generation has written its last event
        self.error: BaseException | None = None
        self.done = threading.Event()
        self.checked = time.monotonic()


class StreamPump:
    def __init__(self, poll_s: float = 0.25):
        self.poll_s = poll_s
        self._entries: list[_Entry] = []
        self._cv = threading.Condition()
        self._woken = False
        self._thread: threading.Thread | None = None

    def run(self, gen, stream) -> None:
        """Serve `gen` (an openai._Generation whose headers are sent) until its stream is done;
        raises ClientGone if its client left."""
        entry = _Entry(gen, stream)
        with self._cv:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="sse-pump", daemon=True)
                self._thread.start()
            self._entries.append(entry)
            self._woken = True
            self._cv.notify()
        entry.done.wait()
        if entry.error is not None:
            raise entry.error

    def wake(self) -> None:
        with self._cv:
            self._woken = True
            self._cv.notify()

    def _loop(self) -> None:
        while True:
            with self._cv:
                entries = list(self._entries)
                pending = any(e.pending for e in entries)
                if not self._woken:
                    self._cv.wait(RETRY_S if pending else self.poll_s)
                self._woken = False
                entries = list(self._entries)
            ended = [e for e in entries if self._serve(e)]
            if ended:
                with self._cv:
                    self._entries = [e for e in self._entries if e not in ended]
                for e in ended:
                    e.done.set()

    def _serve(self, e: _Entry) -> bool:
        """One round for one stream; True when it is over (finished and written, or failed)."""
        try:
            if not e.finished:
                text, e.finished = e.gen.pump_events()
                if text:
                    data = text.encode("utf-8")
                    e.pending += b"%x\r\n%b\r\n" % (len(data), data)
                elif not e.pending:
                    self._check_client(e)
            if e.pending and _writable(e.sock):
                try:
                    sent = e.sock.send(e.pending, socket.MSG_DONTWAIT)
                except (BlockingIOError, InterruptedError):
                    sent = 0
                e.pending = e.pending[sent:]
            return e.finished and not e.pending
        except (OSError, ValueError, ClientGone) as exc:
            e.error = exc if isinstance(exc, ClientGone) else ClientGone(str(exc))
            return True
        except BaseException as exc:  # a bug: the request's thread reports it (a 500 in the log)
            e.error = exc
            return True

    def _check_client(self, e: _Entry) -> None:
        """A stream with nothing to write checks, every poll interval, that its client is still
        connected (a closed socket reads as end of file)."""
        now = time.monotonic()
        if now - e.checked >= self.poll_s:
            e.checked = now
            if e.req.client_gone():
                raise ClientGone("the client closed the connection")
