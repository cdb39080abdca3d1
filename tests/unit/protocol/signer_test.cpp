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

TEST(SignerTest, UnknownSchemeIsAnErrorNamingIt) {
  Signer signer("k", "hmac-md999");
  EXPECT_FALSE(signer.status().ok());
  EXPECT_NE(signer.status().message().find("'hmac-md999'"), std::string::npos);
  EXPECT_NE(signer.status().message().find("hmac-sha256"), std::string::npos);  // lists what works
  EXPECT_FALSE(Signer("k", "sha256").status().ok());
  EXPECT_FALSE(Signer("k", "hmac-shake_128").status().ok());  // no fixed digest size: no HMAC
}

TEST(SignerTest, UnknownSchemeWithAKeyNeverAcceptsAMessage) {
  Signer signer("k", "hmac-md999");
  std::string_view parts[] = {"{}", "{}", "{}", "{}"};
  EXPECT_TRUE(signer.enabled());
  EXPECT_FALSE(signer.verify("", parts, 4));
  EXPECT_FALSE(signer.verify(Signer("k").sign(parts, 4), parts, 4));
}

// Expected digests from Python's hmac + hashlib, which jupyter_client uses for "hmac-<name>".
TEST(SignerTest, OtherHashlibSchemesMatchPython) {
  std::string_view parts[] = {"what do ya ", "want for nothing?"};
  EXPECT_EQ(Signer("Jefe", "hmac-sha1").sign(parts, 2), "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79");
  EXPECT_EQ(Signer("Jefe", "hmac-sha512").sign(parts, 2),
            "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b"
            "636e070a38bce737");
  EXPECT_EQ(Signer("Jefe", "hmac-sha3_256").sign(parts, 2),
            "c7d4072e788877ae3596bbb0da73b887c9171f93095b294ae857fbe2645e1ba5");
  EXPECT_EQ(Signer("Jefe", "hmac-blake2b").sign(parts, 2),
            "6ff884f8ddc2a6586b3c98a4cd6ebdf14ec10204b6710073eb5865ade37a2643b8807c1335d107ecdb9ffeaeb6828c4625ba172c66379efcd222c2"
            "de11727ab4");
  EXPECT_EQ(Signer("Jefe", "hmac-md5").sign(parts, 2), "750c783e6ab0b503eaa86e310a5db738");
}

TEST(SignerTest, KeysLongerThanTheBlockAreHashedForEveryScheme) {
  std::string_view test[] = {"Test"};
  EXPECT_EQ(Signer(std::string(200, '\xaa'), "hmac-sha3_224").sign(test, 1),
            "e9dac368eb2ed940989fefd3b379dd49db0414a511989a15b0b1812a");
  std::string_view rfc[] = {"Test Using Larger Than Block-Size Key - Hash Key First"};
  EXPECT_EQ(Signer(std::string(131, '\xaa'), "hmac-sha512").sign(rfc, 1),
            "80b24263c7c1a3ebb71493c1dd7be8b49b46d1f41b4aeec1121b013783f8f3526b56d037e05f2598bd0fd2215d6a1e5295e64f73f63f0aec8b"
            "915a985d786598");
}

}  // namespace
}  // namespace ipp::protocol
