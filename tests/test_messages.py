"""Round trips of the control messages, exact for integers past 64 bits, and their errors."""
import msgpack
import pytest

from scanner.wire.frames import WireError
from scanner.wire.messages import BlockUpdate, GasUpdate, Withdraw, decode


def test_messages_round_trip_exactly():
    big = 2**112 - 1
    for msg in (
        BlockUpdate(1, 10, "0xaa", "0xbb", 10**9, 15_000_000, 30_000_000, 0, {3: (big, 1), 7: (5, 2**70)}),
        Withdraw(0, 9, 2, {3: (1, big)}),
        GasUpdate(10, 10**9, 11 * 10**8, (1, 2, 3), 0.5, 12),
    ):
        assert decode(msg.encode()) == msg


@pytest.mark.parametrize("data", [b"\xc1", msgpack.packb([1, 2]), msgpack.packb({"kind": "nope"}),
                                  msgpack.packb({"kind": "block", "shard": 0})])
def test_bad_messages_raise_wire_error(data):
    with pytest.raises(WireError):
        decode(data)
