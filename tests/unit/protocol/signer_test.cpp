#include "protocol/signer.hpp"

#include <gtest/gtest.h>

namespace ipp::protocol {
namespace {

TEST(SignerTest, MatchesRfc4231TestCase2AcrossSplitParts) {
  Signer signer("Jefe");
  ASSERT_TRUE(signer.status().ok());
  std::string_view parts[] = {"what do ya ", "want ", "", "for nothing?"};
  EXPECT_EQ(signer.sign(parts, 4),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

TEST(SignerTest, MatchesRfc4231TestCase6KeyLongerThanABlock) {
  Signer signer(std::string(131, '\xaa'));
  std::string_view parts[] = {"Test Using Larger Than Block-Size Key - Hash Key First"};
  EXPECT_EQ(signer.sign(parts, 1), "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
  EXPECT_EQ(signer.sign(parts, 1), signer.sign(parts, 1));  // the keyed states are not consumed
}

TEST(SignerTest, VerifyRejectsWrongSignatureAndWrongKey) {
  Signer signer("key-a");
  Signer other("key-b");
  std::string_view parts[] = {"{}", "{}", "{}", "{}"};
  std::string sig = signer.sign(parts, 4);
  EXPECT_TRUE(signer.verify(sig, parts, 4));
  EXPECT_FALSE(other.verify(sig, parts, 4));
  std::string tampered = sig;
  tampered[0] = tampered[0] == 'a' ? 'b' : 'a';
  EXPECT_FALSE(signer.verify(tampered, parts, 4));
  EXPECT_FALSE(signer.verify(sig.substr(0, 10), parts, 4));
  EXPECT_FALSE(signer.verify("", parts, 4));
}

TEST(SignerTest, EmptyKeyDisablesSigning) {
  Signer signer("");
  std::string_view parts[] = {"x"};
  EXPECT_FALSE(signer.enabled());
  EXPECT_EQ(signer.sign(parts, 1), "");
}

TEST(SignerTest, UnsupportedSchemeIsAnError) {
  Signer signer("k", "hmac-md5");
  EXPECT_FALSE(signer.status().ok());
  EXPECT_NE(signer.status().message().find("hmac-md5"), std::string::npos);
}

}  // namespace
}  // namespace ipp::protocol
