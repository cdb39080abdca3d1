#include "protocol/json_fields.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace ipp::protocol {
namespace {

TEST(JsonFieldsTest, FindsTopLevelFieldsAsRawText) {
  auto f = JsonFields::Scan(
      R"( {"msg_id": "a_1", "n": -1.5e3, "ok": true, "no": false, "x": null,
           "list": [1, "]", {"a": [2]}], "obj": {"k": "}"}, "empty": [ ]} )");
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(f->string("msg_id"), "a_1");
  EXPECT_EQ(f->raw("n"), "-1.5e3");
  EXPECT_EQ(f->boolean("ok"), true);
  EXPECT_EQ(f->boolean("no"), false);
  EXPECT_EQ(f->raw("list"), R"([1, "]", {"a": [2]}])");
  EXPECT_EQ(f->raw("obj"), R"({"k": "}"})");
  EXPECT_FALSE(f->raw("missing").has_value());
  EXPECT_FALSE(f->string("n").has_value());  // not a string
  EXPECT_TRUE(f->empty_or_absent("x"));
  EXPECT_TRUE(f->empty_or_absent("empty"));
  EXPECT_TRUE(f->empty_or_absent("missing"));
  EXPECT_FALSE(f->empty_or_absent("list"));
  EXPECT_TRUE(JsonFields::Scan("{}").has_value());
}

TEST(JsonFieldsTest, GivesUpWhereAFullParserIsNeeded) {
  for (const char* text : {R"({"a": "x\"y"})",         // escaped value: string() declines
                           R"({"a\u0062": 1})",          // escaped key
                           R"({"a": 1, "a": 2})",        // duplicate key
                           R"({"a": 1,})", R"({"a" 1})", R"({"a": [1, 2})", R"({"a": tru})",
                           R"([1, 2])", R"({"a": 1} x)", "", "{", R"({"a": "unterminated})"}) {
    auto f = JsonFields::Scan(text);
    if (f) {
      EXPECT_FALSE(f->string("a").has_value()) << text;
    }
  }
  EXPECT_FALSE(JsonFields::Scan(R"({"a\u0062": 1})").has_value());
  EXPECT_FALSE(JsonFields::Scan(R"({"a": 1, "a": 2})").has_value());
  EXPECT_FALSE(JsonFields::Scan(R"({"a": [1, 2})").has_value());
  EXPECT_FALSE(JsonFields::Scan(R"({"a": tru})").has_value());
  EXPECT_FALSE(JsonFields::Scan(R"({"a": 1} x)").has_value());
  std::string many = "{";
  for (int i = 0; i <= static_cast<int>(JsonFields::kMaxFields); ++i) many += (i ? ",\"k" : "\"k") + std::to_string(i) + "\":1";
  EXPECT_FALSE(JsonFields::Scan(many + "}").has_value());
}

TEST(JsonFieldsTest, AgreesWithNlohmannOnRealHeaders) {
  nlohmann::json header = {{"msg_id", "3f1c_1234_7"}, {"msg_type", "apply_request"}, {"username", "ünïcode"},
                           {"session", "3f1c"}, {"date", "2026-11-25T20:00:00.000001Z"}, {"version", "5.3"}};
  nlohmann::json md = {{"after", nlohmann::json::array()}, {"follow", {"a", "b"}}, {"retries", 2},
                       {"timeout", nullptr}, {"targets", {"uuid-1"}}, {"dependencies_met", true}};
  for (const auto& j : {header, md}) {
    const std::string text = j.dump();  // the fields are views into it
    auto f = JsonFields::Scan(text);
    ASSERT_TRUE(f.has_value());
    for (const auto& [key, value] : j.items()) {
      ASSERT_TRUE(f->raw(key).has_value()) << key;
      EXPECT_EQ(nlohmann::json::parse(*f->raw(key)), value) << key;
      if (value.is_string()) {
        EXPECT_EQ(f->string(key), value.get<std::string>());
      }
    }
  }
}

TEST(JsonFieldsTest, StringsOfEveryLengthWithASpecialCharacterAnywhere) {
  // Strings are skipped 8 bytes at a time: a quote, backslash, control character or non-ASCII
  // byte at any offset of strings 0..40 long must be handled as a parser would.
  const std::string specials[] = {"\\\"", "\\\\", "\\n", "\x01", "\x1f", "\xc3\xa9", " ", "~"};
  for (size_t length = 0; length <= 40; ++length) {
    for (size_t at = 0; at <= length; ++at) {
      for (const std::string& special : specials) {
        std::string body = std::string(at, 'a') + (at < length ? special : "") + std::string(length - at, 'b');
        std::string text = "{\"k\":\"" + body + "\",\"n\":1}";
        nlohmann::json parsed = nlohmann::json::parse(text, nullptr, false);
        std::optional<JsonFields> f = JsonFields::Scan(text);
        if (parsed.is_discarded()) {
          EXPECT_FALSE(f) << text;  // control characters are not JSON
          continue;
        }
        ASSERT_TRUE(f) << text;
        EXPECT_EQ(f->raw("n"), "1") << text;
        EXPECT_EQ(f->raw("k"), "\"" + body + "\"") << text;
        if (auto k = f->string("k")) {
          EXPECT_EQ(*k, parsed["k"].get<std::string>()) << text;
        }
      }
    }
  }
}

}  // namespace
}  // namespace ipp::protocol
