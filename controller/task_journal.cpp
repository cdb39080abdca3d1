#include "controller/task_journal.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>

namespace ipp::controller {

namespace {

// Entry: a type byte, the body's length (u64, native byte order: the file never leaves this
// host), the body. Accepted: frames as (u64 length, bytes)..., the first the msg_id. Finished:
// the msg_id.
constexpr char kAccepted = 'A', kFinished = 'F';

void PutU64(std::string& out, uint64_t n) { out.append(reinterpret_cast<const char*>(&n), sizeof n); }

bool GetU64(std::string_view& in, uint64_t* n) {
  if (in.size() < sizeof *n) return false;
  std::memcpy(n, in.data(), sizeof *n);
  in.remove_prefix(sizeof *n);
  return true;
}

std::string Entry(char type, const std::string& body) {
  std::string out(1, type);
  PutU64(out, body.size());
  return out + body;
}

void PutFrame(std::string& out, std::string_view frame) {
  PutU64(out, frame.size());
  out.append(frame);
}

Status WriteAll(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status::IOError(std::string("task journal write failed: ") + std::strerror(errno));
    data.remove_prefix(static_cast<size_t>(n));
  }
  return Status::OK();
}

}  // namespace

Result<std::unique_ptr<TaskJournal>> TaskJournal::Open(const std::filesystem::path& file, bool restore) {
  std::unique_ptr<TaskJournal> journal(new TaskJournal(file));
  if (restore) {
    if (Status s = journal->Load(); !s.ok()) return s;
  }
  // Always starts as a compacted file: what was restored, nothing else.
  if (Status s = journal->Compact(); !s.ok()) return s;
  return journal;
}

TaskJournal::~TaskJournal() {
  Flush();
  if (fd_ >= 0) ::close(fd_);
}

Status TaskJournal::Load() {
  std::ifstream in(file_, std::ios::binary);
  if (!in) return Status::OK();  // nothing recorded yet
  std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::string_view rest(data);
  while (rest.size() > 1 + sizeof(uint64_t)) {
    char type = rest[0];
    std::string_view cursor = rest.substr(1);
    uint64_t size = 0;
    GetU64(cursor, &size);
    if (size > cursor.size()) break;  // a torn last entry: the crash came mid-write
    std::string_view body = cursor.substr(0, size);
    std::string entry(rest.substr(0, 1 + sizeof size + size));
    rest = cursor.substr(size);
    if (type == kFinished) {
      auto it = by_id_.find(std::string(body));
      if (it != by_id_.end()) {
        pending_bytes_ -= entries_[it->second].size();
        entries_.erase(it->second);
        by_id_.erase(it);
      }
    } else if (type == kAccepted) {
      uint64_t n = 0;
      std::string_view b = body;
      if (!GetU64(b, &n) || n > b.size()) continue;
      std::string msg_id(b.substr(0, n));
      if (by_id_.count(msg_id)) continue;
      by_id_[msg_id] = next_seq_;
      pending_bytes_ += entry.size();
      entries_[next_seq_++] = std::move(entry);
    } else {
      return Status::IOError("task journal " + file_.string() + " is corrupt (unknown entry type)");
    }
  }
  return Status::OK();
}

std::vector<TaskJournal::Pending> TaskJournal::PendingRequests() const {
  std::vector<Pending> out;
  for (const auto& [seq, entry] : entries_) {
    std::string_view b(entry);
    b.remove_prefix(1 + sizeof(uint64_t));
    Pending p;
    bool first = true;
    uint64_t n = 0;
    while (GetU64(b, &n) && n <= b.size()) {
      if (first) {
        p.msg_id = std::string(b.substr(0, n));
        first = false;
      } else {
        p.frames.emplace_back(b.data(), n);
      }
      b.remove_prefix(n);
    }
    out.push_back(std::move(p));
  }
  return out;
}

void TaskJournal::Accepted(const std::string& msg_id, const protocol::RawMessage& raw) {
  if (by_id_.count(msg_id) || raw.identity_count() == 0) return;
  std::string body;
  PutFrame(body, msg_id);
  PutFrame(body, raw.identity(0));
  PutFrame(body, protocol::kDelimiter);
  for (auto part : {protocol::RawMessage::kSignature, protocol::RawMessage::kHeader, protocol::RawMessage::kParent,
                    protocol::RawMessage::kMetadata, protocol::RawMessage::kContent}) {
    PutFrame(body, raw.part(part));
  }
  for (const zmq::message_t& buffer : raw.share_buffers()) PutFrame(body, protocol::view(buffer));
  std::string entry = Entry(kAccepted, body);
  unwritten_ += entry;
  pending_bytes_ += entry.size();
  by_id_[msg_id] = next_seq_;
  entries_[next_seq_++] = std::move(entry);
}

void TaskJournal::Finished(const std::string& msg_id) {
  auto it = by_id_.find(msg_id);
  if (it == by_id_.end()) return;
  pending_bytes_ -= entries_[it->second].size();
  entries_.erase(it->second);
  by_id_.erase(it);
  unwritten_ += Entry(kFinished, msg_id);
}

void TaskJournal::Flush() {
  if (fd_ < 0) return;
  // Mostly finished work: start over with what is pending (cheap then, as little is).
  constexpr uint64_t kCompactAbove = 64ull << 20;
  if (file_bytes_ + unwritten_.size() > kCompactAbove && file_bytes_ > 4 * pending_bytes_) {
    unwritten_.clear();
    if (Status s = Compact(); !s.ok()) fd_ = -1;
    return;
  }
  if (!unwritten_.empty()) {
    if (!WriteAll(fd_, unwritten_).ok()) return;  // kept, to be tried again next period
    file_bytes_ += unwritten_.size();
    unwritten_.clear();
  }
  auto now = std::chrono::steady_clock::now();
  if (now - last_sync_ >= kSyncPeriod) {
    ::fdatasync(fd_);
    last_sync_ = now;
  }
}

Status TaskJournal::Compact() {
  std::filesystem::path tmp = file_;
  tmp += ".new";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return Status::IOError("cannot write the task journal " + tmp.string() + ": " + std::strerror(errno));
  std::string all;
  for (const auto& [seq, entry] : entries_) all += entry;
  if (Status s = WriteAll(fd, all); !s.ok()) {
    ::close(fd);
    return s;
  }
  ::fdatasync(fd);
  if (::rename(tmp.c_str(), file_.c_str()) != 0) {
    ::close(fd);
    return Status::IOError("cannot replace the task journal " + file_.string() + ": " + std::strerror(errno));
  }
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
  file_bytes_ = all.size();
  last_sync_ = std::chrono::steady_clock::now();
  return Status::OK();
}

}  // namespace ipp::controller
