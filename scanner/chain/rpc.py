"""JSON-RPC access with bounded retries: transient faults are retried, real errors are not.

Transient = the node could not be reached or was overloaded (connection refused/reset,
timeouts, HTTP 429 and 5xx). Anything else (a revert, a bad parameter) is raised at once.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar, cast

import requests
from tenacity import Future, RetryError, Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential
from web3 import HTTPProvider, Web3

from scanner.config import Config
from scanner.errors import ChainError, ConfigError

log = logging.getLogger(__name__)
T = TypeVar("T")


def is_transient(exc: BaseException) -> bool:
    """True for faults that a retry can cure."""
    if isinstance(exc, (requests.ConnectionError, requests.Timeout, ConnectionError, TimeoutError)):
        return True
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        status = exc.response.status_code
        return status == 429 or status >= 500
    return False


class ChainClient:
    """A web3.py 8 client whose every call goes through one retry policy."""

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 10.0,
        max_retries: int = 6,
        max_backoff_s: float = 4.0,
    ) -> None:
        self.url = url
        self.w3 = Web3(HTTPProvider(url, request_kwargs={"timeout": timeout_s}))
        self._attempts = max(1, max_retries + 1)
        self._max_backoff_s = max_backoff_s
        self.rpc_calls = 0  # JSON-RPC requests sent by rpc / rpc_batch / rpc_many (a batch counts each)
        self._count_lock = threading.Lock()

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run `fn(*args, **kwargs)`, retrying transient faults with jittered exponential backoff."""
        retrying = Retrying(
            retry=retry_if_exception(is_transient),
            stop=stop_after_attempt(self._attempts),
            wait=wait_random_exponential(multiplier=0.1, max=self._max_backoff_s),
            before_sleep=lambda rs: log.warning(
                "RPC %s: %s; retry %d of %d", self.url, cast(Future, rs.outcome).exception(), rs.attempt_number, self._attempts - 1
            ),
            reraise=False,
        )
        try:
            return retrying(fn, *args, **kwargs)
        except RetryError as e:
            cause = e.last_attempt.exception()
            raise ChainError(
                f"node {self.url} unreachable after {self._attempts} attempts ({type(cause).__name__}): "
                "check that it is running and that chain.rpc_url is right"
            ) from cause

    def rpc(self, method: str, *params: Any) -> Any:
        """A raw JSON-RPC request (anvil_* / evm_* methods), with the same retry policy."""
        self._count(1)
        reply = self.call(self.w3.provider.make_request, method, list(params))
        if "error" in reply:
            raise ChainError(f"{method} failed on {self.url}: {reply['error']}")
        return reply["result"]

    def rpc_batch(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        """Many raw requests in one HTTP round trip (a JSON-RPC batch); results in order.

        Saves a round trip per request where the node accepts batches (geth, erigon, reth, anvil).
        """
        if not calls:
            return []
        self._count(len(calls))
        provider = cast(HTTPProvider, self.w3.provider)
        replies = self.call(provider.make_batch_request, [(m, list(p)) for m, p in calls])
        if not isinstance(replies, list):  # the node refused the whole batch
            raise ChainError(f"JSON-RPC batch of {len(calls)} refused by {self.url}: {replies.get('error', replies)}; "
                             "a node that does not take batches needs rpc_many instead")
        for (method, _), reply in zip(calls, replies):
            if "error" in reply:
                raise ChainError(f"{method} failed on {self.url}: {reply['error']}")
        return [reply["result"] for reply in replies]

    def rpc_many(self, calls: Sequence[tuple[str, Sequence[Any]]], workers: int = 4,
                 on_result: Callable[[int], None] | None = None) -> list[Any]:
        """Raw requests with at most `workers` in flight at once; results in order.

        A node answers independent calls (eth_call of different ranges) in parallel, so a cold
        start waits about one call per `workers` calls; the bound keeps a shared node usable.
        `on_result(i)` runs (in a worker thread) as request i's result arrives: progress bars.
        """
        if workers < 1:
            raise ValueError(f"rpc_many needs at least one worker, got {workers}")

        def one(i: int) -> Any:
            result = self.rpc(calls[i][0], *calls[i][1])
            if on_result is not None:
                on_result(i)
            return result

        if len(calls) <= 1 or workers == 1:
            return [one(i) for i in range(len(calls))]
        with ThreadPoolExecutor(max_workers=min(workers, len(calls)), thread_name_prefix="rpc") as pool:
            return list(pool.map(one, range(len(calls))))

    def _count(self, n: int) -> None:
        with self._count_lock:
            self.rpc_calls += n

    def chain_id(self) -> int:
        return self.call(lambda: self.w3.eth.chain_id)

    def block_number(self) -> int:
        return self.call(lambda: self.w3.eth.block_number)

    def get_block(self, ident: int | str, full: bool = False):
        return self.call(self.w3.eth.get_block, ident, full)

    def get_logs(self, params: dict) -> list:
        return self.call(self.w3.eth.get_logs, params)

    def fee_history(self, blocks: int, newest: int | str, percentiles: list[float]):
        return self.call(self.w3.eth.fee_history, blocks, newest, percentiles)


def connect(config: Config) -> ChainClient:
    """The node answers and is the chain the config names, or a clear error naming the URL."""
    url = config.rpc_url
    client = ChainClient(url, timeout_s=config.chain.request_timeout_s, max_retries=2)
    try:
        chain_id = client.chain_id()
    except ChainError as e:
        raise ChainError(f"cannot reach the node at {url}: {e}") from None
    if chain_id != config.chain.chain_id:
        raise ConfigError(f"chain.chain_id is {config.chain.chain_id} but the node at {url} is chain {chain_id}")
    return ChainClient(url, timeout_s=config.chain.request_timeout_s, max_retries=config.chain.max_retries)
