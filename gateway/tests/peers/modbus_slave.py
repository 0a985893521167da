"""A Modbus TCP slave for the gateway's tests, on pymodbus (a peer not written here).

Usage: modbus_slave.py PORT UNIT SPEC_JSON
SPEC_JSON: {"input": {"2": 620, "3": 280}, "discrete": {"0": 1}, "coil": {}, "holding": {}}
Addresses are PDU addresses (0-based). Unlisted addresses answer exception 02.
Prints "ready" once listening.
"""
import asyncio
import warnings
import json
import sys

from pymodbus.datastore import ModbusDeviceContext, ModbusServerContext, ModbusSparseDataBlock
from pymodbus.server import StartAsyncTcpServer


def block(values):
    # Keys are PDU addresses (pymodbus 3.16 no longer adds 1).
    return ModbusSparseDataBlock({int(a): int(v) for a, v in values.items()} or {65535: 0})


warnings.filterwarnings("ignore")


async def main():
    port, unit, spec = int(sys.argv[1]), int(sys.argv[2]), json.loads(sys.argv[3])
    device = ModbusDeviceContext(
        di=block(spec.get("discrete", {})),
        co=block(spec.get("coil", {})),
        hr=block(spec.get("holding", {})),
        ir=block(spec.get("input", {})),
    )
    context = ModbusServerContext(devices={unit: device}, single=False)
    server = StartAsyncTcpServer(context=context, address=("127.0.0.1", port))
    print("ready", flush=True)
    await server


asyncio.run(main())
