#!/usr/bin/env python3
"""Copy a GGUF file with every tensor dequantized to F32 (metadata unchanged).

llama.cpp multiplies quantized weights by activations it quantizes to 8 bits,
which moves logits by up to ~1; on an F32 copy it computes in float32, so it
becomes a tight reference for duet's float32 path (same dequantized weights).
Dequantization is the `gguf` package's own (a port of ggml's reference code).

Usage: python3 tools/ref/gguf_to_f32.py IN.gguf OUT.gguf
"""
import sys

import gguf
import numpy as np
from gguf import GGUFReader, GGUFWriter, GGUFValueType


def field_value(field):
    kind = field.types[0]
    if kind == GGUFValueType.STRING:
        return bytes(field.parts[field.data[0]]).decode("utf-8")
    if kind == GGUFValueType.ARRAY:
        if field.types[1] == GGUFValueType.STRING:
            return [bytes(field.parts[i]).decode("utf-8", errors="surrogateescape") for i in field.data]
        return [field.parts[i].tolist()[0] for i in field.data]
    return field.parts[field.data[0]].tolist()[0]


def main(src, dst):
    reader = GGUFReader(src)
    arch = field_value(reader.fields["general.architecture"])
    writer = GGUFWriter(dst, arch=arch)
    for name, field in reader.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue
        sub_type = field.types[1] if field.types[0] == GGUFValueType.ARRAY else None
        writer.add_key_value(name, field_value(field), field.types[0], sub_type=sub_type)
    for tensor in reader.tensors:
        data = gguf.quants.dequantize(tensor.data, tensor.tensor_type).astype(np.float32)
        writer.add_tensor(tensor.name, data, raw_dtype=gguf.GGMLQuantizationType.F32)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
