// Writes the GGUF fuzzer's seed corpus: small valid files that reach every
// metadata value kind the writer emits and every tensor type duet reads.
// Usage: make_gguf_seed OUT_DIR
#include <cstdio>
#include <string>
#include <vector>

#include "io/gguf.h"

int main(int argc, char** argv) {
  using namespace duet;
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUT_DIR\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];

  GgufWriter full;
  full.add_string("general.architecture", "llama");
  full.add_uint32("llama.context_length", 2048);
  full.add_int("llama.big", int64_t{1} << 40);
  full.add_float("llama.rope.freq_base", 10000.0f);
  full.add_bool("tokenizer.ggml.add_bos_token", true);
  full.add_string_array("tokenizer.ggml.tokens", {"<s>", "</s>", "a"});
  full.add_float_array("tokenizer.ggml.scores", {0.0f, -1.0f, -2.5f});
  full.add_int_array("tokenizer.ggml.token_type", {3, 3, 1});
  // One tensor of each type, one block each (byte patterns are arbitrary but valid).
  const DType types[] = {DType::F32,  DType::F16,  DType::BF16, DType::Q8_0,
                         DType::Q4_0, DType::Q4_1, DType::Q4_K, DType::Q6_K};
  for (DType type : types) {
    const int64_t n = dtype_block_elems(type) == 1 ? 4 : dtype_block_elems(type);
    std::vector<uint8_t> bytes(*dtype_row_bytes(type, n), 0x3C);
    full.add_tensor(std::string("t.") + dtype_name(type), type, {1, n}, bytes);
  }

  GgufWriter tiny;
  tiny.add_int("k", 1);
  tiny.add_tensor_f32("w", {2, 2}, {1, 2, 3, 4});

  for (const auto& [name, writer] :
       {std::pair{"full.gguf", &full}, std::pair{"tiny.gguf", &tiny}}) {
    const Status status = writer->write(dir + "/" + name);
    if (!status.ok()) {
      std::fprintf(stderr, "%s\n", status.message().c_str());
      return 1;
    }
  }
  return 0;
}
