"""The ranking as a person reads it: one line per opportunity, amounts in whole base tokens."""
from __future__ import annotations

from collections.abc import Iterable

WEI = 10**18


def _eth(wei: int | float) -> str:
    return f"{wei / WEI:+.6f}"


def hop_kinds(opportunity: dict) -> str:
    """Each hop's DEX kind, with a V3 hop's fee tier in bps: `v2 v3/5 v2`."""
    kinds = opportunity.get("kinds") or ["uniswap-v2"] * len(opportunity["pools"])
    return " ".join(f"v3/{fee}" if kind == "uniswap-v3" else "v2" for kind, fee in zip(kinds, opportunity["fees_bps"]))


def ranking_table(block: int | None, opportunities: Iterable[dict], *, limit: int = 10,
                  blocks: dict[str, int] | None = None) -> str:
    """The top `limit` rows under a heading with the ranked block (`blocks`: each chain's, when several)."""
    opportunities = list(opportunities)[:limit]
    if blocks:
        block_text = "blocks " + ", ".join(f"{chain} {number}" for chain, number in sorted(blocks.items()))
    else:
        block_text = f"block {block}" if block is not None else ""
    head = f"{block_text}: {len(opportunities)} opportunities" if block_text else "no block ranked yet"
    lines = [head]
    if opportunities:
        lines.append(f"{'#':>2} {'path':<28} {'dex per hop':<18} {'input':>12} {'gross':>11} {'gas':>10} {'net':>11} "
                     f"{'P(ok)':>6} {'slip':>10} {'EV (ETH)':>11}  id")
    several = len(blocks or ()) > 1 or len({o.get("chain") for o in opportunities}) > 1  # then each path says its chain
    for i, o in enumerate(opportunities, 1):
        path = (f"{o['chain']}:" if several else "") + "→".join(o.get("symbols") or [t[:6] for t in o["tokens"]])
        lines.append(
            f"{i:>2} {path:<28} {hop_kinds(o):<18} {o['amount_in'] / WEI:>12.6f} {_eth(o['gross_profit']):>11} "
            f"{_eth(-o['gas_cost']):>10} {_eth(o['net_profit']):>11} {o['success_probability']:>6.2f} "
            f"{_eth(-o['expected_slippage']):>10} {o['ev'] / WEI:>+11.6f}  {o['id']}"
        )
    return "\n".join(lines)


def best_per_chain(best: dict[str, dict | None]) -> str:
    """One line with each chain's best row, so a chain whose gaps are small still shows beside a busy one."""
    parts = [f"{chain} {o['ev'] / WEI:+.6f} ETH ({o['id']})" if o else f"{chain} none"
             for chain, o in sorted(best.items())]
    return "best per chain: " + ", ".join(parts)
