"""An SMTP sink in its own process for the benchmarks: it accepts every mail and records its arrival.

    .venv/bin/python bench/smtpsink.py PORT FILE [DELAY_MS]

aiosmtpd on 127.0.0.1:PORT, no TLS, no AUTH.  For each mail accepted it
writes one line to FILE, flushed at once: the arrival time (time.time(),
after the whole DATA is in, before the "250" goes back), the mail's
Message-ID, its In-Reply-To and its size in bytes, tab-separated.  Only the
header block is parsed.  It runs until SIGTERM.  bench/ingest.py counts the
lines; bench/latency.py matches each acknowledgement to the customer's mail
by In-Reply-To.

With DELAY_MS each DATA is answered that many milliseconds late (an
asyncio sleep, so the connections' waits overlap): a relay across a
network instead of one on the same machine.
"""

from __future__ import annotations

import asyncio
import email.parser
import email.policy
import signal
import sys
import threading
import time

from aiosmtpd.controller import Controller


class Recorder:
    """aiosmtpd hook: one line per accepted mail."""

    def __init__(self, out, delay: float = 0.0) -> None:
        self.out = out
        self.delay = delay
        self.parser = email.parser.BytesHeaderParser(policy=email.policy.compat32)

    async def handle_DATA(self, server, session, envelope) -> str:
        if self.delay:
            await asyncio.sleep(self.delay)
        arrived = time.time()
        data = envelope.original_content or b""
        headers = self.parser.parsebytes(data)
        fields = (f"{arrived:.6f}", str(headers.get("Message-ID", "")).strip(),
                  str(headers.get("In-Reply-To", "")).strip(), str(len(data)))
        self.out.write("\t".join(fields) + "\n")
        self.out.flush()
        return "250 OK"


def main() -> None:
    port, path = int(sys.argv[1]), sys.argv[2]
    delay = float(sys.argv[3]) / 1000 if len(sys.argv) > 3 else 0.0
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with open(path, "a", encoding="utf-8") as out:
        controller = Controller(Recorder(out, delay), hostname="127.0.0.1", port=port)
        controller.start()
        try:
            stop.wait()
        finally:
            controller.stop()


if __name__ == "__main__":
    main()
