// CURVE encryption of the TCP channels (ipyparallel 9's enable_curve). The controller is the
// CURVE server; engines, clients and the hub's own resubmit socket are clients with a fresh key
// pair each: CURVE only encrypts here, who may talk is decided by the HMAC key.
#pragma once

#include <string>

#include <zmq.hpp>

#include "ipp/status.hpp"

namespace ipp::protocol {

struct CurveKeyPair {
  std::string public_key, secret_key;  // Z85, 40 characters each
};
// Fails when libzmq was built without CURVE.
Result<CurveKeyPair> NewCurveKeyPair();

// Makes `socket` (not yet connected) a CURVE client of the server whose public key is
// `server_key` (Z85), with a new key pair of its own.
Status SetUpCurveClient(zmq::socket_t& socket, const std::string& server_key);

}  // namespace ipp::protocol
