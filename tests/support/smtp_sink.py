"""A real SMTP server (aiosmtpd) for herald's tests.

Prints its port on the first line of stdout, saves each accepted message to --out as NNNN.eml,
and answers DATA with the scripted codes of --replies (comma-separated; 250 once they run out).
"""
import argparse
import asyncio
import os

from aiosmtpd.smtp import SMTP

REPLIES = {
    "250": "250 2.0.0 OK: queued",
    "451": "451 4.3.0 Temporary failure, try again later",
    "550": "550 5.1.1 Mailbox unavailable",
}


class Handler:
    def __init__(self, out, script):
        self.out = out
        self.script = script
        self.attempts = 0
        self.accepted = 0

    async def handle_DATA(self, server, session, envelope):
        code = self.script[self.attempts] if self.attempts < len(self.script) else "250"
        self.attempts += 1
        with open(os.path.join(self.out, "attempts.log"), "a") as log:
            log.write(code + "\n")
        if code == "250":
            path = os.path.join(self.out, f"{self.accepted:04d}.eml")
            self.accepted += 1
            with open(path + ".tmp", "wb") as f:
                f.write(envelope.original_content or envelope.content)
            os.rename(path + ".tmp", path)  # readers never see half a message
        return REPLIES[code]


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--replies", default="")
    args = parser.parse_args()
    handler = Handler(args.out, [c for c in args.replies.split(",") if c])
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(handler, hostname="sink.test"), "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()


asyncio.run(main())
