// GGUF export: writes a model (after its LP plan, possibly healed) as a GGUF file
// with `general.architecture = deci`, the llama.cpp architecture whose layers
// may each have their own head counts and FFN width (per-layer arrays
// `deci.attention.head_count`, `deci.attention.head_count_kv`,
// `deci.feed_forward_length`). duet and stock llama.cpp both load the result.
#pragma once

#include <string>

#include "core/result.h"
#include "runtime/loaded_model.h"

namespace duet {

// Encoding of the 2-D weight matrices; 1-D tensors (norm gains, rope factors) stay F32.
enum class ExportType { F32, F16, BF16, Q8_0 };

// "f32", "f16", "bf16", "q8_0" (case-insensitive).
Result<ExportType> parse_export_type(const std::string& name);

// Writes `model` (weights after the LP plan, norm gains folded, possibly modified
// by training) with the tokenizer metadata of its source as a GGUF file that duet
// and stock llama.cpp load. Reads only the float32 `data` of each matrix (packed
// rows and packed gains may be stale after training).
Status export_gguf(const LoadedModel& model, ExportType type, const std::string& path);

// Every refusal of export_gguf that does not depend on the output path (qwen3's
// q/k norms, a source without GGUF tokenizer metadata, shapes that disagree
// with their layer), without writing anything: duet heal checks it before training.
Status check_exportable(const LoadedModel& model);

}  // namespace duet
