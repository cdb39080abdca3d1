#include "protocol/curve.hpp"

namespace ipp::protocol {

Result<CurveKeyPair> NewCurveKeyPair() {
  char public_key[41], secret_key[41];
  if (zmq_curve_keypair(public_key, secret_key) != 0) {
    return Status::Unavailable(std::string("cannot generate CURVE keys: ") + zmq_strerror(zmq_errno()));
  }
  return CurveKeyPair{public_key, secret_key};
}

Status SetUpCurveClient(zmq::socket_t& socket, const std::string& server_key) {
  Result<CurveKeyPair> keys = NewCurveKeyPair();
  if (!keys.ok()) return keys.status();
  try {
    socket.set(zmq::sockopt::curve_serverkey, server_key);
    socket.set(zmq::sockopt::curve_publickey, keys->public_key);
    socket.set(zmq::sockopt::curve_secretkey, keys->secret_key);
  } catch (const zmq::error_t& e) {
    return Status::InvalidArgument(std::string("cannot set up CURVE (is the server key a 40-character Z85 key?): ") +
                                   e.what());
  }
  return Status::OK();
}

}  // namespace ipp::protocol
