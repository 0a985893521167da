#!/usr/bin/env python3
"""An independent Sparkplug B encoder and decoder for the gateway's tests.

Independent of the gateway's Rust schema (gateway/sparkplug/src/payload.rs):
the Payload message is described here again, from the Sparkplug B
specification, as a protobuf descriptor built at run time with Google's own
`protobuf` package (descriptor_pb2), so no protoc and no generated code. If
either side got a field number or a type wrong, the gateway tests fail.

    encode DIR   stdin: a JSON list of {"file": name, "payload": {...}};
                 each payload is written, encoded, to DIR/name. A payload is
                 {"timestamp", "seq", "metrics": [{"name", "alias", "datatype",
                 "value", "timestamp", "is_historical", "is_null"}]}, the
                 datatype by its specification name ("Double", "Boolean", ...).
    decode       stdin: one payload as hex (mosquitto_sub -F %x); prints it
                 as JSON, with each metric's datatype named.
"""

import json
import os
import sys

from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory

F = descriptor_pb2.FieldDescriptorProto

# The specification's data types, by number.
DATATYPES = [
    "Unknown", "Int8", "Int16", "Int32", "Int64", "UInt8", "UInt16", "UInt32", "UInt64",
    "Float", "Double", "Boolean", "String", "DateTime", "Text", "UUID", "DataSet", "Bytes",
    "File", "Template", "PropertySet", "PropertySetList", "Int8Array", "Int16Array",
    "Int32Array", "Int64Array", "UInt8Array", "UInt16Array", "UInt32Array", "UInt64Array",
    "FloatArray", "DoubleArray", "BooleanArray", "StringArray", "DateTimeArray",
]


def field(msg, name, number, ftype, label=F.LABEL_OPTIONAL, type_name=None, oneof=None):
    f = msg.field.add()
    f.name, f.number, f.type, f.label = name, number, ftype, label
    if type_name:
        f.type_name = type_name
    if oneof is not None:
        f.oneof_index = oneof
    return f


def schema():
    """The Sparkplug B Payload (proto2), the parts the tests use and their neighbours."""
    fd = descriptor_pb2.FileDescriptorProto(name="sparkplug_b_test.proto", package="spb", syntax="proto2")
    payload = fd.message_type.add(name="Payload")
    field(payload, "timestamp", 1, F.TYPE_UINT64)
    field(payload, "metrics", 2, F.TYPE_MESSAGE, F.LABEL_REPEATED, ".spb.Payload.Metric")
    field(payload, "seq", 3, F.TYPE_UINT64)
    field(payload, "uuid", 4, F.TYPE_STRING)
    field(payload, "body", 5, F.TYPE_BYTES)

    ps = payload.nested_type.add(name="PropertySet")
    field(ps, "keys", 1, F.TYPE_STRING, F.LABEL_REPEATED)
    field(ps, "values", 2, F.TYPE_MESSAGE, F.LABEL_REPEATED, ".spb.Payload.PropertyValue")
    pv = payload.nested_type.add(name="PropertyValue")
    field(pv, "type", 1, F.TYPE_UINT32)
    field(pv, "is_null", 2, F.TYPE_BOOL)
    pv.oneof_decl.add(name="value")
    for name, n, t in [("int_value", 3, F.TYPE_UINT32), ("long_value", 4, F.TYPE_UINT64),
                       ("float_value", 5, F.TYPE_FLOAT), ("double_value", 6, F.TYPE_DOUBLE),
                       ("boolean_value", 7, F.TYPE_BOOL), ("string_value", 8, F.TYPE_STRING)]:
        field(pv, name, n, t, oneof=0)

    metric = payload.nested_type.add(name="Metric")
    field(metric, "name", 1, F.TYPE_STRING)
    field(metric, "alias", 2, F.TYPE_UINT64)
    field(metric, "timestamp", 3, F.TYPE_UINT64)
    field(metric, "datatype", 4, F.TYPE_UINT32)
    field(metric, "is_historical", 5, F.TYPE_BOOL)
    field(metric, "is_transient", 6, F.TYPE_BOOL)
    field(metric, "is_null", 7, F.TYPE_BOOL)
    field(metric, "properties", 9, F.TYPE_MESSAGE, type_name=".spb.Payload.PropertySet")
    metric.oneof_decl.add(name="value")
    for name, n, t in [("int_value", 10, F.TYPE_UINT32), ("long_value", 11, F.TYPE_UINT64),
                       ("float_value", 12, F.TYPE_FLOAT), ("double_value", 13, F.TYPE_DOUBLE),
                       ("boolean_value", 14, F.TYPE_BOOL), ("string_value", 15, F.TYPE_STRING),
                       ("bytes_value", 16, F.TYPE_BYTES)]:
        field(metric, name, n, t, oneof=0)

    pool = descriptor_pool.DescriptorPool()
    pool.Add(fd)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("spb.Payload"))


Payload = schema()


def encode(spec):
    p = Payload()
    if "timestamp" in spec:
        p.timestamp = spec["timestamp"]
    if "seq" in spec:
        p.seq = spec["seq"]
    for m in spec.get("metrics", []):
        out = p.metrics.add()
        for key in ("name", "alias", "timestamp", "is_historical", "is_null"):
            if key in m:
                setattr(out, key, m[key])
        dt = m.get("datatype", "Double")
        out.datatype = DATATYPES.index(dt)
        if "value" not in m:
            continue
        v = m["value"]
        if dt in ("Int8", "Int16", "Int32", "UInt8", "UInt16", "UInt32"):
            out.int_value = v & 0xFFFFFFFF  # two's complement, as the specification says
        elif dt in ("Int64", "UInt64", "DateTime"):
            out.long_value = v & 0xFFFFFFFFFFFFFFFF
        elif dt == "Float":
            out.float_value = v
        elif dt == "Double":
            out.double_value = v
        elif dt == "Boolean":
            out.boolean_value = v
        elif dt in ("String", "Text", "UUID"):
            out.string_value = v
        else:
            raise SystemExit(f"the test encoder has no value for {dt}")
    return p.SerializeToString()


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "encode":
        for item in json.load(sys.stdin):
            with open(os.path.join(sys.argv[2], item["file"]), "wb") as f:
                f.write(encode(item["payload"]))
        print("encoded")
    elif len(sys.argv) == 2 and sys.argv[1] == "decode":
        p = Payload()
        p.ParseFromString(bytes.fromhex(sys.stdin.read().strip()))
        d = json_format.MessageToDict(p, preserving_proto_field_name=True)
        for m in d.get("metrics", []):
            if "datatype" in m:
                m["datatype"] = DATATYPES[m["datatype"]]
        print(json.dumps(d))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
