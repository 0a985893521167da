"""A fire remote-monitoring centre for the gateway's tests (GB/T 26875.3-2011),
decoding with its own reading of the standard (struct, no code shared with
the gateway's codec).

Usage: fire_centre.py PORT OUT_JSONL [options]
  --address HEX      the centre's address (12 hex digits, default 000000000001)
  --skip N           do not confirm the first N data frames (command 2) it gets
  --deny-type T      deny (command 6) every data frame of application type T
  --sync             on each connection, after the first data frame: set the
                     device's clock (command 1, type 90) to 2030-01-02 03:04:05,
                     then read its status (command 4, type 81) and clock (type 88)

Listens on 127.0.0.1:PORT, prints "ready" once listening, and writes one JSON
object per frame received to OUT_JSONL (flushed at once):
  {"t": <unix s when read>, "serial", "version": [major, minor], "time": [s, m, h, d, mo, y],
   "source", "destination" (12 hex digits, most significant first), "command",
   "type", "count", "objects": [...], "answer": "confirm" | "deny" | "skip" | null}
and one line {"bad": <hex>, "why": ...} for bytes that are no good frame.
"""
import json
import socket
import struct
import sys
import threading
import time

START, END = b"@@", b"##"
CONTROL = struct.Struct("<HBB6s6s6sHB")  # serial, version, time, src, dst, length, command


def addr_hex(b):
    return b[::-1].hex()


def checksum(data):
    return sum(data) % 256


def time_label(b):
    return list(b)


def decode_unit(data):
    if len(data) < 2:
        return None, 0, []
    t, n = data[0], data[1]
    body = data[2:]
    objs = []
    if t == 2:  # component running status: 46 bytes each
        for i in range(n):
            o = body[i * 46:(i + 1) * 46]
            st, sa, ct, ca, status = struct.unpack_from("<BBBIH", o, 0)
            desc = o[9:40].split(b"\0", 1)[0].decode("gb18030", errors="replace")
            objs.append({"system_type": st, "system_address": sa, "component_type": ct,
                         "component_address": ca, "status": status, "description": desc,
                         "time": time_label(o[40:46])})
    elif t == 3:  # analog values: 16 bytes each
        for i in range(n):
            o = body[i * 16:(i + 1) * 16]
            st, sa, ct, ca, at, v = struct.unpack_from("<BBBIBh", o, 0)
            objs.append({"system_type": st, "system_address": sa, "component_type": ct,
                         "component_address": ca, "analog_type": at, "value": v,
                         "time": time_label(o[10:16])})
    elif t == 21:  # the device's running status: 7 bytes each
        for i in range(n):
            o = body[i * 7:(i + 1) * 7]
            objs.append({"status": o[0], "time": time_label(o[1:7])})
    elif t == 28:  # the device's clock
        objs.append({"time": time_label(body[0:6])})
    else:
        objs.append({"raw": body.hex()})
    return t, n, objs


class Centre:
    def __init__(self, out, address, skip, deny_type, sync):
        self.out = out
        self.address = bytes.fromhex(address)[::-1]
        self.skip = skip
        self.deny_type = deny_type
        self.sync = sync
        self.lock = threading.Lock()
        self.serial = 1000

    def write(self, obj):
        with self.lock:
            self.out.write(json.dumps(obj, ensure_ascii=False) + "\n")
            self.out.flush()

    def frame(self, serial, device, command, data=b""):
        now = time.localtime()
        label = bytes([now.tm_sec, now.tm_min, now.tm_hour, now.tm_mday, now.tm_mon, now.tm_year - 2000])
        control = CONTROL.pack(serial, 1, 0, label, self.address, device, len(data), command)
        return START + control + data + bytes([checksum(control + data)]) + END

    def next_serial(self):
        self.serial += 1
        return self.serial

    def serve(self, conn):
        buf = b""
        synced = False
        conn.settimeout(0.2)
        while True:
            try:
                chunk = conn.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            if not chunk:
                return
            t = time.time()
            buf += chunk
            while True:
                at = buf.find(START)
                if at < 0:
                    if buf:
                        self.write({"bad": buf.hex(), "why": "no start"})
                    buf = b""
                    break
                if at > 0:
                    self.write({"bad": buf[:at].hex(), "why": "before start"})
                    buf = buf[at:]
                if len(buf) < 2 + CONTROL.size:
                    break
                serial, major, minor, label, src, dst, length, command = CONTROL.unpack_from(buf, 2)
                total = 2 + CONTROL.size + length + 3
                if length > 1024:
                    self.write({"bad": buf[:2].hex(), "why": "length over 1024"})
                    buf = buf[1:]
                    continue
                if len(buf) < total:
                    break
                control = buf[2:2 + CONTROL.size]
                data = buf[2 + CONTROL.size:2 + CONTROL.size + length]
                if buf[total - 2:total] != END or buf[total - 3] != checksum(control + data):
                    self.write({"bad": buf[:total].hex(), "why": "checksum or end"})
                    buf = buf[1:]
                    continue
                buf = buf[total:]
                typ, count, objs = decode_unit(data)
                answer = None
                if command == 2:
                    if self.skip > 0:
                        self.skip -= 1
                        answer = "skip"
                    elif typ == self.deny_type:
                        answer = "deny"
                        conn.sendall(self.frame(serial, src, 6))
                    else:
                        answer = "confirm"
                        conn.sendall(self.frame(serial, src, 3))
                self.write({"t": t, "serial": serial, "version": [major, minor], "time": time_label(label),
                            "source": addr_hex(src), "destination": addr_hex(dst), "command": command,
                            "type": typ, "count": count, "objects": objs, "answer": answer})
                if self.sync and command == 2 and not synced:
                    synced = True
                    sync_to = bytes([5, 4, 3, 2, 1, 30])  # 2030-01-02 03:04:05
                    conn.sendall(self.frame(self.next_serial(), src, 1, bytes([90, 1]) + sync_to))
                    conn.sendall(self.frame(self.next_serial(), src, 4, bytes([81, 1, 0])))
                    conn.sendall(self.frame(self.next_serial(), src, 4, bytes([88, 1, 0])))


def main():
    port, path = int(sys.argv[1]), sys.argv[2]
    args = sys.argv[3:]
    opts = {"--address": "000000000001", "--skip": "0", "--deny-type": "-1"}
    sync = False
    i = 0
    while i < len(args):
        if args[i] == "--sync":
            sync = True
            i += 1
        else:
            opts[args[i]] = args[i + 1]
            i += 2
    out = open(path, "a", encoding="utf-8")
    centre = Centre(out, opts["--address"], int(opts["--skip"]), int(opts["--deny-type"]), sync)
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", port))
    srv.listen(8)
    print("ready", flush=True)
    while True:
        conn, _ = srv.accept()
        threading.Thread(target=centre.serve, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    main()
