// Handing an object to another thread over an inproc socket: the frame carries only the
// pointer, and ownership travels with it (the sender must not touch the object afterwards).
//
// libzmq's queues synchronise the two threads; TSan is told so (common/tsan.hpp).
#pragma once

#include <cstring>

#include <zmq.hpp>

#include "common/tsan.hpp"

namespace ipp {

template <typename T>
zmq::message_t PointerFrame(T* object) {
  TsanRelease(object);
  return zmq::message_t(&object, sizeof object);
}

// nullptr when the frame is not a pointer frame.
template <typename T>
T* FromPointerFrame(const zmq::message_t& frame) {
  T* object = nullptr;
  if (frame.size() != sizeof object) return nullptr;
  std::memcpy(&object, frame.data(), sizeof object);
  TsanAcquire(object);
  return object;
}

}  // namespace ipp
