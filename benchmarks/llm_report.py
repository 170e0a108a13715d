"""The tables of benchmarks/llm.py: every server's figures, then modelport's ratios against
llama-server with the targets.

    report(rows, threads=2, load="1.2 -> 2.3", markdown=True, versions={...})
"""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

console = Console(width=200)
HEAD = [
    "server",
    "TTFT 1 stream ms",
    "tok/s 1 stream",
    "TTFT 4 streams ms",
    "tok/s per stream (4)",
    "aggregate tok/s (4)",
    "tokens/request (1; 4)",
    "server CPU ms: to 1st token; per next token (1)",
    "server CPU ms/token (4)",
    "CPU ms/token (4): main thread; next two; rest",
    "prefix TTFT 2nd/1st",
    "peak RSS MiB",
]
# (label, value of a row, ratio wanted against llama-server: ">=" or "<=" and bound)
TARGETS = [
    ("tok/s 1 stream", lambda r: r["one"]["tps"], ">=", 0.95),
    ("TTFT 1 stream", lambda r: r["one"]["ttft"], "<=", 1.10),
    ("aggregate tok/s 4 streams", lambda r: r["four"]["aggregate"], ">=", 1.00),
    ("peak RSS", lambda r: r["rss"], "<=", 1.20),
    # the same two targets as CPU time, which the machine's load does not move
    ("server CPU to the first token (1 stream)", lambda r: r["one"]["cpu_first_ms"], "<=", 1.10),
    ("server CPU per next token (1 stream)", lambda r: r["one"]["cpu_next_ms"], "<=", 1 / 0.95),
    ("server CPU per token (4 streams)", lambda r: r["four"]["cpu_ms"], "<=", 1.00),
]


def cells(name: str, r: dict) -> list[str]:
    if "missing" in r:
        return [name, r["missing"]] + [""] * (len(HEAD) - 2)
    one, four = r.get("one"), r.get("four")  # either may be left out (--streams)
    ones = [
        f"{one['ttft'] * 1e3:.0f}",
        f"{one['tps']:.1f}",
    ] if one else ["", ""]  # fmt: skip
    fours = [
        f"{four['ttft'] * 1e3:.0f}",
        f"{four['tps']:.1f}",
        f"{four['aggregate']:.1f}",
    ] if four else ["", "", ""]  # fmt: skip
    tokens = "; ".join(f"{x['tokens']:.0f}" if x else "-" for x in (one, four))
    split = "; ".join(f"{x:.1f}" for x in four["threads_ms"]) if four else ""
    return [
        name, *ones, *fours, tokens,
        f"{one['cpu_first_ms']:.0f}; {one['cpu_next_ms']:.1f}" if one else "",
        f"{four['cpu_ms']:.1f}" if four else "",
        split,
        f"{r['warm'] / r['cold']:.2f} ({r['cold'] * 1e3:.0f} -> {r['warm'] * 1e3:.0f} ms)"
        if "warm" in r
        else "",
        f"{r['rss']:.0f}",
    ]  # fmt: skip


def ratios(rows: dict[str, dict]) -> list[list[str]]:
    mine, theirs = rows.get("modelport", {}), rows.get("llama-server", {})
    if "rss" not in mine or "rss" not in theirs:
        return []
    out = []
    for label, value, sense, bound in TARGETS:
        try:
            ratio = value(mine) / value(theirs)
        except KeyError:  # a part left out (--streams)
            continue
        met = ratio >= bound if sense == ">=" else ratio <= bound
        out.append([label, f"{ratio:.2f}x", f"{sense} {bound:.2f}x", "met" if met else "NOT met"])
    if "warm" not in mine:
        return out
    second = mine["warm"] / mine["cold"]
    out.append(
        ["prefix: 2nd TTFT / 1st (modelport)", f"{second:.2f}", "<= 0.25",
         "met" if second <= 0.25 else "NOT met"]
    )  # fmt: skip
    return out


def report(
    rows: dict[str, dict], threads: int, load: str, markdown: bool, versions: str = ""
) -> None:
    title = (
        f"SmolLM2-135M Q4_1, {threads} threads per server, 128-token prompts, 128 tokens; "
        f"load average {load}"
    )
    table = Table(*HEAD, title=title, caption=versions or None)
    lines = ["| " + " | ".join(HEAD) + " |", "|" + "---|" * len(HEAD)]
    for name, r in rows.items():
        row = cells(name, r)
        table.add_row(*row)
        lines.append("| " + " | ".join(row) + " |")
    console.print(table)
    against = ratios(rows)
    head = ["modelport / llama-server", "ratio", "target", ""]
    if against:
        second = Table(*head, title="modelport against llama-server")
        for row in against:
            second.add_row(*row)
        console.print(second)
    if markdown:
        print(f"\n{title}\n")
        print("\n".join(lines))
        if against:
            print("\n| " + " | ".join(head) + " |\n|" + "---|" * len(head))
            print("\n".join("| " + " | ".join(row) + " |" for row in against))
