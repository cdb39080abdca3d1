// HMAC-SHA256 signatures over the four JSON frames of a wire message, as jupyter_client's
// Session.sign computes them: hex digest of header | parent_header | metadata | content.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "ipp/status.hpp"

namespace ipp::protocol {

// Not thread-safe: each reactor thread owns its own Signer (it keeps a keyed HMAC context that
// is duplicated per signature, the way Python's Session copies `auth`).
class Signer {
 public:
  // An empty key disables signing: signatures are empty and verify() accepts anything, as
  // jupyter_client does with auth=None. Connection files we write always carry a key.
  explicit Signer(std::string_view key, std::string_view scheme = "hmac-sha256");
  ~Signer();
  Signer(Signer&&) noexcept;
  Signer& operator=(Signer&&) noexcept;
  Signer(const Signer&) = delete;
  Signer& operator=(const Signer&) = delete;

  // Fails for a scheme other than hmac-sha256 (the only one ipyparallel 7.1 writes).
  const Status& status() const { return status_; }
  bool enabled() const { return enabled_; }

  // Hex digest of the concatenation of `parts`, or "" when signing is disabled.
  std::string sign(const std::string_view* parts, size_t count) const;
  // Constant-time comparison of `signature` with sign(parts).
  bool verify(std::string_view signature, const std::string_view* parts, size_t count) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  bool enabled_ = false;
  Status status_;
};

}  // namespace ipp::protocol
