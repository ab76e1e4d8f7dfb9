"""The ERSPAN receiver and a connection tracker, run inside a network namespace for tests/e2e_capture.

    python -m tests.e2e_capture.erspan_collector ADDRESS OUT.json

Receives GRE on ADDRESS (collectors.capture.receiver.ErspanReceiver, as the
agent's CaptureSource does), feeds the tracker, prints "ready", and on
SIGTERM writes the receiver's counters, its sessions and every connection
to OUT.json.
"""
from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from pathlib import Path

from collectors.capture.receiver import ErspanReceiver
from collectors.conntrack.tracker import ConnectionTracker


async def main(address: str, out: Path) -> None:
    receiver = ErspanReceiver(address)
    receiver.open()
    tracker = ConnectionTracker(no_response_timeout=2.0)
    ports = frozenset({4789, 8472})
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_reader(receiver.fileno(), lambda: receiver.read(ports, 6081, tracker.observe_control))
    print("ready", flush=True)
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), 0.25)
        except asyncio.TimeoutError:
            tracker.expire(time.time())
    receiver.read(ports, 6081, tracker.observe_control)
    out.write_text(json.dumps({
        "received": receiver.received, "events": receiver.events, "filtered": receiver.filtered,
        "malformed": receiver.malformed, "not_mirror": receiver.not_mirror, "lost": receiver.lost,
        "sessions": [{"source": s.source, "session": s.session_id, "type": s.erspan_type, "packets": s.packets,
                      "lost": s.lost, "hardware": s.hardware} for s in receiver.sessions.values()],
        "connections": [{"src": c.src_ip, "sport": c.src_port, "dst": c.dst_ip, "dport": c.dst_port,
                         "state": c.state, "outcome": c.outcome, "latency": c.latency, "source": c.latency_source,
                         "switch": c.switch} for c in tracker.table.values()]}))
    receiver.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], Path(sys.argv[2])))
