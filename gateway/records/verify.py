#!/usr/bin/env python3
"""Checks the hash chain of an fm-records/1 JSON export, without Rust.

Standard library only (hashlib, json), so a bureau can read and run it:

    python3 verify.py export.json

Prints `ok N` (N records) and exits 0 when every record matches its hash,
seqs run 1, 2, 3, ... with each `prev` the hash of the record before, and
every checkpoint's hash matches the record at its seq (and none names a seq
beyond the last record). Otherwise prints `bad seq S: <what>` for the first
problem and exits 1. An export with a non-empty "filter" holds a selection of
rows, not the whole chain: then only each record's own hash and the seq order
are checked, and a note says links were not checked.

Checkpoint signatures (ed25519) are not checked here: the standard library has
no ed25519. docs/records.md shows how to check them with openssl.
The encoding is the one in docs/records.md ("The hash").
"""

import hashlib
import json
import sys

FORMAT = "fm-records/1"
GENESIS = "0" * 64
FIELDS = ("seq", "at", "kind", "site", "class", "device", "subject", "body", "prev")


def entry_hash(record):
    """SHA-256 over `<byte length>:<bytes>\\n` for each field, lowercase hex."""
    h = hashlib.sha256()
    for name in FIELDS:
        value = record[name]
        if name in ("seq", "at"):
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"{name} is not an integer")
            value = str(value)
        elif not isinstance(value, str):
            raise ValueError(f"{name} is not a string")
        data = value.encode("utf-8")
        h.update(str(len(data)).encode("ascii") + b":" + data + b"\n")
    return h.hexdigest()


def check(export):
    """Returns (None, count, note) when the export verifies, else (message, None, None)."""
    if export.get("format") != FORMAT:
        return f"bad seq -: not an {FORMAT} export (format {export.get('format')!r})", None, None
    full = not export.get("filter")
    checkpoints = export.get("checkpoints") or []
    wanted = {cp["seq"] for cp in checkpoints}
    seen = {0: GENESIS}
    prev_seq, prev_hash = 0, GENESIS
    count = 0
    for position, record in enumerate(export.get("records") or [], 1):
        count = position
        seq = record.get("seq")
        try:
            own = entry_hash(record)
        except (KeyError, ValueError, UnicodeEncodeError) as e:
            return f"bad seq {seq}: record at position {position} is malformed ({e})", None, None
        if own != record.get("hash"):
            return f"bad seq {seq}: record at position {position} does not match its hash (edited)", None, None
        if seq <= prev_seq:
            return f"bad seq {seq}: comes after seq {prev_seq} (reordered)", None, None
        if full:
            if seq != prev_seq + 1:
                return f"bad seq {prev_seq + 1}: missing or out of order, seq {seq} follows seq {prev_seq}", None, None
            if record["prev"] != prev_hash:
                return f"bad seq {seq}: prev is not the hash of seq {prev_seq} (bad link)", None, None
        if seq in wanted:
            seen[seq] = record["hash"]
        prev_seq, prev_hash = seq, record["hash"]
    for cp in sorted(checkpoints, key=lambda c: c["seq"]):
        seq = cp["seq"]
        if seq in seen:
            if seen[seq] != cp["hash"]:
                return f"bad seq {seq}: the checkpoint's hash differs from the record's (rewritten)", None, None
        elif full and seq > prev_seq:
            return (
                f"bad seq {prev_seq + 1}: records end at seq {prev_seq} but a checkpoint names seq {seq} (truncated)",
                None,
                None,
            )
    note = None if full else "filtered export: links between records were not checked"
    return None, count, note


def main(argv):
    if len(argv) != 2:
        print("usage: verify.py EXPORT.json", file=sys.stderr)
        return 2
    with open(argv[1], "rb") as f:
        export = json.load(f)
    problem, count, note = check(export)
    if problem is not None:
        print(problem)
        return 1
    print(f"ok {count}")
    if note:
        print(note, file=sys.stderr)
    print("checkpoint signatures not checked here: see docs/records.md (openssl)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
