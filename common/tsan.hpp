// ThreadSanitizer annotations for synchronisation TSan cannot see.
//
// Debian's libzmq is not built with -fsanitize=thread: its lock-free pipes are invisible to TSan,
// so data handed from one thread to another through an inproc socket looks unsynchronised. The
// sender calls TsanRelease(data) before the hand-off and the receiver TsanAcquire(data) after it,
// which tells TSan what libzmq guarantees. No-ops in every other build.
#pragma once

#if defined(__SANITIZE_THREAD__)
extern "C" void __tsan_acquire(void* addr);
extern "C" void __tsan_release(void* addr);
#endif

namespace ipp {

inline void TsanRelease([[maybe_unused]] const void* addr) {
#if defined(__SANITIZE_THREAD__)
  __tsan_release(const_cast<void*>(addr));
#endif
}

inline void TsanAcquire([[maybe_unused]] const void* addr) {
#if defined(__SANITIZE_THREAD__)
  __tsan_acquire(const_cast<void*>(addr));
#endif
}

}  // namespace ipp
