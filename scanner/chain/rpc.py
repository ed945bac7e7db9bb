"""JSON-RPC access with bounded retries: transient faults are retried, real errors are not.

Transient = the node could not be reached or was overloaded (connection refused/reset,
timeouts, HTTP 429 and 5xx). Anything else (a revert, a bad parameter) is raised at once.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
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
        reply = self.call(self.w3.provider.make_request, method, list(params))
        if "error" in reply:
            raise ChainError(f"{method} failed on {self.url}: {reply['error']}")
        return reply["result"]

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
