"""A Modbus slave for the gateway's tests, on pymodbus (a peer not written here).

Usage: modbus_slave.py PORT UNIT SPEC_JSON          (Modbus TCP on 127.0.0.1:PORT)
       modbus_slave.py rtu:PATH UNIT SPEC_JSON      (Modbus RTU on a serial device, 19200 8N1:
                                                    a pty refuses parity, so tests run without it)
SPEC_JSON: {"input": {"2": 620, "3": 280}, "discrete": {"0": 1}, "coil": {}, "holding": {}}
Addresses are PDU addresses (0-based). Unlisted addresses answer exception 02.
Prints "ready" once listening.
"""
import asyncio
import warnings
import json
import sys

from pymodbus.datastore import ModbusDeviceContext, ModbusServerContext, ModbusSparseDataBlock
from pymodbus import FramerType
from pymodbus.exceptions import NoSuchIdException
from pymodbus.server import StartAsyncSerialServer, StartAsyncTcpServer
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
        server = StartAsyncSerialServer(
            context=context, framer=FramerType.RTU, port=where[4:], baudrate=19200, parity="N", stopbits=1, bytesize=8,
            ignore_missing_devices=True,  # a slave that is not there stays silent, as on a real bus
        )
    else:
        server = StartAsyncTcpServer(context=context, address=("127.0.0.1", int(where)))
    print("ready", flush=True)
    await server


asyncio.run(main())
