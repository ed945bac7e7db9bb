"""New-head notifications over a WebSocket subscription, so watchers react to a block at once.

The watcher still reads heads and logs over HTTP (and still polls, slower, as a fallback): this
only wakes it. If the node has no WebSocket endpoint or the connection drops, the notifier
reconnects with backoff and the watcher keeps polling meanwhile.
"""
from __future__ import annotations

import asyncio
import logging
import threading

from web3 import AsyncWeb3, WebSocketProvider

log = logging.getLogger(__name__)


class HeadNotifier:
    """Sets `event` for every `newHeads` message from `ws_url`; runs in its own daemon thread."""

    def __init__(self, ws_url: str, event: threading.Event | None = None, max_backoff_s: float = 5.0) -> None:
        self.ws_url = ws_url
        self.event = event or threading.Event()
        self.max_backoff_s = max_backoff_s
        self.heads = 0
        self.connected = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="head-notifier", daemon=True)

    def start(self) -> HeadNotifier:
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout_s)

    def _run(self) -> None:
        asyncio.run(self._follow())

    async def _follow(self) -> None:
        backoff = 0.1
        while not self._stop.is_set():
            try:
                async with AsyncWeb3(WebSocketProvider(self.ws_url)) as w3:
                    await w3.eth.subscribe("newHeads")
                    self.connected.set()
                    backoff = 0.1
                    async for _ in self._messages(w3):
                        self.heads += 1
                        self.event.set()
            except Exception as e:  # the node went away or refuses WebSockets: polling carries on
                log.info("head subscription on %s: %s; retrying in %.1f s", self.ws_url, e, backoff)
            self.connected.clear()
            await asyncio.sleep(backoff)
            backoff = min(self.max_backoff_s, backoff * 2)

    async def _messages(self, w3):
        """Subscription messages until stopped (checked at least every half second)."""
        stream = w3.socket.process_subscriptions().__aiter__()
        while not self._stop.is_set():
            try:
                yield await asyncio.wait_for(stream.__anext__(), timeout=0.5)
            except TimeoutError:
                continue
