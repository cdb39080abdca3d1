#include "protocol/signer.hpp"

// SHA256_* (deprecated in OpenSSL 3, kept through 3.x): hmac-sha256 without EVP's provider
// machinery, whose first use loads openssl.cnf and the default provider — a third of an engine's
// start (callgrind); same speed per signature.
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#include <array>

namespace ipp::protocol {

namespace {

// The schemes jupyter_client accepts ("hmac-" + a hashlib constructor name) that are HMAC-able:
// fixed-size digests (hashlib's shake_* have none).
struct Scheme {
  const char* name;
  const EVP_MD* (*digest)();
};
constexpr Scheme kSchemes[] = {
    {"hmac-sha256", EVP_sha256},     {"hmac-sha1", EVP_sha1},         {"hmac-sha224", EVP_sha224},
    {"hmac-sha384", EVP_sha384},     {"hmac-sha512", EVP_sha512},     {"hmac-md5", EVP_md5},
    {"hmac-sha3_224", EVP_sha3_224}, {"hmac-sha3_256", EVP_sha3_256}, {"hmac-sha3_384", EVP_sha3_384},
    {"hmac-sha3_512", EVP_sha3_512}, {"hmac-blake2b", EVP_blake2b512}, {"hmac-blake2s", EVP_blake2s256},
};

const EVP_MD* DigestOf(std::string_view scheme) {
  for (const Scheme& s : kSchemes) {
    if (scheme == s.name) return s.digest();
  }
  return nullptr;
}

}  // namespace

Status CheckSignatureScheme(std::string_view scheme) {
  if (DigestOf(scheme)) return Status::OK();
  std::string known;
  for (const Scheme& s : kSchemes) known += (known.empty() ? "" : ", ") + std::string(s.name);
  return Status::InvalidArgument("unsupported signature_scheme '" + std::string(scheme) + "' (supported: " + known +
                                 ")");
}

// HMAC as RFC 2104 defines it, from two digest states precomputed over the padded key
// (K ^ ipad and K ^ opad). Each signature copies those states, so signing allocates nothing —
// the message path signs every message. hmac-sha256 (what connection files name) keeps plain
// SHA256_CTX states; the other schemes EVP contexts.
struct Signer::Impl {
  bool sha256 = false;
  SHA256_CTX inner256{}, outer256{};
  EVP_MD_CTX* inner_keyed = nullptr;
  EVP_MD_CTX* outer_keyed = nullptr;
  EVP_MD_CTX* scratch = nullptr;
  ~Impl() {
    OPENSSL_cleanse(&inner256, sizeof inner256);
    OPENSSL_cleanse(&outer256, sizeof outer256);
    EVP_MD_CTX_free(inner_keyed);
    EVP_MD_CTX_free(outer_keyed);
    EVP_MD_CTX_free(scratch);
  }
};

Signer::Signer(std::string_view key, std::string_view scheme) : keyed_(!key.empty()) {
  if (key.empty()) return;
  status_ = CheckSignatureScheme(scheme);
  if (!status_.ok()) return;
  impl_ = std::make_unique<Impl>();
  impl_->sha256 = scheme == "hmac-sha256";
  const EVP_MD* md = impl_->sha256 ? nullptr : DigestOf(scheme);
  constexpr size_t kMaxBlock = 256;  // SHA3-224 has the largest block of the schemes: 144 bytes
  size_t block_size = impl_->sha256 ? SHA256_CBLOCK : static_cast<size_t>(EVP_MD_block_size(md));
  std::array<unsigned char, kMaxBlock> block{};
  unsigned int length = 0;
  bool ok = block_size > 0 && block_size <= kMaxBlock;
  if (ok && key.size() > block_size && impl_->sha256) {
    SHA256(reinterpret_cast<const unsigned char*>(key.data()), key.size(), block.data());
  } else if (ok && key.size() > block_size) {
    ok = EVP_Digest(key.data(), key.size(), block.data(), &length, md, nullptr) == 1;
  } else if (ok) {
    std::copy(key.begin(), key.end(), block.begin());
  }
  std::array<unsigned char, kMaxBlock> ipad{}, opad{};
  for (size_t i = 0; i < block_size && i < kMaxBlock; ++i) {
    ipad[i] = block[i] ^ 0x36;
    opad[i] = block[i] ^ 0x5c;
  }
  if (ok && impl_->sha256) {
    ok = SHA256_Init(&impl_->inner256) == 1 && SHA256_Update(&impl_->inner256, ipad.data(), block_size) == 1 &&
         SHA256_Init(&impl_->outer256) == 1 && SHA256_Update(&impl_->outer256, opad.data(), block_size) == 1;
  } else if (ok) {
    impl_->inner_keyed = EVP_MD_CTX_new();
    impl_->outer_keyed = EVP_MD_CTX_new();
    impl_->scratch = EVP_MD_CTX_new();
    ok = impl_->inner_keyed && impl_->outer_keyed && impl_->scratch &&
         EVP_DigestInit_ex(impl_->inner_keyed, md, nullptr) == 1 &&
         EVP_DigestUpdate(impl_->inner_keyed, ipad.data(), block_size) == 1 &&
         EVP_DigestInit_ex(impl_->outer_keyed, md, nullptr) == 1 &&
         EVP_DigestUpdate(impl_->outer_keyed, opad.data(), block_size) == 1;
  }
  OPENSSL_cleanse(block.data(), kMaxBlock);
  OPENSSL_cleanse(ipad.data(), kMaxBlock);
  OPENSSL_cleanse(opad.data(), kMaxBlock);
  if (!ok) {
    status_ = Status::Internal("OpenSSL could not initialise " + std::string(scheme));
    impl_.reset();
  }
}

Signer::~Signer() = default;
Signer::Signer(Signer&&) noexcept = default;
Signer& Signer::operator=(Signer&&) noexcept = default;

std::string Signer::sign(const std::string_view* parts, size_t count) const {
  if (!impl_) return {};  // no key, or a key we cannot use: verify() then refuses everything
  std::array<unsigned char, EVP_MAX_MD_SIZE> inner{}, digest{};
  unsigned int inner_length = 0, length = 0;
  bool ok = true;
  if (impl_->sha256) {
    SHA256_CTX ctx = impl_->inner256;
    for (size_t i = 0; i < count; ++i) SHA256_Update(&ctx, parts[i].data(), parts[i].size());
    SHA256_Final(inner.data(), &ctx);
    ctx = impl_->outer256;
    SHA256_Update(&ctx, inner.data(), SHA256_DIGEST_LENGTH);
    SHA256_Final(digest.data(), &ctx);
    length = SHA256_DIGEST_LENGTH;
  } else {
    EVP_MD_CTX* ctx = impl_->scratch;
    ok = EVP_MD_CTX_copy_ex(ctx, impl_->inner_keyed) == 1;
    for (size_t i = 0; ok && i < count; ++i) ok = EVP_DigestUpdate(ctx, parts[i].data(), parts[i].size()) == 1;
    ok = ok && EVP_DigestFinal_ex(ctx, inner.data(), &inner_length) == 1;
    ok = ok && EVP_MD_CTX_copy_ex(ctx, impl_->outer_keyed) == 1;
    ok = ok && EVP_DigestUpdate(ctx, inner.data(), inner_length) == 1;
    ok = ok && EVP_DigestFinal_ex(ctx, digest.data(), &length) == 1;
  }
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
  if (!keyed_) return true;  // explicitly no key: jupyter_client checks nothing either
  std::string expected = sign(parts, count);
  return !expected.empty() && expected.size() == signature.size() &&
         CRYPTO_memcmp(expected.data(), signature.data(), expected.size()) == 0;
}

}  // namespace ipp::protocol
