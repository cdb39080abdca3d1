#include "protocol/signer.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <array>

namespace ipp::protocol {

// HMAC-SHA256 as RFC 2104 defines it, from two SHA-256 states precomputed over the padded key
// (K ^ ipad and K ^ opad). Each signature copies those states into reusable contexts, so signing
// allocates nothing — the message path signs every message.
struct Signer::Impl {
  EVP_MD_CTX* inner_keyed = EVP_MD_CTX_new();
  EVP_MD_CTX* outer_keyed = EVP_MD_CTX_new();
  EVP_MD_CTX* scratch = EVP_MD_CTX_new();
  ~Impl() {
    EVP_MD_CTX_free(inner_keyed);
    EVP_MD_CTX_free(outer_keyed);
    EVP_MD_CTX_free(scratch);
  }
};

Signer::Signer(std::string_view key, std::string_view scheme) {
  if (key.empty()) return;
  if (scheme != "hmac-sha256") {
    status_ = Status::InvalidArgument("unsupported signature_scheme '" + std::string(scheme) +
                                      "' (only hmac-sha256 is supported)");
    return;
  }
  impl_ = std::make_unique<Impl>();
  constexpr size_t kBlock = 64;  // SHA-256 block size
  std::array<unsigned char, kBlock> block{};
  unsigned int length = 0;
  if (key.size() > kBlock) {
    EVP_Digest(key.data(), key.size(), block.data(), &length, EVP_sha256(), nullptr);
  } else {
    std::copy(key.begin(), key.end(), block.begin());
  }
  std::array<unsigned char, kBlock> ipad, opad;
  for (size_t i = 0; i < kBlock; ++i) {
    ipad[i] = block[i] ^ 0x36;
    opad[i] = block[i] ^ 0x5c;
  }
  bool ok = impl_->inner_keyed && impl_->outer_keyed && impl_->scratch &&
            EVP_DigestInit_ex(impl_->inner_keyed, EVP_sha256(), nullptr) == 1 &&
            EVP_DigestUpdate(impl_->inner_keyed, ipad.data(), kBlock) == 1 &&
            EVP_DigestInit_ex(impl_->outer_keyed, EVP_sha256(), nullptr) == 1 &&
            EVP_DigestUpdate(impl_->outer_keyed, opad.data(), kBlock) == 1;
  OPENSSL_cleanse(block.data(), kBlock);
  OPENSSL_cleanse(ipad.data(), kBlock);
  OPENSSL_cleanse(opad.data(), kBlock);
  if (!ok) {
    status_ = Status::Internal("OpenSSL could not initialise HMAC-SHA256");
    impl_.reset();
    return;
  }
  enabled_ = true;
}

Signer::~Signer() = default;
Signer::Signer(Signer&&) noexcept = default;
Signer& Signer::operator=(Signer&&) noexcept = default;

std::string Signer::sign(const std::string_view* parts, size_t count) const {
  if (!enabled_) return {};
  std::array<unsigned char, EVP_MAX_MD_SIZE> inner{}, digest{};
  unsigned int inner_length = 0, length = 0;
  EVP_MD_CTX* ctx = impl_->scratch;
  bool ok = EVP_MD_CTX_copy_ex(ctx, impl_->inner_keyed) == 1;
  for (size_t i = 0; ok && i < count; ++i) ok = EVP_DigestUpdate(ctx, parts[i].data(), parts[i].size()) == 1;
  ok = ok && EVP_DigestFinal_ex(ctx, inner.data(), &inner_length) == 1;
  ok = ok && EVP_MD_CTX_copy_ex(ctx, impl_->outer_keyed) == 1;
  ok = ok && EVP_DigestUpdate(ctx, inner.data(), inner_length) == 1;
  ok = ok && EVP_DigestFinal_ex(ctx, digest.data(), &length) == 1;
  if (!ok) return {};  // cannot match any real signature, so verification fails closed
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex(length * 2, '\0');
  for (size_t i = 0; i < length; ++i) {
    hex[2 * i] = kHex[digest[i] >> 4];
    hex[2 * i + 1] = kHex[digest[i] & 0xf];
  }
  return hex;
}

bool Signer::verify(std::string_view signature, const std::string_view* parts, size_t count) const {
  if (!enabled_) return true;  // no key: jupyter_client checks nothing either
  std::string expected = sign(parts, count);
  return !expected.empty() && expected.size() == signature.size() &&
         CRYPTO_memcmp(expected.data(), signature.data(), expected.size()) == 0;
}

}  // namespace ipp::protocol
