#include "protocol/signer.hpp"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include <array>

namespace ipp::protocol {

struct Signer::Impl {
  EVP_MAC* mac = nullptr;
  EVP_MAC_CTX* keyed = nullptr;  // initialised with the key; duplicated for each signature
  ~Impl() {
    EVP_MAC_CTX_free(keyed);
    EVP_MAC_free(mac);
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
  impl_->mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
  if (impl_->mac) impl_->keyed = EVP_MAC_CTX_new(impl_->mac);
  char digest_name[] = "SHA256";
  OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest_name, 0),
                         OSSL_PARAM_construct_end()};
  if (!impl_->keyed ||
      EVP_MAC_init(impl_->keyed, reinterpret_cast<const unsigned char*>(key.data()), key.size(),
                   params) != 1) {
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
  EVP_MAC_CTX* ctx = EVP_MAC_CTX_dup(impl_->keyed);
  std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
  size_t length = 0;
  bool ok = ctx != nullptr;
  for (size_t i = 0; ok && i < count; ++i) {
    ok = EVP_MAC_update(ctx, reinterpret_cast<const unsigned char*>(parts[i].data()),
                        parts[i].size()) == 1;
  }
  ok = ok && EVP_MAC_final(ctx, digest.data(), &length, digest.size()) == 1;
  EVP_MAC_CTX_free(ctx);
  if (!ok) return {};  // cannot match any real signature, so verification fails closed
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex(length * 2, '\0');
  for (size_t i = 0; i < length; ++i) {
    hex[2 * i] = kHex[digest[i] >> 4];
    hex[2 * i + 1] = kHex[digest[i] & 0xf];
  }
  return hex;
}

bool Signer::verify(std::string_view signature, const std::string_view* parts,
                    size_t count) const {
  if (!enabled_) return true;  // no key: jupyter_client checks nothing either
  std::string expected = sign(parts, count);
  return !expected.empty() && expected.size() == signature.size() &&
         CRYPTO_memcmp(expected.data(), signature.data(), expected.size()) == 0;
}

}  // namespace ipp::protocol
