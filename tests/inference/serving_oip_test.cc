// The OIP v2 codec (src/inference/serving/oip.h) without a model or a socket: JSON (flat and
// nested) and binary requests, every datatype both ways (client encode -> server parse, server
// encode -> client parse), every malformed case with its message, and random mutations of
// valid requests that must never crash.
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>

#include "inference/serving/oip.h"

namespace concord::inference::oip {
namespace {

using ::testing::HasSubstr;

TensorInfo info(std::string name, std::string datatype, std::vector<int64_t> shape) {
  TensorInfo t;
  t.name = std::move(name);
  t.datatype = std::move(datatype);
  t.has_shape = true;
  t.shape = std::move(shape);
  return t;
}

ModelMetadata fashion_like() {
  ModelMetadata m;
  m.format = "onnx";
  m.inputs.push_back(info("input", "FP32", {-1, 1, 28, 28}));
  m.outputs.push_back(info("logits", "FP32", {-1, 10}));
  return m;
}

ModelMetadata two_inputs() {
  ModelMetadata m;
  m.inputs.push_back(info("a", "FP32", {-1, 2}));
  m.inputs.push_back(info("b", "INT64", {-1, 3}));
  m.outputs.push_back(info("y", "FP32", {-1, 1}));
  m.outputs.push_back(info("z", "INT32", {-1}));
  return m;
}

template <typename T>
std::string bytes_of(std::initializer_list<T> values) {
  std::string s(values.size() * sizeof(T), '\0');
  size_t at = 0;
  for (T v : values) {
    std::memcpy(s.data() + at, &v, sizeof(T));
    at += sizeof(T);
  }
  return s;
}

std::string bytes_elements(std::initializer_list<std::string_view> values) {
  std::string s;
  for (std::string_view v : values) {
    const auto n = static_cast<uint32_t>(v.size());
    s.append(reinterpret_cast<const char*>(&n), 4);
    s.append(v);
  }
  return s;
}

// The error message of parsing `body` against `m`; fails the test when it parses, or when the
// code is not kInvalidArgument.
std::string parse_error(std::string_view body, const ModelMetadata& m,
                        std::optional<size_t> header_length = std::nullopt) {
  auto r = parse_infer_request(body, header_length, m);
  EXPECT_FALSE(r.has_value()) << body;
  if (r) return "";
  EXPECT_EQ(r.error().code(), Code::kInvalidArgument);
  return r.error().message();
}

std::vector<float> image_values(size_t n) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<float>(i % 256) / 255.0f;
  return v;
}

TEST(OipCodec, FlatJsonRequest) {
  const auto values = image_values(784);
  Json body = {
      {"id", "r1"},
      {"inputs",
       {{{"name", "input"}, {"shape", {1, 1, 28, 28}}, {"datatype", "FP32"}, {"data", values}}}}};
  auto r = parse_infer_request(body.dump(), std::nullopt, fashion_like());
  ASSERT_TRUE(r.has_value()) << r.error().to_string();
  EXPECT_EQ(r->id, "r1");
  ASSERT_EQ(r->inputs.size(), 1u);
  EXPECT_EQ(r->inputs[0].shape, (std::vector<int64_t>{1, 1, 28, 28}));
  EXPECT_EQ(r->inputs[0].to_floats(), values);
  EXPECT_TRUE(r->outputs.empty());
  EXPECT_FALSE(r->binary_data_output);
}

TEST(OipCodec, NestedJsonRequestEqualsFlat) {
  ModelMetadata m;
  m.inputs.push_back(info("x", "INT32", {-1, 3}));
  m.outputs.push_back(info("y", "INT32", {-1}));
  auto nested = parse_infer_request(
      R"({"inputs":[{"name":"x","shape":[2,3],"datatype":"INT32","data":[[1,2,3],[4,5,-6]]}]})",
      std::nullopt, m);
  auto flat = parse_infer_request(
      R"({"inputs":[{"name":"x","shape":[2,3],"datatype":"INT32","data":[1,2,3,4,5,-6]}]})",
      std::nullopt, m);
  ASSERT_TRUE(nested.has_value()) << nested.error().to_string();
  ASSERT_TRUE(flat.has_value()) << flat.error().to_string();
  EXPECT_EQ(nested->inputs[0].data, bytes_of<int32_t>({1, 2, 3, 4, 5, -6}));
  EXPECT_EQ(nested->inputs[0].data, flat->inputs[0].data);
}

TEST(OipCodec, NestedJsonMustMatchShape) {
  ModelMetadata m;
  m.inputs.push_back(info("x", "INT32", {-1, 3}));
  EXPECT_EQ(parse_error(R"({"inputs":[{"name":"x","shape":[2,3],"datatype":"INT32",
                           "data":[[1,2,3],[4,5]]}]})",
                        m),
            "input 'x': nested data does not match shape [2,3] at dimension 1 (expected 3 "
            "entries, got 2)");
  EXPECT_EQ(parse_error(R"({"inputs":[{"name":"x","shape":[2,3],"datatype":"INT32",
                           "data":[[1,2,3],[4,5,[6]]]}]})",
                        m),
            "input 'x': nested data is deeper than shape [2,3]");
  EXPECT_EQ(parse_error(R"({"inputs":[{"name":"x","shape":[2,3],"datatype":"INT32",
                           "data":[[1,2,3],7]}]})",
                        m),
            "input 'x': nested data does not match shape [2,3] at dimension 1 (expected 3 "
            "entries, got a scalar)");
}

TEST(OipCodec, BinaryRequest) {
  const auto values = image_values(784 * 2);
  Tensor t = Tensor::fp32("input", {2, 1, 28, 28}, values);
  EncodedMessage m = encode_infer_request(std::span<const Tensor>(&t, 1), /*binary=*/true, "b1");
  ASSERT_TRUE(m.header_length.has_value());
  EXPECT_EQ(m.content_type, "application/octet-stream");
  EXPECT_EQ(m.body.size(), *m.header_length + values.size() * 4);
  auto r = parse_infer_request(m.body, m.header_length, fashion_like());
  ASSERT_TRUE(r.has_value()) << r.error().to_string();
  EXPECT_EQ(r->id, "b1");
  EXPECT_TRUE(r->binary_data_output);
  EXPECT_EQ(r->inputs[0].data, t.data);
}

TEST(OipCodec, MixedJsonAndBinaryInputsInAnyOrder) {
  // b (binary) is listed first and a (JSON) second; outputs: y binary, z JSON.
  const std::string b_bytes = bytes_of<int64_t>({7, -8, 9});
  Json header = {
      {"inputs",
       {{{"name", "b"},
         {"shape", {1, 3}},
         {"datatype", "INT64"},
         {"parameters", {{"binary_data_size", b_bytes.size()}}}},
        {{"name", "a"}, {"shape", {1, 2}}, {"datatype", "FP32"}, {"data", {0.5, -1}}}}},
      {"outputs", {{{"name", "z"}}, {{"name", "y"}, {"parameters", {{"binary_data", true}}}}}}};
  const std::string json = header.dump();
  auto r = parse_infer_request(json + b_bytes, json.size(), two_inputs());
  ASSERT_TRUE(r.has_value()) << r.error().to_string();
  ASSERT_EQ(r->inputs.size(), 2u);
  EXPECT_EQ(r->inputs[0].name, "b");
  EXPECT_EQ(r->inputs[0].data, b_bytes);
  EXPECT_EQ(r->inputs[1].data, bytes_of<float>({0.5f, -1.0f}));
  ASSERT_EQ(r->outputs.size(), 2u);
  EXPECT_FALSE(r->outputs[0].binary_data);
  EXPECT_TRUE(r->outputs[1].binary_data);

  // The response lists outputs in the model's order, y in binary and z as JSON.
  std::vector<Tensor> outputs{
      {"y", "FP32", {1, 1}, bytes_of<float>({2.5f})},
      {"z", "INT32", {1}, bytes_of<int32_t>({-3})},
  };
  EncodedMessage resp = encode_infer_response("m", "1", *r, outputs);
  ASSERT_TRUE(resp.header_length.has_value());
  auto header_json = nlohmann::json::parse(resp.body.substr(0, *resp.header_length));
  EXPECT_EQ(header_json["model_name"], "m");
  EXPECT_EQ(header_json["model_version"], "1");
  EXPECT_EQ(header_json["outputs"][0]["parameters"]["binary_data_size"], 4);
  EXPECT_EQ(header_json["outputs"][1]["data"], Json::array({-3}));
  auto back = parse_infer_response(resp.body, resp.header_length);
  ASSERT_TRUE(back.has_value()) << back.error().to_string();
  ASSERT_EQ(back->size(), 2u);
  EXPECT_EQ((*back)[0].data, outputs[0].data);
  EXPECT_EQ((*back)[1].data, outputs[1].data);
  EXPECT_EQ((*back)[1].shape, outputs[1].shape);
}

TEST(OipCodec, OnlyRequestedOutputsAreReturned) {
  auto r = parse_infer_request(
      R"({"id":"q","inputs":[{"name":"a","shape":[1,2],"datatype":"FP32","data":[1,2]},
          {"name":"b","shape":[1,3],"datatype":"INT64","data":[1,2,3]}],
          "outputs":[{"name":"z"}]})",
      std::nullopt, two_inputs());
  ASSERT_TRUE(r.has_value()) << r.error().to_string();
  std::vector<Tensor> outputs{
      {"y", "FP32", {1, 1}, bytes_of<float>({2.5f})},
      {"z", "INT32", {1}, bytes_of<int32_t>({-3})},
  };
  EncodedMessage resp = encode_infer_response("m", "1", *r, outputs);
  EXPECT_FALSE(resp.header_length.has_value());
  EXPECT_EQ(resp.content_type, "application/json");
  auto j = nlohmann::json::parse(resp.body);
  EXPECT_EQ(j["id"], "q");
  ASSERT_EQ(j["outputs"].size(), 1u);
  EXPECT_EQ(j["outputs"][0]["name"], "z");
}

// One tensor per datatype, with the extremes of its range.
std::vector<Tensor> every_datatype() {
  std::vector<Tensor> t;
  t.push_back({"bool", "BOOL", {2, 2}, bytes_of<uint8_t>({1, 0, 0, 1})});
  t.push_back({"u8", "UINT8", {3}, bytes_of<uint8_t>({0, 128, 255})});
  t.push_back({"u16", "UINT16", {3}, bytes_of<uint16_t>({0, 300, 65535})});
  t.push_back({"u32", "UINT32", {2}, bytes_of<uint32_t>({0, 4294967295u})});
  t.push_back(
      {"u64", "UINT64", {2}, bytes_of<uint64_t>({0, std::numeric_limits<uint64_t>::max()})});
  t.push_back({"i8", "INT8", {3}, bytes_of<int8_t>({-128, 0, 127})});
  t.push_back({"i16", "INT16", {2}, bytes_of<int16_t>({-32768, 32767})});
  t.push_back({"i32",
               "INT32",
               {2},
               bytes_of<int32_t>(
                   {std::numeric_limits<int32_t>::min(), std::numeric_limits<int32_t>::max()})});
  t.push_back({"i64",
               "INT64",
               {2},
               bytes_of<int64_t>(
                   {std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max()})});
  // FP16: 1.0, -2.5, the largest finite (65504), the smallest subnormal, -0.
  t.push_back({"f16", "FP16", {5}, bytes_of<uint16_t>({0x3c00, 0xc100, 0x7bff, 0x0001, 0x8000})});
  t.push_back(
      {"f32", "FP32", {4}, bytes_of<float>({0.1f, -3.4028235e38f, 1.17549435e-38f, 1e-45f})});
  t.push_back({"f64", "FP64", {3}, bytes_of<double>({0.1, -1.7976931348623157e308, 5e-324})});
  t.push_back({"bytes", "BYTES", {3}, bytes_elements({"", "hello", "h\xc3\xa9llo"})});
  return t;
}

ModelMetadata metadata_for(std::span<const Tensor> tensors) {
  ModelMetadata m;
  for (const Tensor& t : tensors) {
    m.inputs.push_back(info(t.name, t.datatype, t.shape));
    m.outputs.push_back(info(t.name, t.datatype, t.shape));
  }
  return m;
}

TEST(OipCodec, EveryDatatypeRoundTripsBothWays) {
  const std::vector<Tensor> tensors = every_datatype();
  const ModelMetadata m = metadata_for(tensors);
  for (const bool binary : {false, true}) {
    SCOPED_TRACE(binary ? "binary" : "json");
    EncodedMessage req = encode_infer_request(tensors, binary);
    EXPECT_EQ(req.header_length.has_value(), binary);
    auto parsed = parse_infer_request(req.body, req.header_length, m);
    ASSERT_TRUE(parsed.has_value()) << parsed.error().to_string();
    ASSERT_EQ(parsed->inputs.size(), tensors.size());
    for (size_t i = 0; i < tensors.size(); ++i) {
      EXPECT_EQ(parsed->inputs[i].datatype, tensors[i].datatype);
      EXPECT_EQ(parsed->inputs[i].shape, tensors[i].shape);
      EXPECT_EQ(parsed->inputs[i].data, tensors[i].data) << tensors[i].datatype;
    }
    EncodedMessage resp = encode_infer_response("m", "1", *parsed, tensors);
    EXPECT_EQ(resp.header_length.has_value(), binary);
    auto back = parse_infer_response(resp.body, resp.header_length);
    ASSERT_TRUE(back.has_value()) << back.error().to_string();
    ASSERT_EQ(back->size(), tensors.size());
    for (size_t i = 0; i < tensors.size(); ++i) {
      EXPECT_EQ((*back)[i].datatype, tensors[i].datatype);
      EXPECT_EQ((*back)[i].shape, tensors[i].shape);
      EXPECT_EQ((*back)[i].data, tensors[i].data) << tensors[i].datatype;
    }
  }
}

TEST(OipCodec, EveryFiniteHalfRoundTripsThroughJson) {
  std::string bits;
  int64_t n = 0;
  for (uint32_t h = 0; h < 0x10000; ++h) {
    if (((h >> 10) & 0x1f) == 0x1f) continue;  // inf and NaN have no JSON form
    const auto v = static_cast<uint16_t>(h);
    bits.append(reinterpret_cast<const char*>(&v), 2);
    ++n;
  }
  const Tensor t{"h", "FP16", {n}, bits};
  EncodedMessage req = encode_infer_request(std::span<const Tensor>(&t, 1), false);
  EXPECT_FALSE(req.header_length.has_value());
  auto parsed = parse_infer_request(req.body, std::nullopt, metadata_for({&t, 1}));
  ASSERT_TRUE(parsed.has_value()) << parsed.error().to_string();
  EXPECT_EQ(parsed->inputs[0].data, bits);
}

TEST(OipCodec, JsonNumbersRoundToHalf) {
  ModelMetadata m;
  m.inputs.push_back(info("h", "FP16", {-1}));
  // 1 + 2^-11 is a tie between 1 and 1 + 2^-10: ties go to even (1.0, 0x3c00); 65519 rounds
  // down to 65504 (0x7bff).
  auto r = parse_infer_request(
      R"({"inputs":[{"name":"h","shape":[3],"datatype":"FP16","data":[1.00048828125,65519,-0.0]}]})",
      std::nullopt, m);
  ASSERT_TRUE(r.has_value()) << r.error().to_string();
  EXPECT_EQ(r->inputs[0].data, bytes_of<uint16_t>({0x3c00, 0x7bff, 0x8000}));
  EXPECT_EQ(
      parse_error(R"({"inputs":[{"name":"h","shape":[1],"datatype":"FP16","data":[65520]}]})", m),
      "input 'h': element 0 is 65520, out of range for FP16");
}

TEST(OipCodec, NonFiniteOutputsGoBinary) {
  InferRequest req;
  const Tensor t{"y", "FP32", {2}, bytes_of<float>({1.0f, std::numeric_limits<float>::infinity()})};
  EncodedMessage resp = encode_infer_response("m", "1", req, std::span<const Tensor>(&t, 1));
  ASSERT_TRUE(resp.header_length.has_value());
  auto back = parse_infer_response(resp.body, resp.header_length);
  ASSERT_TRUE(back.has_value()) << back.error().to_string();
  EXPECT_EQ((*back)[0].data, t.data);
}

TEST(OipCodec, RangeAndKindChecks) {
  ModelMetadata m;
  for (const char* dt : {"UINT8", "INT8", "UINT64", "INT64", "BOOL", "FP32", "BYTES", "INT32"}) {
    m.inputs.push_back(info(std::string("x_") + dt, dt, {-1}));
  }
  auto one = [&](std::string_view dt, std::string_view data) {
    ModelMetadata single;
    single.inputs.push_back(info(std::string("x_") + std::string(dt), std::string(dt), {-1}));
    return parse_error(fmt::format(R"({{"inputs":[{{"name":"x_{}","shape":[2],"datatype":"{}",)"
                                   R"("data":{}}}]}})",
                                   dt, dt, data),
                       single);
  };
  EXPECT_EQ(one("UINT8", "[1,300]"), "input 'x_UINT8': element 1 is 300, out of range for UINT8");
  EXPECT_EQ(one("UINT8", "[-1,3]"), "input 'x_UINT8': element 0 is -1, out of range for UINT8");
  EXPECT_EQ(one("INT8", "[1,-129]"), "input 'x_INT8': element 1 is -129, out of range for INT8");
  EXPECT_EQ(one("INT64", "[1,9223372036854775808]"),
            "input 'x_INT64': element 1 is 9223372036854775808, out of range for INT64");
  EXPECT_EQ(one("UINT64", "[1,-5]"), "input 'x_UINT64': element 1 is -5, out of range for UINT64");
  EXPECT_EQ(one("INT32", "[1,2.5]"),
            "input 'x_INT32': element 1 is not an integer (INT32 takes integers)");
  EXPECT_EQ(one("INT32", R"([1,"2"])"),
            "input 'x_INT32': element 1 is not an integer (INT32 takes integers)");
  EXPECT_EQ(one("BOOL", "[true,1]"),
            "input 'x_BOOL': element 1 is not a boolean (BOOL takes true or false)");
  EXPECT_EQ(one("FP32", "[1,null]"), "input 'x_FP32': element 1 is not a number");
  EXPECT_EQ(one("FP32", "[1,true]"), "input 'x_FP32': element 1 is not a number");
  EXPECT_EQ(one("FP32", "[1,1e39]"), "input 'x_FP32': element 1 is 1e+39, out of range for FP32");
  EXPECT_EQ(one("BYTES", R"(["a",3])"),
            "input 'x_BYTES': element 1 is not a string (BYTES takes strings)");
}

TEST(OipCodec, OverflowingJsonNumberIsNotFinite) {
  ModelMetadata m;
  m.inputs.push_back(info("x", "FP64", {-1}));
  auto r = parse_infer_request(
      R"({"inputs":[{"name":"x","shape":[1],"datatype":"FP64","data":[1e400]}]})", std::nullopt, m);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Code::kInvalidArgument);
}

TEST(OipCodec, MalformedRequestsNameWhatIsWrong) {
  const ModelMetadata m = fashion_like();
  const std::string ok_input = R"({"name":"input","shape":[1,1,28,28],"datatype":"FP32","data":[)" +
                               [] {
                                 std::string s;
                                 for (int i = 0; i < 784; ++i) s += i == 0 ? "0" : ",0";
                                 return s;
                               }() +
                               "]}";
  EXPECT_EQ(parse_error(R"({"inputs":[{"name":"input","shape":[1,1,28],"datatype":"FP32",
                          "data":[1]}]})",
                        m),
            "input 'input' has shape [1,1,28], the model expects [-1,1,28,28]");
  EXPECT_EQ(parse_error(R"({"inputs":[{"name":"input","shape":[1,1,28,27],"datatype":"FP32",
                          "data":[1]}]})",
                        m),
            "input 'input' has shape [1,1,28,27], the model expects [-1,1,28,28]");
  EXPECT_EQ(parse_error(R"({"inputs":[{"name":"input","shape":[1,1,28,28],"datatype":"INT64",
                          "data":[1]}]})",
                        m),
            "input 'input' has datatype 'INT64', the model expects 'FP32'");
  EXPECT_EQ(parse_error(R"({"inputs":[{"name":"input","shape":[1,1,28,28],"datatype":"FP8",
                          "data":[1]}]})",
                        m),
            "input 'input': unknown datatype 'FP8'");
  {
    std::string body = ok_input;
    body.replace(body.find("[0,"), 3, "[");
    EXPECT_EQ(parse_error(R"({"inputs":[)" + body + "]}", m),
              "input 'input': expected 784 elements for shape [1,1,28,28], got 783");
  }
  EXPECT_EQ(parse_error(R"({"inputs":[)" + ok_input + "," + ok_input + "]}", m),
            "input 'input' is given more than once");
  EXPECT_EQ(parse_error(R"({"inputs":[{"name":"image","shape":[1],"datatype":"FP32",
                          "data":[1]}]})",
                        m),
            "unknown input 'image'; the model's inputs are: input");
  EXPECT_EQ(parse_error(R"({"inputs":[]})", m), "input 'input' is missing");
  EXPECT_EQ(parse_error(R"({"inputs":[)" + ok_input + R"(],"outputs":[{"name":"probs"}]})", m),
            "unknown output 'probs'; the model's outputs are: logits");
  EXPECT_EQ(
      parse_error(
          R"({"inputs":[)" + ok_input + R"(],"outputs":[{"name":"logits"},{"name":"logits"}]})", m),
      "output 'logits' is requested more than once");
  EXPECT_EQ(parse_error("not json", m).rfind("the inference request is not valid JSON: ", 0), 0u);
  EXPECT_EQ(parse_error("[1,2]", m), "the inference request must be a JSON object");
  EXPECT_EQ(parse_error(std::string(100, '[') + std::string(100, ']'), m),
            "the inference request is not valid JSON: JSON nesting deeper than 64 levels");
  EXPECT_EQ(parse_error(R"({"inputs":{}})", m), "the request has no inputs array");
  EXPECT_EQ(parse_error(R"({"id":5,"inputs":[]})", m), "the request id must be a string");
  EXPECT_EQ(parse_error(R"({"inputs":[{"shape":[1]}]})", m),
            "inputs[0] has no name (a non-empty string)");
  EXPECT_EQ(parse_error(R"({"inputs":[{"name":"input","shape":[1,-1,28,28],"datatype":"FP32",
                          "data":[1]}]})",
                        m),
            "input 'input': shape must be an array of non-negative integers");
  EXPECT_EQ(
      parse_error(R"({"inputs":[{"name":"input","shape":[1,1,28,28],"datatype":"FP32"}]})", m),
      "input 'input' has no data (give data or parameters.binary_data_size)");
  EXPECT_EQ(parse_error(R"({"inputs":[{"name":"input","shape":[4000000000,1,28,28],
                          "datatype":"FP32","data":[1]}]})",
                        m),
            "input 'input': shape [4000000000,1,28,28] has more than 67108864 elements");
}

TEST(OipCodec, MalformedBinaryRequests) {
  const ModelMetadata m = fashion_like();
  const std::string pixels(784 * 4, '\0');
  auto header = [](uint64_t size) {
    return Json{{"inputs",
                 {{{"name", "input"},
                   {"shape", {1, 1, 28, 28}},
                   {"datatype", "FP32"},
                   {"parameters", {{"binary_data_size", size}}}}}}}
        .dump();
  };
  {
    const std::string h = header(3132);
    EXPECT_EQ(parse_error(h + pixels.substr(0, 3132), m, h.size()),
              "input 'input': binary_data_size is 3132 bytes, shape [1,1,28,28] of FP32 needs "
              "3136");
  }
  {
    const std::string h = header(3136);
    EXPECT_EQ(parse_error(h + pixels.substr(0, 3000), m, h.size()),
              "input 'input': binary_data_size 3136 is beyond the binary data (3000 bytes left)");
    EXPECT_EQ(parse_error(h + pixels + "xx", m, h.size()),
              "the binary data after the JSON header is 3138 bytes but the tensors' "
              "binary_data_size add up to 3136");
    EXPECT_EQ(parse_error(h + pixels, m, std::nullopt)
                  .rfind("the inference request is not valid JSON", 0),
              0u);
    EXPECT_EQ(parse_error(h, m, std::nullopt),
              "input 'input' has parameters.binary_data_size but the message has no "
              "Inference-Header-Content-Length header");
    EXPECT_EQ(parse_error(h + pixels, m, h.size() + pixels.size() + 1),
              fmt::format("Inference-Header-Content-Length {} is beyond the body's {} bytes",
                          h.size() + pixels.size() + 1, h.size() + pixels.size()));
  }
  {
    ModelMetadata bm;
    bm.inputs.push_back(info("s", "BYTES", {-1}));
    const std::string elems = bytes_elements({"ab", "c"});
    Json h = {{"inputs",
               {{{"name", "s"},
                 {"shape", {3}},
                 {"datatype", "BYTES"},
                 {"parameters", {{"binary_data_size", elems.size()}}}}}}};
    EXPECT_EQ(parse_error(h.dump() + elems, bm, h.dump().size()),
              "input 's': binary data holds 2 BYTES elements, the shape needs 3");
    std::string bad = elems;
    bad[0] = 100;  // first element claims 100 bytes
    EXPECT_EQ(parse_error(h.dump() + bad, bm, h.dump().size()),
              "input 's': BYTES element 0 claims 100 bytes but only 7 remain");
  }
}

TEST(OipCodec, HeaderLengthHeader) {
  http::Request req;
  req.body = "0123456789";
  auto none = header_length_of(req);
  ASSERT_TRUE(none.has_value());
  EXPECT_FALSE(none->has_value());
  req.headers.push_back({"inference-header-content-length", "4"});
  auto four = header_length_of(req);
  ASSERT_TRUE(four.has_value());
  EXPECT_EQ(**four, 4u);
  req.headers[0].value = "-4";
  ASSERT_FALSE(header_length_of(req).has_value());
  EXPECT_EQ(header_length_of(req).error().message(),
            "Inference-Header-Content-Length '-4' is not a byte count");
  req.headers[0].value = "11";
  EXPECT_EQ(header_length_of(req).error().message(),
            "Inference-Header-Content-Length 11 is beyond the body's 10 bytes");
  req.headers[0].value = "99999999999999999999999";
  EXPECT_EQ(header_length_of(req).error().code(), Code::kInvalidArgument);
}

TEST(OipCodec, MetadataAndErrorBodies) {
  const std::vector<std::string> versions{"1"};
  Json j = model_metadata_json("fm", versions, fashion_like());
  EXPECT_EQ(j["name"], "fm");
  EXPECT_EQ(j["versions"], Json::array({"1"}));
  EXPECT_EQ(j["platform"], "onnx");
  EXPECT_EQ(j["inputs"][0]["shape"], Json::array({-1, 1, 28, 28}));
  EXPECT_EQ(j["outputs"][0]["datatype"], "FP32");
  http::Response e = error(404, "unknown model 'x'");
  EXPECT_EQ(e.status, 404);
  EXPECT_EQ(nlohmann::json::parse(e.body), (Json{{"error", "unknown model 'x'"}}));
  EXPECT_EQ(status_for(Code::kInvalidArgument), 400);
  EXPECT_EQ(status_for(Code::kNotFound), 404);
  EXPECT_EQ(status_for(Code::kUnauthenticated), 401);
  EXPECT_EQ(status_for(Code::kPermissionDenied), 403);
  EXPECT_EQ(status_for(Code::kResourceExhausted), 503);
  EXPECT_EQ(status_for(Code::kUnavailable), 503);
  EXPECT_EQ(status_for(Code::kDeadlineExceeded), 504);
  EXPECT_EQ(status_for(Code::kInternal), 500);
  EXPECT_EQ(status_for(Code::kAborted), 500);
}

TEST(OipCodec, MalformedResponses) {
  EXPECT_EQ(parse_infer_response(R"({"error":"boom"})", std::nullopt).error().message(),
            "the response is an error: boom");
  EXPECT_EQ(parse_infer_response(R"({"model_name":"m"})", std::nullopt).error().message(),
            "the response has no outputs array");
  EXPECT_EQ(
      parse_infer_response(R"({"outputs":[{"name":"y","shape":[2],"datatype":"FP32","data":[1]}]})",
                           std::nullopt)
          .error()
          .message(),
      "output 'y': expected 2 elements for shape [2], got 1");
}

// Random byte mutations, truncations and splices of valid requests (JSON and binary): every
// outcome is a parsed request or kInvalidArgument, and nothing crashes or hangs (run it under
// the sanitizer build for the memory side).
TEST(OipCodec, RandomMutationsNeverCrash) {
  const std::vector<Tensor> tensors = every_datatype();
  const ModelMetadata m = metadata_for(tensors);
  std::vector<EncodedMessage> seeds{encode_infer_request(tensors, false),
                                    encode_infer_request(tensors, true)};
  const Tensor img = Tensor::fp32("input", {1, 1, 28, 28}, image_values(784));
  seeds.push_back(encode_infer_request(std::span<const Tensor>(&img, 1), false));
  seeds.push_back(encode_infer_request(std::span<const Tensor>(&img, 1), true));
  const ModelMetadata fm = fashion_like();
  std::mt19937 rng(12345);
  static constexpr std::string_view kTokens[] = {
      "[",     "]",    "{",    "}",        ",",  ":",    "\"", "-1",
      "1e999", "null", "true", "\"FP16\"", "[[", "\xff", "0",  "18446744073709551616"};
  int parsed_ok = 0;
  int rejected = 0;
  // CONCORD_OIP_MUTATIONS raises the count for a longer soak (e.g. under the sanitizer build).
  const char* env = std::getenv("CONCORD_OIP_MUTATIONS");
  const int iterations = env != nullptr ? std::max(1, std::atoi(env)) : 6000;
  for (int iter = 0; iter < iterations; ++iter) {
    const EncodedMessage& seed = seeds[iter % seeds.size()];
    std::string body = seed.body;
    std::optional<size_t> hl = seed.header_length;
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits && !body.empty(); ++e) {
      const size_t at = rng() % body.size();
      switch (rng() % 5) {
        case 0: body[at] = static_cast<char>(rng() % 256); break;
        case 1: body.erase(at, 1 + rng() % 8); break;
        case 2: body.insert(at, kTokens[rng() % std::size(kTokens)]); break;
        case 3: body.resize(at); break;
        default:
          if (hl) hl = rng() % (body.size() + 2);
          break;
      }
    }
    for (const ModelMetadata* meta : {&m, &fm}) {
      auto r = parse_infer_request(body, hl, *meta);
      if (r) {
        ++parsed_ok;
      } else {
        ++rejected;
        EXPECT_EQ(r.error().code(), Code::kInvalidArgument) << r.error().message();
      }
    }
    auto resp = parse_infer_response(body, hl);
    if (!resp) {
      EXPECT_EQ(resp.error().code(), Code::kInvalidArgument);
    }
  }
  EXPECT_GT(rejected, 0);
  std::printf("mutations: %d parsed, %d rejected\n", parsed_ok, rejected);
}

}  // namespace
}  // namespace concord::inference::oip
