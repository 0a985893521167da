"""A Modbus slave for the gateway's tests, on pymodbus (a peer not written here).

Usage: modbus_slave.py PORT UNIT SPEC_JSON          (Modbus TCP on 127.0.0.1:PORT)
       modbus_slave.py rtu:PATH UNIT SPEC_JSON      (Modbus RTU on a serial device, 19200 8N1:
                                                    a pty refuses parity, so tests run without it)
SPEC_JSON: {"input": {"2": 620, "3": 280}, "discrete": {"0": 1}, "coil": {}, "holding": {}}
Addresses are PDU addresses (0-based). Unlisted addresses answer exception 02.
Prints "ready" once listening.

While it runs, each line on stdin in the same shape (listed addresses only) sets those
values, as a controller's state changing; it answers "ok" once they are served (or
"error: ..."). A test drives a vendor controller through its states this way.
"""
import asyncio
import warnings
import json
import sys

from pymodbus.datastore import ModbusDeviceContext, ModbusServerContext, ModbusSparseDataBlock
from pymodbus import FramerType
from pymodbus.exceptions import NoSuchIdException
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import simcore


def block(values):
    # Keys are PDU addresses (pymodbus 3.16 no longer adds 1).
    return ModbusSparseDataBlock({int(a): int(v) for a, v in values.items()} or {65535: 0})


warnings.filterwarnings("ignore")


def _only_known_devices(self, device_id):
    """pymodbus 3.16 answers an unknown unit id as unit 0; on a real bus a
    missing slave is silent. Raise NoSuchIdException instead, which the server
    (with ignore_missing_devices) answers with silence."""
    if device_id not in self.devices:
        raise NoSuchIdException(f"device {device_id}")
    return self.devices[device_id]


simcore.SimCore._SimCore__get_device = _only_known_devices


async def main():
    where, unit, spec = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
    device = ModbusDeviceContext(
        di=block(spec.get("discrete", {})),
        co=block(spec.get("coil", {})),
        hr=block(spec.get("holding", {})),
        ir=block(spec.get("input", {})),
    )
    context = ModbusServerContext(devices={unit: device}, single=False)
    if where.startswith("rtu:"):
        server = ModbusSerialServer(
            context, framer=FramerType.RTU, port=where[4:], baudrate=19200, parity="N", stopbits=1, bytesize=8,
            ignore_missing_devices=True,  # a slave that is not there stays silent, as on a real bus
        )
    else:
        server = ModbusTcpServer(context, address=("127.0.0.1", int(where)))
    print("ready", flush=True)
    changes = asyncio.create_task(apply_changes(server, unit))
    await server.serve_forever()
    changes.cancel()


# The read function code of each table: setting through it writes the table itself
# (input registers and discrete inputs are read-only only on the wire).
FUNCTION = {"coil": 1, "discrete": 2, "holding": 3, "input": 4}


async def apply_changes(server, unit):
    """Applies each line of stdin to the served values until stdin closes."""
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            return
        try:
            for table, values in json.loads(line).items():
                for address, value in values.items():
                    refused = await server.context.async_setValues(unit, FUNCTION[table], int(address), [int(value)])
                    if refused:
                        raise ValueError(f"{table} {address}: {refused}")
            print("ok", flush=True)
        except Exception as e:  # a test's mistake: say it, keep serving
            print(f"error: {e}", flush=True)


asyncio.run(main())
