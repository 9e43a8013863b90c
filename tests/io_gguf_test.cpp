// GGUF reader and writer: a writer -> reader round trip over every metadata kind
// and several tensor types, a hand-assembled v2 file with every value type, and
// one test per corrupt input expecting an error that names the file and problem.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "io/gguf.h"

namespace duet {
namespace {

std::string temp_path(const std::string& name) {
  return testing::TempDir() + "duet_gguf_" + std::to_string(::getpid()) + "_" + name;
}

// Little-endian byte assembler for hand-made (often invalid) GGUF files.
struct Bytes {
  std::vector<uint8_t> v;
  Bytes& u8(uint8_t x) { return raw(&x, 1); }
  Bytes& u16(uint16_t x) { return raw(&x, 2); }
  Bytes& u32(uint32_t x) { return raw(&x, 4); }
  Bytes& u64(uint64_t x) { return raw(&x, 8); }
  Bytes& f32(float x) { return raw(&x, 4); }
  Bytes& f64(double x) { return raw(&x, 8); }
  Bytes& str(const std::string& s) { return u64(s.size()).raw(s.data(), s.size()); }
  Bytes& raw(const void* p, size_t n) {
    v.insert(v.end(), static_cast<const uint8_t*>(p), static_cast<const uint8_t*>(p) + n);
    return *this;
  }
  Bytes& header(uint64_t n_tensors, uint64_t n_kv, uint32_t version = 3) {
    return raw("GGUF", 4).u32(version).u64(n_tensors).u64(n_kv);
  }
  // Tensor info with ne[] given in file order (ne[0] contiguous).
  Bytes& tensor(const std::string& name, const std::vector<uint64_t>& ne, uint32_t type,
                uint64_t offset) {
    str(name).u32(static_cast<uint32_t>(ne.size()));
    for (uint64_t d : ne) u64(d);
    return u32(type).u64(offset);
  }
  Bytes& pad(size_t alignment) {
    v.resize((v.size() + alignment - 1) / alignment * alignment, 0);
    return *this;
  }
};

constexpr uint32_t kTypeU8 = 0, kTypeI8 = 1, kTypeU16 = 2, kTypeI16 = 3, kTypeU32 = 4, kTypeI32 = 5,
                   kTypeF32 = 6, kTypeBool = 7, kTypeString = 8, kTypeArray = 9, kTypeU64 = 10,
                   kTypeI64 = 11, kTypeF64 = 12;

Result<GgufFile> parse(const Bytes& b) {
  return GgufFile::parse("bad.gguf", b.v.data(), b.v.size());
}

// The error is one line, names the file, and contains every fragment.
void expect_error(const Result<GgufFile>& r, std::initializer_list<const char*> fragments) {
  ASSERT_FALSE(r.ok()) << "expected an error containing '" << *fragments.begin() << "'";
  const std::string& m = r.message();
  EXPECT_EQ(m.rfind("bad.gguf: ", 0), 0u) << m;
  EXPECT_EQ(m.find('\n'), std::string::npos) << m;
  for (const char* f : fragments)
    EXPECT_NE(m.find(f), std::string::npos) << "'" << f << "' not in: " << m;
}

std::vector<uint8_t> iota_bytes(size_t n, uint8_t start) {
  std::vector<uint8_t> b(n);
  for (size_t i = 0; i < n; ++i) b[i] = static_cast<uint8_t>(start + i * 7);
  return b;
}

// ---- Round trips ----

TEST(Gguf, WriterReaderRoundTrip) {
  GgufWriter w;
  w.add_int("small", -7);
  w.add_int("large", int64_t{1} << 40);
  w.add_uint32("u32", 4000000000u);
  w.add_float("float", 1e-5f);
  w.add_bool("yes", true);
  w.add_bool("no", false);
  w.add_string("name", std::string("llama \xE2\x9C\x93 with\0nul", 18));
  w.add_string("empty", "");
  w.add_string_array("tokens", {"<s>", "", "\xC4\xA0the", "</s>"});
  w.add_float_array("scores", {0.0f, -1.5f, 3.25f, -INFINITY});
  w.add_int_array("types", {1, -2, INT32_MAX, INT32_MIN});
  w.add_int_array("no_ints", {});

  const std::vector<float> f32_values = {1, 2, 3, 4, 5, -6};
  w.add_tensor_f32("a.f32", {2, 3}, f32_values);
  const std::vector<uint8_t> f16 = iota_bytes(2 * 5, 1);    // [5] f16
  const std::vector<uint8_t> bf16 = iota_bytes(2 * 6, 2);   // [3, 1, 2] bf16
  const std::vector<uint8_t> q8 = iota_bytes(34 * 2, 3);    // [2, 32] q8_0
  const std::vector<uint8_t> q4k = iota_bytes(144 * 2, 4);  // [2, 256] q4_K
  const std::vector<uint8_t> q6k = iota_bytes(210, 5);      // [1, 1, 1, 256] q6_K
  w.add_tensor("b.f16", DType::F16, {5}, f16);
  w.add_tensor("c.bf16", DType::BF16, {3, 1, 2}, bf16);
  w.add_tensor("d.q8_0", DType::Q8_0, {2, 32}, q8);
  w.add_tensor("e.q4_k", DType::Q4_K, {2, 256}, q4k);
  w.add_tensor("f.q6_k", DType::Q6_K, {1, 1, 1, 256}, q6k);
  const std::string path = temp_path("roundtrip.gguf");
  ASSERT_TRUE(w.write(path).ok());

  Result<GgufFile> r = GgufFile::open(path);
  ASSERT_TRUE(r.ok()) << r.message();
  const GgufFile& g = *r;
  EXPECT_EQ(g.version(), 3u);
  EXPECT_EQ(g.alignment(), 32u);
  EXPECT_EQ(g.path(), path);
  EXPECT_EQ(g.metadata().size(), 12u);
  EXPECT_EQ(g.get_int("small"), -7);
  EXPECT_EQ(g.get_int("large"), int64_t{1} << 40);
  EXPECT_EQ(g.get_int("u32"), 4000000000);
  EXPECT_EQ(g.get_float("float"), static_cast<double>(1e-5f));
  EXPECT_EQ(g.get_float("small"), -7.0);  // get_float accepts ints
  EXPECT_EQ(g.get_bool("yes"), true);
  EXPECT_EQ(g.get_bool("no"), false);
  EXPECT_EQ(g.get_string("name"), std::string("llama \xE2\x9C\x93 with\0nul", 18));
  EXPECT_EQ(g.get_string("empty"), "");
  EXPECT_EQ(g.get_string_array("tokens"),
            (std::vector<std::string>{"<s>", "", "\xC4\xA0the", "</s>"}));
  EXPECT_EQ(g.get_float_array("scores"), (std::vector<float>{0.0f, -1.5f, 3.25f, -INFINITY}));
  EXPECT_EQ(g.get_int_array("types"), (std::vector<int64_t>{1, -2, INT32_MAX, INT32_MIN}));
  EXPECT_EQ(g.get_int_array("no_ints"), std::vector<int64_t>{});
  // Wrong kind or missing key: nullopt, not a conversion.
  EXPECT_EQ(g.get_int("name"), std::nullopt);
  EXPECT_EQ(g.get_string("small"), std::nullopt);
  EXPECT_EQ(g.get_bool("missing"), std::nullopt);
  EXPECT_EQ(g.get_string_array("scores"), std::nullopt);
  EXPECT_EQ(g.find("missing"), nullptr);

  struct Expected {
    const char* name;
    DType dtype;
    std::vector<int64_t> shape;
    std::vector<uint8_t> bytes;
  };
  std::vector<uint8_t> f32_bytes(24);
  std::memcpy(f32_bytes.data(), f32_values.data(), 24);
  const std::vector<Expected> expected = {
      {"a.f32", DType::F32, {2, 3}, f32_bytes}, {"b.f16", DType::F16, {5}, f16},
      {"c.bf16", DType::BF16, {3, 1, 2}, bf16}, {"d.q8_0", DType::Q8_0, {2, 32}, q8},
      {"e.q4_k", DType::Q4_K, {2, 256}, q4k},   {"f.q6_k", DType::Q6_K, {1, 1, 1, 256}, q6k}};
  ASSERT_EQ(g.tensors().size(), expected.size());
  for (size_t i = 0; i < expected.size(); ++i) {
    const TensorInfo& t = g.tensors()[i];
    SCOPED_TRACE(expected[i].name);
    EXPECT_EQ(t.name, expected[i].name);
    EXPECT_EQ(t.dtype, expected[i].dtype);
    EXPECT_EQ(t.shape, expected[i].shape);
    ASSERT_EQ(t.nbytes, expected[i].bytes.size());
    EXPECT_EQ(std::memcmp(t.data, expected[i].bytes.data(), t.nbytes), 0);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(t.data) % 32, 0u);  // mmap is page-aligned
    EXPECT_EQ(g.find_tensor(expected[i].name), &t);
  }
  EXPECT_EQ(g.find_tensor("missing"), nullptr);
  std::remove(path.c_str());
}

// A v2 file assembled by hand with every value type, a nested array and a
// non-default alignment: checks the reader against the format, not the writer.
TEST(Gguf, ReadsEveryValueTypeFromHandBuiltV2) {
  Bytes b;
  b.header(1, 15, 2);
  b.str("u8").u32(kTypeU8).u8(200);
  b.str("i8").u32(kTypeI8).u8(0x80);
  b.str("u16").u32(kTypeU16).u16(65535);
  b.str("i16").u32(kTypeI16).u16(0x8000);
  b.str("u32").u32(kTypeU32).u32(4294967295u);
  b.str("i32").u32(kTypeI32).u32(0xFFFFFFFF);
  b.str("u64").u32(kTypeU64).u64(uint64_t{INT64_MAX});
  b.str("i64").u32(kTypeI64).u64(uint64_t{1} << 63);
  b.str("f32").u32(kTypeF32).f32(0.1f);
  b.str("f64").u32(kTypeF64).f64(0.1);
  b.str("bool").u32(kTypeBool).u8(1);
  b.str("str").u32(kTypeString).str("hi");
  b.str("nested").u32(kTypeArray).u32(kTypeArray).u64(2);
  b.u32(kTypeU16).u64(2).u16(1).u16(2);
  b.u32(kTypeString).u64(1).str("x");
  b.str("empty").u32(kTypeArray).u32(kTypeF64).u64(0);
  b.str("general.alignment").u32(kTypeU32).u32(64);
  b.tensor("t", {4}, /*F32*/ 0, 0);
  b.pad(64);
  b.f32(1).f32(2).f32(3).f32(4);

  Result<GgufFile> r = parse(b);
  ASSERT_TRUE(r.ok()) << r.message();
  const GgufFile& g = *r;
  EXPECT_EQ(g.version(), 2u);
  EXPECT_EQ(g.alignment(), 64u);
  EXPECT_EQ(g.get_int("u8"), 200);
  EXPECT_EQ(g.get_int("i8"), -128);
  EXPECT_EQ(g.get_int("u16"), 65535);
  EXPECT_EQ(g.get_int("i16"), -32768);
  EXPECT_EQ(g.get_int("u32"), 4294967295);
  EXPECT_EQ(g.get_int("i32"), -1);
  EXPECT_EQ(g.get_int("u64"), INT64_MAX);
  EXPECT_EQ(g.get_int("i64"), INT64_MIN);
  EXPECT_EQ(g.get_float("f32"), static_cast<double>(0.1f));
  EXPECT_EQ(g.get_float("f64"), 0.1);
  EXPECT_EQ(g.get_bool("bool"), true);
  EXPECT_EQ(g.get_string("str"), "hi");
  const GgufValue* nested = g.find("nested");
  ASSERT_NE(nested, nullptr);
  ASSERT_EQ(nested->kind, GgufValue::Kind::Array);
  ASSERT_EQ(nested->array.size(), 2u);
  EXPECT_EQ(nested->array[0].array.size(), 2u);
  EXPECT_EQ(nested->array[0].array[1].i, 2);
  EXPECT_EQ(nested->array[1].array[0].s, "x");
  EXPECT_EQ(g.get_float_array("empty"), std::vector<float>{});
  ASSERT_EQ(g.tensors().size(), 1u);
  EXPECT_EQ(g.tensors()[0].data, b.v.data() + b.v.size() - 16);
  EXPECT_EQ(g.tensors()[0].nbytes, 16u);
}

// A file with only metadata need not have a data section or padding.
TEST(Gguf, MetadataOnlyFile) {
  Bytes b;
  b.header(0, 1).str("k").u32(kTypeU8).u8(1);
  ASSERT_TRUE(parse(b).ok()) << parse(b).message();
}

// Every strict prefix of a valid file is an error, never a crash or a pass.
TEST(Gguf, EveryTruncationIsAnError) {
  GgufWriter w;
  w.add_string("general.architecture", "llama");
  w.add_string_array("tokens", {"a", "bc"});
  w.add_float_array("scores", {1, 2});
  w.add_tensor_f32("w", {2, 2}, {1, 2, 3, 4});
  const std::string path = temp_path("trunc.gguf");
  ASSERT_TRUE(w.write(path).ok());
  std::ifstream in(path, std::ios::binary);
  const std::vector<uint8_t> full{std::istreambuf_iterator<char>(in),
                                  std::istreambuf_iterator<char>()};
  std::remove(path.c_str());
  ASSERT_TRUE(GgufFile::parse("full", full.data(), full.size()).ok());
  // The writer pads the last tensor to 32 bytes; prefixes that cut only padding are valid.
  const size_t data_end = full.size() - 32 + 16;
  for (size_t n = 0; n < data_end; ++n) {
    Result<GgufFile> r = GgufFile::parse("cut.gguf", full.data(), n);
    EXPECT_FALSE(r.ok()) << "prefix of " << n << " bytes parsed";
  }
}

// ---- Corrupt inputs ----

TEST(GgufCorrupt, MissingFile) {
  Result<GgufFile> r = GgufFile::open("/nonexistent/dir/model.gguf");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.message().find("/nonexistent/dir/model.gguf"), std::string::npos) << r.message();
  EXPECT_NE(r.message().find("No such file"), std::string::npos) << r.message();
}

TEST(GgufCorrupt, DirectoryInsteadOfFile) {
  Result<GgufFile> r = GgufFile::open(testing::TempDir());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.message().find("directory"), std::string::npos) << r.message();
}

TEST(GgufCorrupt, EmptyFile) {
  const std::string path = temp_path("empty.gguf");
  std::ofstream(path).close();
  Result<GgufFile> r = GgufFile::open(path);
  std::remove(path.c_str());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.message(), path + ": empty file (0 bytes), expected a GGUF header");
}

TEST(GgufCorrupt, BadMagic) {
  Bytes b;
  b.raw("GGML", 4).u32(3).u64(0).u64(0);
  expect_error(parse(b), {"not a GGUF file", "'GGML'", "expected 'GGUF'"});
}

TEST(GgufCorrupt, UnsupportedVersion) {
  Bytes v1, v4, big_endian;
  v1.header(0, 0, 1);
  v4.header(0, 0, 4);
  big_endian.header(0, 0, 0x03000000);
  expect_error(parse(v1), {"unsupported GGUF version 1", "expected 2 or 3"});
  expect_error(parse(v4), {"unsupported GGUF version 4"});
  expect_error(parse(big_endian), {"big-endian"});
}

TEST(GgufCorrupt, TruncatedHeader) {
  Bytes b;
  b.raw("GGUF", 4).u32(3).u8(1).u8(0);
  expect_error(parse(b),
               {"truncated file", "tensor count", "needs 8 bytes at offset 8", "ends at 10"});
}

TEST(GgufCorrupt, AbsurdKvCount) {
  Bytes b;
  b.header(0, uint64_t{1} << 60).str("k").u32(kTypeU8).u8(1);
  expect_error(parse(b), {"metadata count 1152921504606846976", "only 14 bytes follow"});
}

TEST(GgufCorrupt, AbsurdTensorCount) {
  Bytes b;
  b.header(~uint64_t{0}, 0).tensor("t", {1}, 0, 0);
  expect_error(parse(b), {"tensor count 18446744073709551615"});
}

TEST(GgufCorrupt, StringLengthPastEof) {
  Bytes b;
  b.header(0, 1).u64(1000000).raw("key bytes", 9);
  expect_error(parse(b), {"key of metadata key #0 has length 1000000", "only 9 bytes remain"});
  Bytes value;
  value.header(0, 1).str("general.name").u32(kTypeString).u64(uint64_t{1} << 62);
  expect_error(parse(value), {"key 'general.name'", "length 4611686018427387904"});
}

TEST(GgufCorrupt, AbsurdArrayLength) {
  Bytes b;
  b.header(0, 1)
      .str("tokenizer.ggml.scores")
      .u32(kTypeArray)
      .u32(kTypeF32)
      .u64(uint64_t{1} << 61)
      .f32(1);
  expect_error(parse(b), {"key 'tokenizer.ggml.scores'", "array length 2305843009213693952",
                          "at least 4 bytes per element"});
}

TEST(GgufCorrupt, ArraysNestedTooDeep) {
  Bytes b;
  b.header(0, 1).str("deep").u32(kTypeArray);
  for (int i = 0; i < 100; ++i) b.u32(kTypeArray).u64(1);
  b.u32(kTypeU8).u64(0);
  expect_error(parse(b), {"key 'deep'", "nested deeper than"});
}

TEST(GgufCorrupt, UnknownValueType) {
  Bytes b;
  b.header(0, 1).str("k").u32(13).u64(0);
  expect_error(parse(b), {"key 'k'", "value type 13", "not a GGUF value type"});
}

TEST(GgufCorrupt, BoolOutOfRange) {
  Bytes b;
  b.header(0, 1).str("flag").u32(kTypeBool).u8(7);
  expect_error(parse(b), {"key 'flag'", "bool value", "is 7, expected 0 or 1"});
}

TEST(GgufCorrupt, U64AboveInt64) {
  Bytes b;
  b.header(0, 1).str("n").u32(kTypeU64).u64(~uint64_t{0});
  expect_error(parse(b), {"key 'n'", "u64 value 18446744073709551615"});
}

TEST(GgufCorrupt, DuplicateKey) {
  Bytes b;
  b.header(0, 2).str("k").u32(kTypeU8).u8(1).str("k").u32(kTypeU8).u8(2);
  expect_error(parse(b), {"duplicate metadata key 'k'"});
}

// Names come from the file: control bytes are escaped so the message stays one line.
TEST(GgufCorrupt, NamesInMessagesAreEscaped) {
  Bytes b;
  b.header(0, 2).str("a\nb").u32(kTypeU8).u8(1).str("a\nb").u32(kTypeU8).u8(2);
  expect_error(parse(b), {"duplicate metadata key 'a\\x0Ab'"});
}

TEST(GgufCorrupt, BadAlignment) {
  for (uint32_t alignment : {0u, 48u}) {
    Bytes b;
    b.header(0, 1).str("general.alignment").u32(kTypeU32).u32(alignment);
    expect_error(parse(b), {"general.alignment must be a nonzero power of two",
                            std::to_string(alignment).c_str()});
  }
  Bytes s;
  s.header(0, 1).str("general.alignment").u32(kTypeString).str("32");
  expect_error(parse(s), {"general.alignment", "non-integer"});
}

TEST(GgufCorrupt, NDimsOutOfRange) {
  for (uint32_t n_dims : {0u, 5u}) {
    Bytes b;
    b.header(1, 0).str("blk.0.attn_q.weight").u32(n_dims);
    for (uint32_t i = 0; i < n_dims; ++i) b.u64(1);
    b.u32(0).u64(0).pad(32).f32(0);
    expect_error(parse(b), {"tensor 'blk.0.attn_q.weight'",
                            ("n_dims " + std::to_string(n_dims)).c_str(), "expected 1 to 4"});
  }
}

TEST(GgufCorrupt, ZeroDim) {
  Bytes b;
  b.header(1, 0).tensor("w", {4, 0}, 0, 0).pad(32);
  expect_error(parse(b), {"tensor 'w'", "ne[1] = 0"});
}

TEST(GgufCorrupt, DimAboveInt64) {
  Bytes b;
  b.header(1, 0).tensor("w", {~uint64_t{0}}, 0, 0).pad(32);
  expect_error(parse(b), {"tensor 'w'", "ne[0] = 18446744073709551615"});
}

TEST(GgufCorrupt, DimProductOverflows) {
  Bytes b;
  b.header(1, 0).tensor("w", {uint64_t{1} << 32, uint64_t{1} << 32}, 0, 0).pad(32);
  expect_error(parse(b), {"tensor 'w'", "element count overflows int64", "ne[1]"});
}

TEST(GgufCorrupt, ByteSizeOverflows) {
  // 2^62 f32 elements fit int64 but their 2^64 bytes do not fit uint64.
  Bytes b;
  b.header(1, 0).tensor("w", {uint64_t{1} << 31, uint64_t{1} << 31}, 0, 0).pad(32);
  expect_error(parse(b), {"tensor 'w'", "byte size overflows"});
}

// Found by fuzz/gguf_fuzz.cpp: 2^62 f32 elements in one row are 2^64 bytes,
// which once wrapped to a tiny byte count and passed the bounds check.
TEST(GgufCorrupt, RowByteSizeOverflows) {
  Bytes b;
  b.header(1, 0).tensor("w", {uint64_t{1} << 62}, 0, 0).pad(32).f32(0);
  expect_error(parse(b), {"tensor 'w'", "byte size overflows"});
}

TEST(GgufCorrupt, UnknownGgmlType) {
  Bytes b;
  b.header(1, 0).tensor("blk.3.ffn_down.weight", {256}, 13, 0).pad(32);
  expect_error(parse(b), {"tensor 'blk.3.ffn_down.weight'", "ggml type 13 (q5_K)", "cannot read"});
  Bytes far;
  far.header(1, 0).tensor("w", {256}, 4000, 0).pad(32);
  expect_error(parse(far), {"ggml type 4000 (unknown)"});
}

TEST(GgufCorrupt, RowNotWholeBlocks) {
  Bytes b;
  b.header(1, 0).tensor("w", {100, 2}, static_cast<uint32_t>(DType::Q4_K), 0).pad(32);
  expect_error(parse(b), {"tensor 'w'", "ne[0] = 100", "q4_k block size 256"});
}

TEST(GgufCorrupt, MisalignedOffset) {
  Bytes b;
  b.header(1, 0).tensor("w", {4}, 0, 8).pad(32);
  b.v.resize(b.v.size() + 64);
  expect_error(parse(b), {"tensor 'w'", "offset 8", "not a multiple of the alignment 32"});
}

TEST(GgufCorrupt, TensorDataPastEof) {
  Bytes b;
  b.header(2, 0).tensor("ok", {4}, 0, 0).tensor("blk.0.attn_q.weight", {16}, 0, 32).pad(32);
  const size_t data_start = b.v.size();
  b.v.resize(b.v.size() + 32 + 60);  // "blk.0.attn_q.weight" needs 64 bytes at 32
  const std::string expected =
      "tensor 'blk.0.attn_q.weight' data [offset 32, 64 bytes] (data section starts at byte " +
      std::to_string(data_start) + ") runs past the end of the file (" +
      std::to_string(b.v.size()) + " bytes)";
  expect_error(parse(b), {expected.c_str()});
  // An offset near 2^64 must not wrap around the bounds check.
  Bytes wrap;
  wrap.header(1, 0).tensor("w", {4}, 0, ~uint64_t{31}).pad(32).f32(0);
  expect_error(parse(wrap), {"tensor 'w' data", "runs past the end of the file"});
}

TEST(GgufCorrupt, DuplicateTensorName) {
  GgufWriter w;
  w.add_tensor_f32("w", {2}, {1, 2});
  w.add_tensor_f32("w", {2}, {3, 4});
  const std::string path = temp_path("dup_tensor.gguf");
  ASSERT_TRUE(w.write(path).ok());
  Result<GgufFile> r = GgufFile::open(path);
  std::remove(path.c_str());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.message().find(path + ": duplicate tensor name 'w'"), std::string::npos)
      << r.message();
}

}  // namespace
}  // namespace duet
