// selectSubprotocol: the server's preference wins among what the client offered.
#include <string>
#include <vector>

#include "check.h"
#include "uws/Subprotocol.h"

namespace {

std::string select(std::string_view offer, const std::vector<std::string> &supported) {
    return std::string(uws::selectSubprotocol(offer, supported));
}

void testServerPreferenceWins() {
    CHECK_EQ(select("chat, superchat", {"superchat", "chat"}), "superchat");
    CHECK_EQ(select("superchat,chat", {"chat", "superchat"}), "chat");
    CHECK_EQ(select("a, b, c", {"x", "c"}), "c");
}

void testNothingInCommonAnswersNothing() {
    CHECK_EQ(select("chat, superchat", {"v2"}), "");
    CHECK_EQ(select("", {"v2"}), "");
    CHECK_EQ(select(" , ,", {"v2"}), "");
}

void testExactComparison() {
    CHECK_EQ(select("Chat", {"chat"}), "");
    CHECK_EQ(select("chatty", {"chat"}), "");
    CHECK_EQ(select("\tchat\t", {"chat"}), "chat");
}

void testWithoutServerListTheClientsFirst() {
    CHECK_EQ(select("chat, superchat", {}), "chat");
    CHECK_EQ(select("  bearer ", {}), "bearer");
    CHECK_EQ(select("", {}), "");
}

} // namespace

int main() {
    RUN_TEST(testServerPreferenceWins);
    RUN_TEST(testNothingInCommonAnswersNothing);
    RUN_TEST(testExactComparison);
    RUN_TEST(testWithoutServerListTheClientsFirst);
    return check::report("test_subprotocol");
}
