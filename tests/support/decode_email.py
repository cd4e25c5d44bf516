"""Reads a raw message (stdin) as a mail reader would, with Python's `email` package,
and prints JSON: the decoded Subject, To and From, and the length of the longest header line.

`subject` is decoded by the modern parser (policy.default); `subject_legacy` by the older
`email.header.decode_header`, which finds encoded-words anywhere in a value.
"""
import email
import email.policy
import json
import re
import sys
from email.header import decode_header, make_header

raw = sys.stdin.buffer.read()
head = raw.split(b"\r\n\r\n", 1)[0]
modern = email.message_from_bytes(raw, policy=email.policy.default)
legacy = email.message_from_bytes(raw, policy=email.policy.compat32)
legacy_subject = re.sub(r"\r?\n(?=[ \t])", "", legacy["Subject"])
print(json.dumps({
    "subject": str(modern["Subject"]),
    "subject_legacy": str(make_header(decode_header(legacy_subject))),
    "to": str(modern["To"]),
    "from": str(modern["From"]),
    "longest_header_line": max(len(line) for line in head.split(b"\r\n")),
}))
