#include "protocol/clock.hpp"

#include <cstdint>
#include <cstdio>
#include <ctime>

namespace ipp::protocol {

namespace {

// Writes `value` as `n` decimal digits at `out` (zero-padded; value < 10^n).
void Digits(char* out, int n, int64_t value) {
  for (int i = n - 1; i >= 0; --i, value /= 10) out[i] = static_cast<char>('0' + value % 10);
}

}  // namespace

std::string Iso8601(WallClock::time_point t) {
  // Every message carries a date and the hub formats several per task: digits by hand and the
  // calendar from <chrono>, not gmtime and snprintf.
  using namespace std::chrono;
  auto micros = duration_cast<microseconds>(t.time_since_epoch());
  sys_days day = floor<days>(sys_time<microseconds>(micros));
  year_month_day date(day);
  int64_t of_day = (micros - duration_cast<microseconds>(day.time_since_epoch())).count();
  int64_t second_of_day = of_day / 1000000;
  char text[] = "YYYY-MM-DDTHH:MM:SS.ffffffZ";
  Digits(text, 4, static_cast<int>(date.year()));
  Digits(text + 5, 2, static_cast<unsigned>(date.month()));
  Digits(text + 8, 2, static_cast<unsigned>(date.day()));
  Digits(text + 11, 2, second_of_day / 3600);
  Digits(text + 14, 2, second_of_day / 60 % 60);
  Digits(text + 17, 2, second_of_day % 60);
  Digits(text + 20, 6, of_day % 1000000);
  return std::string(text, sizeof text - 1);
}

std::optional<WallClock::time_point> ParseIso8601(std::string_view text) {
  std::string_view s = text;
  int year, month, day, hour, minute, second, consumed = 0;
  // Every header carries a date, nearly always in exactly this layout: read it by position
  // (the hub parses one per message; sscanf is slow for that); anything else goes the sscanf way.
  auto digits = [&](size_t at, size_t n, int* out) {
    *out = 0;
    for (size_t i = at; i < at + n; ++i) {
      if (s[i] < '0' || s[i] > '9') return false;
      *out = *out * 10 + (s[i] - '0');
    }
    return true;
  };
  bool fixed = s.size() >= 19 && s[4] == '-' && s[7] == '-' && s[10] == 'T' && s[13] == ':' && s[16] == ':' &&
               digits(0, 4, &year) && digits(5, 2, &month) && digits(8, 2, &day) && digits(11, 2, &hour) &&
               digits(14, 2, &minute) && digits(17, 2, &second);
  if (fixed) {
    consumed = 19;
  } else if (std::sscanf(std::string(s).c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%n", &year, &month, &day, &hour,
                         &minute, &second, &consumed) != 6) {
    return std::nullopt;
  }
  // Out-of-range fields would be normalised by timegm into dates a nanosecond time_point cannot
  // hold (it spans 1678..2261): a forged header must not overflow it.
  if (year < 1700 || year > 2250 || month < 1 || month > 12 || day < 1 || day > 31 || hour < 0 || hour > 23 ||
      minute < 0 || minute > 59 || second < 0 || second > 60) {
    return std::nullopt;
  }
  size_t pos = static_cast<size_t>(consumed);
  long micros = 0;
  if (pos < s.size() && s[pos] == '.') {
    long scale = 100000;
    for (++pos; pos < s.size() && s[pos] >= '0' && s[pos] <= '9'; ++pos) {
      micros += (s[pos] - '0') * scale;
      scale /= 10;
    }
  }
  long offset_seconds = 0;
  if (pos < s.size() && (s[pos] == '+' || s[pos] == '-')) {
    int oh = 0, om = 0;
    // "+00:00" is what Python's isoformat writes (the stock peers' dates): read it by position.
    bool exact = s.size() >= pos + 6 && s[pos + 3] == ':' && digits(pos + 1, 2, &oh) && digits(pos + 4, 2, &om);
    if (!exact && std::sscanf(std::string(s.substr(pos + 1)).c_str(), "%2d:%2d", &oh, &om) < 1) return std::nullopt;
    if (oh < 0 || oh > 23 || om < 0 || om > 59) return std::nullopt;
    offset_seconds = (oh * 3600L + om * 60L) * (s[pos] == '-' ? -1 : 1);
  } else if (pos < s.size() && s[pos] != 'Z') {
    return std::nullopt;
  }
  // Days from the calendar (arithmetic, unlike timegm); a day past the month's end rolls over
  // into the next month as timegm does.
  using namespace std::chrono;
  sys_days date = sys_days(year_month_day(std::chrono::year(year), std::chrono::month(static_cast<unsigned>(month)),
                                          std::chrono::day(1))) + days(day - 1);
  return WallClock::time_point(date) + hours(hour) + minutes(minute) + seconds(second - offset_seconds) +
         microseconds(micros);
}

}  // namespace ipp::protocol
