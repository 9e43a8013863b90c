// Safetensors reader and writer: single-file and sharded round trips, and one
// test per corrupt input expecting an error that names the file and problem.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "core/half.h"
#include "io/dequant.h"
#include "io/safetensors.h"

namespace duet {
namespace {

namespace fs = std::filesystem;

// A fresh directory per test, removed afterwards.
class SafetensorsTest : public testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(testing::TempDir()) /
           ("duet_st_" + std::to_string(::getpid()) + "_" +
            testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  void write_text(const std::string& name, const std::string& text) const {
    std::ofstream(path(name), std::ios::binary) << text;
  }

  // A raw safetensors file: u64 header_len | header | data, header_len given explicitly.
  void write_raw(const std::string& name, uint64_t header_len, const std::string& header,
                 size_t data_bytes) const {
    std::ofstream out(path(name), std::ios::binary);
    out.write(reinterpret_cast<const char*>(&header_len), 8);
    out << header << std::string(data_bytes, '\0');
  }
  void write_raw(const std::string& name, const std::string& header, size_t data_bytes) const {
    write_raw(name, header.size(), header, data_bytes);
  }

  // Opens `name` and expects an error containing every fragment, on one line.
  void expect_error(const std::string& name, std::initializer_list<std::string> fragments) const {
    Result<SafetensorsModel> r = SafetensorsModel::open(path(name));
    ASSERT_FALSE(r.ok()) << "expected an error containing '" << *fragments.begin() << "'";
    EXPECT_EQ(r.message().find('\n'), std::string::npos) << r.message();
    for (const std::string& f : fragments) {
      EXPECT_NE(r.message().find(f), std::string::npos) << "'" << f << "' not in: " << r.message();
    }
  }

  fs::path dir_;
};

std::vector<uint8_t> halves(const std::vector<float>& values, bool bf16) {
  std::vector<uint8_t> out;
  for (float v : values) {
    const uint16_t h = bf16 ? f32_to_bf16(v) : f32_to_fp16(v);
    out.push_back(h & 0xFF);
    out.push_back(h >> 8);
  }
  return out;
}

TEST_F(SafetensorsTest, SingleFileRoundTrip) {
  SafetensorsWriter w;
  w.add_tensor_f32("model.embed_tokens.weight", {2, 3}, {1, 2, 3, 4, 5, 6});
  w.add_tensor("model.norm.weight", DType::F16, {3}, halves({0.5f, -1.0f, 2.0f}, false));
  w.add_tensor("lm_head.weight", DType::BF16, {1, 1, 2}, halves({3.0f, -0.25f}, true));
  w.add_tensor_f32("scalar", {}, {7});
  w.add_tensor_f32("empty", {0, 4}, {});
  ASSERT_TRUE(w.write(path("model.safetensors")).ok());

  // The file and its directory open the same checkpoint.
  for (const std::string& target : {path("model.safetensors"), dir_.string()}) {
    Result<SafetensorsModel> r = SafetensorsModel::open(target);
    ASSERT_TRUE(r.ok()) << r.message();
    const SafetensorsModel& m = *r;
    EXPECT_EQ(fs::path(m.directory()), dir_);
    ASSERT_EQ(m.tensors().size(), 5u);

    const TensorInfo* embed = m.find_tensor("model.embed_tokens.weight");
    ASSERT_NE(embed, nullptr);
    EXPECT_EQ(embed->dtype, DType::F32);
    EXPECT_EQ(embed->shape, (std::vector<int64_t>{2, 3}));
    EXPECT_EQ(*tensor_to_f32(*embed), (std::vector<float>{1, 2, 3, 4, 5, 6}));

    const TensorInfo* norm = m.find_tensor("model.norm.weight");
    ASSERT_NE(norm, nullptr);
    EXPECT_EQ(norm->dtype, DType::F16);
    EXPECT_EQ(*tensor_to_f32(*norm), (std::vector<float>{0.5f, -1.0f, 2.0f}));

    const TensorInfo* head = m.find_tensor("lm_head.weight");
    ASSERT_NE(head, nullptr);
    EXPECT_EQ(head->dtype, DType::BF16);
    EXPECT_EQ(head->shape, (std::vector<int64_t>{1, 1, 2}));
    EXPECT_EQ(*tensor_to_f32(*head), (std::vector<float>{3.0f, -0.25f}));

    const TensorInfo* scalar = m.find_tensor("scalar");
    ASSERT_NE(scalar, nullptr);
    EXPECT_TRUE(scalar->shape.empty());
    EXPECT_EQ(*tensor_to_f32(*scalar), std::vector<float>{7});

    const TensorInfo* empty = m.find_tensor("empty");
    ASSERT_NE(empty, nullptr);
    EXPECT_EQ(empty->nbytes, 0u);
    EXPECT_TRUE(tensor_to_f32(*empty)->empty());
    EXPECT_EQ(m.find_tensor("missing"), nullptr);
  }
}

TEST_F(SafetensorsTest, ShardedThroughIndex) {
  SafetensorsWriter a, b;
  a.add_tensor_f32("x", {2}, {1, 2});
  a.add_tensor_f32("y", {1}, {3});
  b.add_tensor_f32("z", {3}, {4, 5, 6});
  ASSERT_TRUE(a.write(path("model-00001-of-00002.safetensors")).ok());
  ASSERT_TRUE(b.write(path("model-00002-of-00002.safetensors")).ok());
  write_text("model.safetensors.index.json", R"({"metadata": {"total_size": 24}, "weight_map": {
      "x": "model-00001-of-00002.safetensors", "z": "model-00002-of-00002.safetensors",
      "y": "model-00001-of-00002.safetensors"}})");

  for (const std::string& target : {path("model.safetensors.index.json"), dir_.string()}) {
    Result<SafetensorsModel> r = SafetensorsModel::open(target);
    ASSERT_TRUE(r.ok()) << r.message();
    EXPECT_EQ(fs::path(r->directory()), dir_);
    ASSERT_EQ(r->tensors().size(), 3u);
    EXPECT_EQ(*tensor_to_f32(*r->find_tensor("x")), (std::vector<float>{1, 2}));
    EXPECT_EQ(*tensor_to_f32(*r->find_tensor("y")), (std::vector<float>{3}));
    EXPECT_EQ(*tensor_to_f32(*r->find_tensor("z")), (std::vector<float>{4, 5, 6}));
  }
}

// ---- Corrupt inputs ----

TEST_F(SafetensorsTest, MissingFile) {
  expect_error("nope.safetensors", {"nope.safetensors", "cannot open", "No such file"});
}

TEST_F(SafetensorsTest, DirectoryWithoutWeights) {
  Result<SafetensorsModel> r = SafetensorsModel::open(dir_.string());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.message().find("neither model.safetensors.index.json nor model.safetensors"),
            std::string::npos)
      << r.message();
}

TEST_F(SafetensorsTest, ShorterThanHeaderLength) {
  write_text("short.safetensors", "abc");
  expect_error("short.safetensors", {"short.safetensors", "file has 3 bytes, expected at least 8"});
}

TEST_F(SafetensorsTest, HeaderLengthPastEof) {
  write_raw("bad.safetensors", 1000, "{}", 0);
  expect_error("bad.safetensors",
               {"bad.safetensors", "header length 1000 exceeds the file (10 bytes)"});
  write_raw("huge.safetensors", ~uint64_t{0}, "{}", 0);
  expect_error("huge.safetensors", {"header length 18446744073709551615"});
}

TEST_F(SafetensorsTest, BadJson) {
  write_raw("bad.safetensors", R"({"w": {"dtype": "F32", "shape": [1], )", 4);
  expect_error("bad.safetensors", {"bad.safetensors", "invalid JSON", "parse error"});
  write_raw("array.safetensors", "[1, 2]", 0);
  expect_error("array.safetensors", {"header is not a JSON object"});
}

TEST_F(SafetensorsTest, UnknownDtype) {
  write_raw(
      "bad.safetensors",
      R"({"model.layers.0.q_proj.qweight": {"dtype": "I32", "shape": [2], "data_offsets": [0, 8]}})",
      8);
  expect_error("bad.safetensors",
               {"tensor 'model.layers.0.q_proj.qweight'", "dtype 'I32' is not supported"});
}

TEST_F(SafetensorsTest, MissingFields) {
  write_raw("bad.safetensors", R"({"w": {"dtype": "F32", "data_offsets": [0, 4]}})", 4);
  expect_error("bad.safetensors", {"tensor 'w'", "missing array \"shape\""});
  write_raw("neg.safetensors", R"({"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}})",
            4);
  expect_error("neg.safetensors", {"tensor 'w'", "non-negative integers, got '-1'"});
  write_raw("off.safetensors", R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0]}})", 4);
  expect_error("off.safetensors", {"tensor 'w'", "data_offsets"});
}

TEST_F(SafetensorsTest, OffsetsPastEof) {
  write_raw("bad.safetensors", R"({"w": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}})",
            16);
  expect_error("bad.safetensors",
               {"tensor 'w'", "data_offsets [8, 24] outside the data section of 16 bytes"});
  write_raw("reversed.safetensors",
            R"({"w": {"dtype": "F32", "shape": [0], "data_offsets": [8, 4]}})", 16);
  expect_error("reversed.safetensors", {"tensor 'w'", "data_offsets [8, 4]"});
}

TEST_F(SafetensorsTest, ShapeBytesMismatch) {
  write_raw("bad.safetensors",
            R"({"w": {"dtype": "BF16", "shape": [3, 4], "data_offsets": [0, 16]}})", 16);
  expect_error("bad.safetensors",
               {"tensor 'w'", "shape '[3,4]' of BF16 needs 12 x 2 bytes", "span 16"});
  write_raw("overflow.safetensors",
            R"({"w": {"dtype": "F32", "shape": [4294967296, 4294967296], "data_offsets": [0, 0]}})",
            0);
  expect_error("overflow.safetensors", {"tensor 'w'", "overflows"});
}

TEST_F(SafetensorsTest, MissingShard) {
  SafetensorsWriter a;
  a.add_tensor_f32("x", {1}, {1});
  ASSERT_TRUE(a.write(path("model-00001-of-00002.safetensors")).ok());
  write_text("model.safetensors.index.json", R"({"weight_map": {
      "x": "model-00001-of-00002.safetensors", "z": "model-00002-of-00002.safetensors"}})");
  expect_error(
      "model.safetensors.index.json",
      {"model.safetensors.index.json", "shard 'model-00002-of-00002.safetensors' is missing"});
}

TEST_F(SafetensorsTest, IndexPointsAtWrongShard) {
  SafetensorsWriter a, b;
  a.add_tensor_f32("x", {1}, {1});
  b.add_tensor_f32("z", {1}, {2});
  ASSERT_TRUE(a.write(path("a.safetensors")).ok());
  ASSERT_TRUE(b.write(path("b.safetensors")).ok());
  write_text("model.safetensors.index.json",
             R"({"weight_map": {"x": "b.safetensors", "z": "a.safetensors"}})");
  expect_error("model.safetensors.index.json", {"weight_map puts tensor 'x' in 'b.safetensors'"});
}

TEST_F(SafetensorsTest, TensorInTwoShards) {
  SafetensorsWriter a;
  a.add_tensor_f32("x", {1}, {1});
  ASSERT_TRUE(a.write(path("a.safetensors")).ok());
  ASSERT_TRUE(a.write(path("b.safetensors")).ok());
  write_text("model.safetensors.index.json",
             R"({"weight_map": {"x": "a.safetensors", "y": "b.safetensors"}})");
  expect_error("model.safetensors.index.json", {"tensor 'x' appears in more than one shard"});
}

TEST_F(SafetensorsTest, BadIndex) {
  write_text("model.safetensors.index.json", R"({"weight_map": [1, 2]})");
  expect_error("model.safetensors.index.json", {"expected an object with a \"weight_map\" object"});
  write_text("broken.index.json", R"({"weight_map": )");
  expect_error("broken.index.json", {"broken.index.json", "invalid JSON"});
}

}  // namespace
}  // namespace duet
