"""How uvicorn runs ``ex4d serve``: stop signals become an exit code; slow and idle connections close.

:class:`StopSignalServer`: uvicorn re-raises SIGTERM/SIGINT after its graceful shutdown, so the
process would die by the signal (exit -15) or a KeyboardInterrupt in the middle of the cleanup;
here ``run`` returns and ``serve`` turns the signal into its exit code (0 SIGTERM, 130 SIGINT).

uvicorn closes a keep-alive connection idle for ``timeout_keep_alive`` seconds, but a connection
that is opened and never sends a request, or sends its headers a byte at a time (slowloris), is
kept forever. :class:`HeaderDeadlineProtocol` closes one whose request headers are not complete
``header_timeout_s`` seconds after it opened or after its previous answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from typing import Optional

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol


class StopSignalServer(uvicorn.Server):
    #: The signals that stopped the server, in order (read after ``run``).
    stop_signals: list[int] = []

    @contextlib.contextmanager
    def capture_signals(self):
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.stop_signals = list(self._captured_signals)


def protocol_with_header_deadline(header_timeout_s: float) -> type:
    class HeaderDeadlineProtocol(H11Protocol):
        _header_timer: Optional[asyncio.TimerHandle] = None

        def connection_made(self, transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def connection_lost(self, exc) -> None:
            self._cancel()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.conn.their_state is not h11.IDLE:  # the request line and headers are in
                self._cancel()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
                self._arm()  # the next request's headers have the same deadline

        def _arm(self) -> None:
            self._cancel()
            self._header_timer = self.loop.call_later(header_timeout_s, self._expired)

        def _cancel(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _expired(self) -> None:
            self._header_timer = None
            if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
                self.transport.close()

    return HeaderDeadlineProtocol
