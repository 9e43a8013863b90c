// Dequantization: hand-built blocks whose expected values follow from the block
// layout alone (packed here from the ggml definition, not with duet's decoder),
// then fixtures produced by gguf-py (tools/ref/make_dequant_fixture.py).
//
// Hand-built values are chosen so every product is exact in float32, making the
// expected values independent of evaluation order. The fixtures are compared
// bit for bit: every product in these formats is exact in float32 (see
// dequant.cpp), so duet and numpy agree exactly and no tolerance is needed.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "io/dequant.h"

namespace duet {
namespace {

constexpr uint16_t kHalfOne = 0x3C00, kHalfHalf = 0x3800, kHalfQuarter = 0x3400,
                   kHalfMinusOne = 0xBC00;

void put16(std::vector<uint8_t>& b, uint16_t v) {
  b.push_back(v & 0xFF);
  b.push_back(v >> 8);
}

std::vector<float> decode(DType type, const std::vector<uint8_t>& bytes, int64_t n) {
  std::vector<float> out(n);
  dequantize_row(type, bytes.data(), out.data(), n);
  return out;
}

TEST(Dequant, F32CopiesBits) {
  const std::vector<float> values = {1.5f, -0.0f, 3e38f, 1e-45f, -7.25f};
  std::vector<uint8_t> bytes(values.size() * 4);
  std::memcpy(bytes.data(), values.data(), bytes.size());
  const std::vector<float> out = decode(DType::F32, bytes, 5);
  EXPECT_EQ(std::memcmp(out.data(), values.data(), bytes.size()), 0);
}

// 19 elements: two 8-wide vector steps plus a 3-element scalar tail.
TEST(Dequant, F16KnownBitPatterns) {
  const std::vector<std::pair<uint16_t, float>> cases = {
      {0x3C00, 1.0f},     {0xC000, -2.0f},    {0x3555, 0.333251953125f}, {0x7BFF, 65504.0f},
      {0x0001, 0x1p-24f}, {0x8000, -0.0f},    {0x7C00, INFINITY},        {0x3800, 0.5f},
      {0x0400, 0x1p-14f}, {0x4248, 3.140625f}};
  std::vector<uint8_t> bytes;
  std::vector<float> expected;
  for (int i = 0; i < 19; ++i) {
    put16(bytes, cases[i % cases.size()].first);
    expected.push_back(cases[i % cases.size()].second);
  }
  const std::vector<float> out = decode(DType::F16, bytes, 19);
  for (int i = 0; i < 19; ++i) EXPECT_EQ(out[i], expected[i]) << "element " << i;
  EXPECT_TRUE(std::signbit(out[5]));
}

TEST(Dequant, Bf16IsTopHalfOfF32) {
  std::vector<uint8_t> bytes;
  for (uint16_t h : {0x3F80, 0xC040, 0x4049, 0x0000, 0xFF80}) put16(bytes, h);
  const std::vector<float> out = decode(DType::BF16, bytes, 5);
  EXPECT_EQ(out[0], 1.0f);
  EXPECT_EQ(out[1], -3.0f);
  EXPECT_EQ(out[2], 3.140625f);
  EXPECT_EQ(out[3], 0.0f);
  EXPECT_EQ(out[4], -INFINITY);
}

// Q8_0 { f16 d; int8 qs[32] }: y[j] = qs[j] * d. Two blocks, d = 0.5 and 0.25.
TEST(Dequant, Q8_0) {
  std::vector<uint8_t> bytes;
  std::vector<float> expected;
  for (uint16_t d_bits : {kHalfHalf, kHalfQuarter}) {
    const float d = d_bits == kHalfHalf ? 0.5f : 0.25f;
    put16(bytes, d_bits);
    for (int j = 0; j < 32; ++j) {
      const int8_t q = static_cast<int8_t>(j * 9 - 128);  // wraps: both signs, -128 included
      bytes.push_back(static_cast<uint8_t>(q));
      expected.push_back(q * d);
    }
  }
  EXPECT_EQ(decode(DType::Q8_0, bytes, 64), expected);
}

// Q4_0 { f16 d; u8 qs[16] }: element j is the low nibble of qs[j], element j+16
// the high nibble; y = (nibble - 8) * d.
TEST(Dequant, Q4_0) {
  std::vector<uint8_t> bytes;
  put16(bytes, kHalfQuarter);
  std::vector<float> expected(32);
  for (int j = 0; j < 16; ++j) {
    const int lo = j, hi = 15 - (j * 3) % 16;
    bytes.push_back(static_cast<uint8_t>(lo | (hi << 4)));
    expected[j] = (lo - 8) * 0.25f;
    expected[j + 16] = (hi - 8) * 0.25f;
  }
  EXPECT_EQ(decode(DType::Q4_0, bytes, 32), expected);
}

// Q4_1 { f16 d; f16 m; u8 qs[16] }: y = nibble * d + m.
TEST(Dequant, Q4_1) {
  std::vector<uint8_t> bytes;
  put16(bytes, kHalfHalf);
  put16(bytes, kHalfMinusOne);
  std::vector<float> expected(32);
  for (int j = 0; j < 16; ++j) {
    const int lo = (j * 5) % 16, hi = j;
    bytes.push_back(static_cast<uint8_t>(lo | (hi << 4)));
    expected[j] = lo * 0.5f - 1.0f;
    expected[j + 16] = hi * 0.5f - 1.0f;
  }
  EXPECT_EQ(decode(DType::Q4_1, bytes, 32), expected);
}

// Q4_K { f16 d; f16 dmin; u8 scales[12]; u8 qs[128] }: 8 sub-blocks of 32 with
// 6-bit scale sc[s] and min m[s]; y = d * sc[s] * nibble - dmin * m[s]. Sub-block
// 2c is the low nibbles of qs[32c .. 32c+32), sub-block 2c+1 their high nibbles.
// Scales use all 6 bits so the packing of the top 2 bits is exercised.
TEST(Dequant, Q4_K) {
  const int sc[8] = {1, 2, 3, 4, 33, 47, 60, 63};
  const int m[8] = {0, 5, 10, 63, 17, 32, 48, 1};
  std::vector<uint8_t> bytes;
  put16(bytes, kHalfOne);   // d = 1
  put16(bytes, kHalfHalf);  // dmin = 0.5
  // Packing (ggml get_scale_min_k4, inverted): bytes 0-3 / 4-7 hold the low 6 bits
  // of sc[0..3] / m[0..3], with the top 2 bits of sc[4..7] / m[4..7] above them;
  // bytes 8-11 hold sc[4..7] low 4 bits | m[4..7] low 4 bits << 4.
  for (int j = 0; j < 4; ++j)
    bytes.push_back(static_cast<uint8_t>(sc[j] | ((sc[j + 4] >> 4) << 6)));
  for (int j = 0; j < 4; ++j) bytes.push_back(static_cast<uint8_t>(m[j] | ((m[j + 4] >> 4) << 6)));
  for (int j = 0; j < 4; ++j)
    bytes.push_back(static_cast<uint8_t>((sc[j + 4] & 15) | ((m[j + 4] & 15) << 4)));
  std::vector<uint8_t> qs(128);
  for (int i = 0; i < 128; ++i)
    qs[i] = static_cast<uint8_t>(((i * 7) & 15) | (((i * 3 + 1) & 15) << 4));
  bytes.insert(bytes.end(), qs.begin(), qs.end());
  ASSERT_EQ(bytes.size(), 144u);

  std::vector<float> expected(256);
  for (int e = 0; e < 256; ++e) {
    const int chunk = e / 64, within = e % 64, l = within % 32;
    const int s = 2 * chunk + (within >= 32);
    const int nibble = within < 32 ? qs[32 * chunk + l] & 15 : qs[32 * chunk + l] >> 4;
    expected[e] = 1.0f * sc[s] * nibble - 0.5f * m[s];
  }
  EXPECT_EQ(decode(DType::Q4_K, bytes, 256), expected);
}

// Q6_K { u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d }: q = 6-bit value - 32 and
// y = d * scale * q. Element e: half h = e/128, r = e%128, quarter g = r/32,
// l = r%32. Low 4 bits: ql[64h + l + 32*(g%2)], low nibble for g < 2, high for
// g >= 2; high 2 bits: qh[32h + l] >> 2g; scale: scales[8h + l/16 + 2g].
TEST(Dequant, Q6_K) {
  const int8_t scales[16] = {1, -2, 3, -4, 5, -6, 7, -8, 9, -10, 11, -12, 13, -14, 15, -127};
  std::vector<uint8_t> ql(128, 0), qh(64, 0);
  std::vector<float> expected(256);
  for (int e = 0; e < 256; ++e) {
    const int q6 = (e * 37 + 5) % 64;
    const int h = e / 128, r = e % 128, g = r / 32, l = r % 32;
    const int ql_index = 64 * h + l + 32 * (g % 2);
    ql[ql_index] |= static_cast<uint8_t>((q6 & 15) << (g < 2 ? 0 : 4));
    qh[32 * h + l] |= static_cast<uint8_t>((q6 >> 4) << (2 * g));
    expected[e] = 0.25f * scales[8 * h + l / 16 + 2 * g] * (q6 - 32);
  }
  std::vector<uint8_t> bytes = ql;
  bytes.insert(bytes.end(), qh.begin(), qh.end());
  for (int8_t s : scales) bytes.push_back(static_cast<uint8_t>(s));
  put16(bytes, kHalfQuarter);
  ASSERT_EQ(bytes.size(), 210u);
  EXPECT_EQ(decode(DType::Q6_K, bytes, 256), expected);
}

TEST(Dequant, TensorToF32DecodesEveryRow) {
  std::vector<uint8_t> bytes;
  for (int block = 0; block < 3; ++block) {  // shape [3, 32]: three Q8_0 rows
    put16(bytes, kHalfOne);
    for (int j = 0; j < 32; ++j) bytes.push_back(static_cast<uint8_t>(block * 32 + j));
  }
  TensorInfo t{"w", DType::Q8_0, {3, 32}, bytes.data(), bytes.size()};
  Result<std::vector<float>> out = tensor_to_f32(t);
  ASSERT_TRUE(out.ok()) << out.message();
  ASSERT_EQ(out->size(), 96u);
  for (int i = 0; i < 96; ++i) EXPECT_EQ((*out)[i], static_cast<float>(static_cast<int8_t>(i)));
}

TEST(Dequant, TensorToF32RejectsByteCountMismatch) {
  std::vector<uint8_t> bytes(34 * 2);
  TensorInfo t{"blk.0.ffn_up.weight", DType::Q8_0, {3, 32}, bytes.data(), bytes.size()};
  Result<std::vector<float>> out = tensor_to_f32(t);
  ASSERT_FALSE(out.ok());
  EXPECT_NE(out.message().find("blk.0.ffn_up.weight"), std::string::npos) << out.message();
  EXPECT_NE(out.message().find("expected 102 bytes"), std::string::npos) << out.message();
  EXPECT_NE(out.message().find("got 68"), std::string::npos) << out.message();
}

TEST(Dequant, TensorToF32RejectsOverflowingSizes) {
  TensorInfo row{"w", DType::F32, {int64_t{1} << 62}, nullptr, 0};
  Result<std::vector<float>> out = tensor_to_f32(row);
  ASSERT_FALSE(out.ok());
  EXPECT_NE(out.message().find("overflows uint64"), std::string::npos) << out.message();
  TensorInfo dims{"w", DType::F32, {int64_t{1} << 32, int64_t{1} << 32}, nullptr, 0};
  out = tensor_to_f32(dims);
  ASSERT_FALSE(out.ok());
  EXPECT_NE(out.message().find("overflows the element count"), std::string::npos) << out.message();
}

TEST(Dequant, TensorToF32RejectsPartialBlock) {
  std::vector<uint8_t> bytes(144);
  TensorInfo t{"w", DType::Q4_K, {2, 128}, bytes.data(), bytes.size()};
  Result<std::vector<float>> out = tensor_to_f32(t);
  ASSERT_FALSE(out.ok());
  EXPECT_NE(out.message().find("not a multiple of the q4_k block size 256"), std::string::npos)
      << out.message();
}

// ---- Fixtures from gguf-py (independent reference) ----

std::string source_dir() {
  if (const char* env = std::getenv("DUET_SOURCE_DIR")) return env;
#ifdef DUET_SOURCE_DIR
  return DUET_SOURCE_DIR;
#else
  return ".";
#endif
}

std::vector<uint8_t> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

struct FixtureCase {
  const char* name;
  DType type;
};

class DequantFixture : public testing::TestWithParam<FixtureCase> {};

TEST_P(DequantFixture, MatchesGgufPyBitForBit) {
  const std::string base = source_dir() + "/tests/fixtures/dequant/" + GetParam().name;
  const std::vector<uint8_t> raw = read_file(base + ".bin");
  const std::vector<uint8_t> expected_bytes = read_file(base + ".f32");
  ASSERT_FALSE(raw.empty()) << "missing " << base << ".bin (run tools/ref/make_dequant_fixture.py)";
  ASSERT_EQ(expected_bytes.size() % 4, 0u);
  const int64_t n = static_cast<int64_t>(expected_bytes.size() / 4);
  ASSERT_EQ(static_cast<uint64_t>(*dtype_row_bytes(GetParam().type, n)), raw.size());
  std::vector<float> expected(n);
  std::memcpy(expected.data(), expected_bytes.data(), expected_bytes.size());

  const std::vector<float> got = decode(GetParam().type, raw, n);
  int mismatches = 0;
  float max_abs_diff = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (got[i] == expected[i]) continue;  // == so that inf matches inf
    max_abs_diff = std::max(max_abs_diff, std::fabs(got[i] - expected[i]));
    if (++mismatches <= 5)
      ADD_FAILURE() << "element " << i << ": got " << got[i] << ", expected " << expected[i];
  }
  EXPECT_EQ(mismatches, 0) << "max abs diff " << max_abs_diff;
}

INSTANTIATE_TEST_SUITE_P(
    GgufPy, DequantFixture,
    testing::Values(FixtureCase{"f16", DType::F16}, FixtureCase{"bf16", DType::BF16},
                    FixtureCase{"q8_0", DType::Q8_0}, FixtureCase{"q4_0", DType::Q4_0},
                    FixtureCase{"q4_1", DType::Q4_1}, FixtureCase{"q4_k", DType::Q4_K},
                    FixtureCase{"q6_k", DType::Q6_K}),
    [](const testing::TestParamInfo<FixtureCase>& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace duet
