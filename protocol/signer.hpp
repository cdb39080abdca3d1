// HMAC signatures over the four JSON frames of a wire message, as jupyter_client's Session.sign
// computes them: hex digest of header | parent_header | metadata | content. HMAC-SHA256 is what
// connection files name; the other schemes jupyter_client accepts work too.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "ipp/status.hpp"

namespace ipp::protocol {

// OK for "hmac-sha256" and the other "hmac-<hashlib name>" schemes with a fixed-size digest
// (sha1, sha224, sha384, sha512, md5, sha3_*, blake2b, blake2s); otherwise an error naming the
// scheme and listing the supported ones.
Status CheckSignatureScheme(std::string_view scheme);

// Not thread-safe: each reactor thread owns its own Signer (it keeps a keyed HMAC context that
// is duplicated per signature, the way Python's Session copies `auth`).
class Signer {
 public:
  // An empty key disables signing: signatures are empty and verify() accepts anything, as
  // jupyter_client does with auth=None. Connection files we write always carry a key.
  // With a key and a scheme it cannot use, status() fails and verify() refuses everything.
  explicit Signer(std::string_view key, std::string_view scheme = "hmac-sha256");
  ~Signer();
  Signer(Signer&&) noexcept;
  Signer& operator=(Signer&&) noexcept;
  Signer(const Signer&) = delete;
  Signer& operator=(const Signer&) = delete;

  // Fails for a scheme CheckSignatureScheme refuses.
  const Status& status() const { return status_; }
  // Whether a key was given: then every message must carry a valid signature.
  bool enabled() const { return keyed_; }

  // Hex digest of the concatenation of `parts`, or "" when signing is disabled.
  std::string sign(const std::string_view* parts, size_t count) const;
  // Constant-time comparison of `signature` with sign(parts).
  bool verify(std::string_view signature, const std::string_view* parts, size_t count) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  bool keyed_ = false;
  Status status_;
};

}  // namespace ipp::protocol
