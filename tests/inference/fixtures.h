#pragma once
// Paths to the committed model fixture and to Debian's Fashion-MNIST data, and a reader for
// the data's gzip'd IDX files.
#include <zlib.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <string>
#include <vector>

namespace concord::inference::testing {

inline std::filesystem::path model_fixture_dir() {
  return CONCORD_MODEL_FIXTURE_DIR;
}

inline std::filesystem::path fashion_mnist_model() {
  return model_fixture_dir() / "fashion_mnist_cnn.onnx";
}

inline std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// Debian's dataset-fashion-mnist puts the files here; CONCORD_FASHION_MNIST_DIR overrides.
inline std::filesystem::path fashion_mnist_dir() {
  if (const char* dir = std::getenv("CONCORD_FASHION_MNIST_DIR")) return dir;
  return "/usr/share/datasets/fashion-mnist";
}

struct FashionMnistTest {
  int count = 0;
  std::vector<float> pixels;    // count x 28 x 28, pixel / 255 as the model was trained
  std::vector<uint8_t> labels;  // count
};

inline std::optional<std::string> gunzip_file(const std::filesystem::path& path) {
  gzFile f = gzopen(path.c_str(), "rb");
  if (f == nullptr) return std::nullopt;
  std::string out;
  char buf[1 << 16];
  int n = 0;
  while ((n = gzread(f, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  const bool ok = n == 0;
  gzclose(f);
  if (!ok) return std::nullopt;
  return out;
}

inline uint32_t be32(const std::string& s, size_t at) {
  return (uint32_t{static_cast<uint8_t>(s[at])} << 24) |
         (uint32_t{static_cast<uint8_t>(s[at + 1])} << 16) |
         (uint32_t{static_cast<uint8_t>(s[at + 2])} << 8) |
         uint32_t{static_cast<uint8_t>(s[at + 3])};
}

// The 10,000 test images, or nullopt when the package is not installed or a file is damaged.
inline std::optional<FashionMnistTest> load_fashion_mnist_test() {
  auto images = gunzip_file(fashion_mnist_dir() / "t10k-images-idx3-ubyte.gz");
  auto labels = gunzip_file(fashion_mnist_dir() / "t10k-labels-idx1-ubyte.gz");
  if (!images || !labels || images->size() < 16 || labels->size() < 8) return std::nullopt;
  if (be32(*images, 0) != 0x803 || be32(*labels, 0) != 0x801) return std::nullopt;
  const uint32_t n = be32(*images, 4);
  if (be32(*labels, 4) != n || be32(*images, 8) != 28 || be32(*images, 12) != 28 ||
      images->size() != 16 + size_t{n} * 784 || labels->size() != 8 + size_t{n}) {
    return std::nullopt;
  }
  FashionMnistTest out;
  out.count = static_cast<int>(n);
  out.pixels.resize(size_t{n} * 784);
  for (size_t i = 0; i < out.pixels.size(); ++i) {
    out.pixels[i] = static_cast<float>(static_cast<uint8_t>((*images)[16 + i])) / 255.0f;
  }
  out.labels.assign(labels->begin() + 8, labels->end());
  return out;
}

}  // namespace concord::inference::testing
