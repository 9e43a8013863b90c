#include "runtime/bench_shapes.h"

namespace duet {
namespace {

ModelConfig shape(Arch arch, int L, int D, int H, int Hkv, int F, int V, float theta, bool tied) {
  ModelConfig c;
  c.arch = arch;
  c.n_layers = L;
  c.dim = D;
  c.n_heads = H;
  c.n_kv_heads = Hkv;
  c.head_dim = D / H;
  c.ffn_dim = F;
  c.vocab_size = V;
  c.max_context = 8192;
  c.rope_theta = theta;
  c.tied_embeddings = tied;
  c.rms_eps = 1e-5f;
  return c;
}

std::vector<BenchShape> make_shapes() {
  std::vector<BenchShape> s;
  s.push_back({"llama2-7b", shape(Arch::Llama, 32, 4096, 32, 32, 11008, 32000, 1e4f, false), {"14:28", "4:28"}});
  ModelConfig l3 = shape(Arch::Llama, 32, 4096, 32, 8, 14336, 128256, 5e5f, false);
  l3.rope_freq_factors = llama3_rope_freq_factors(128, 5e5f, 8.0f, 1.0f, 4.0f, 8192);
  s.push_back({"llama3-8b", l3, {"14:28"}});
  ModelConfig qw = shape(Arch::Qwen2, 28, 3584, 28, 4, 18944, 152064, 1e6f, false);
  qw.qkv_bias = true;
  qw.rms_eps = 1e-6f;
  s.push_back({"qwen2.5-7b", qw, {"12:26"}});
  s.push_back({"smollm2-135m", shape(Arch::Llama, 30, 576, 9, 3, 1536, 49152, 1e5f, true), {"10:26", "2:28"}});
  s.push_back({"smollm2-1.7b", shape(Arch::Llama, 24, 2048, 32, 32, 8192, 49152, 1.3e5f, true), {"8:22"}});
  ModelConfig l32 = shape(Arch::Llama, 16, 2048, 32, 8, 8192, 128256, 5e5f, true);
  l32.rope_freq_factors = llama3_rope_freq_factors(64, 5e5f, 32.0f, 1.0f, 4.0f, 8192);
  s.push_back({"llama3.2-1b", l32, {"6:14"}});
  return s;
}

}  // namespace

const std::vector<BenchShape>& bench_shapes() {
  static const std::vector<BenchShape> shapes = make_shapes();
  return shapes;
}

std::string bench_shape_names() {
  std::string out;
  for (const BenchShape& s : bench_shapes()) out += (out.empty() ? "" : ", ") + s.name;
  return out;
}

Result<BenchShape> find_bench_shape(const std::string& name) {
  for (const BenchShape& s : bench_shapes()) {
    if (s.name == name) return s;
  }
  return make_error("unknown shape '", name, "'; expected one of: ", bench_shape_names());
}

}  // namespace duet
