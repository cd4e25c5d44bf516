"""A real SMTP server (aiosmtpd) for herald's tests.

Prints its port on the first line of stdout, saves each accepted message to --out as NNNN.eml,
and answers DATA with the scripted codes of --replies (comma-separated; 250 once they run out).

With --drop-ratio R (the chaos suite), that share of messages is read whole and then the connection is
closed without an answer: the sender cannot know whether it was accepted. Every message read is logged
to received.log as "<answer> <Message-ID>", answer being a code or "drop".
"""
import argparse
import asyncio
import os
import random
from email.parser import BytesHeaderParser

from aiosmtpd.smtp import SMTP

REPLIES = {
    "250": "250 2.0.0 OK: queued",
    "451": "451 4.3.0 Temporary failure, try again later",
    "550": "550 5.1.1 Mailbox unavailable",
}


class Handler:
    def __init__(self, out, script, drop_ratio, seed):
        self.out = out
        self.script = script
        self.drop_ratio = drop_ratio
        self.random = random.Random(seed)
        self.attempts = 0
        self.accepted = 0

    async def handle_DATA(self, server, session, envelope):
        content = envelope.original_content or envelope.content
        message_id = BytesHeaderParser().parsebytes(content).get("Message-ID", "")
        if self.drop_ratio and self.random.random() < self.drop_ratio:
            self.log_received("drop", message_id)
            server.transport.abort()  # read whole, never answered
            return "250 2.0.0 unheard"
        code = self.script[self.attempts] if self.attempts < len(self.script) else "250"
        self.attempts += 1
        with open(os.path.join(self.out, "attempts.log"), "a") as log:
            log.write(code + "\n")
        self.log_received(code, message_id)
        if code == "250":
            path = os.path.join(self.out, f"{self.accepted:04d}.eml")
            self.accepted += 1
            with open(path + ".tmp", "wb") as f:
                f.write(envelope.original_content or envelope.content)
            os.rename(path + ".tmp", path)  # readers never see half a message
        return REPLIES[code]

    def log_received(self, answer, message_id):
        with open(os.path.join(self.out, "received.log"), "a") as log:
            log.write(f"{answer} {message_id}\n")


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--replies", default="")
    parser.add_argument("--drop-ratio", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    script = [c for c in args.replies.split(",") if c]
    handler = Handler(args.out, script, args.drop_ratio, args.seed)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(handler, hostname="sink.test"), "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()


asyncio.run(main())
