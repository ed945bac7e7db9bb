"""WebSocket head notifications from a real anvil, and survival of the node going away."""
import time

from scanner.chain.heads import HeadNotifier


def test_every_mined_block_wakes_the_notifier(anvil_factory):
    node = anvil_factory(automine=False)
    notifier = HeadNotifier(node.ws_url).start()
    try:
        assert notifier.connected.wait(10)
        for _ in range(3):
            notifier.event.clear()
            node.mine()
            assert notifier.event.wait(5)
        assert notifier.heads == 3
    finally:
        notifier.stop()


def test_the_notifier_reconnects_after_the_node_restarts(anvil_factory, tmp_path):
    state = tmp_path / "state.json"
    node = anvil_factory(automine=False, state_path=state)
    notifier = HeadNotifier(node.ws_url, max_backoff_s=0.5).start()
    try:
        assert notifier.connected.wait(10)
        port = node.port
        node.stop()
        deadline = time.monotonic() + 10
        while notifier.connected.is_set() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not notifier.connected.is_set()
        node = anvil_factory(automine=False, state_path=state, port=port)
        assert notifier.connected.wait(15)
        notifier.event.clear()
        node.mine()
        assert notifier.event.wait(5)
    finally:
        notifier.stop()
