// SPDX-License-Identifier: Apache-2.0
#include "sandbox/host_services.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "host_services_support.hpp"
#include "sandbox/poisoning.hpp"

namespace hl::detail {
namespace {

using HostServices = test::host_services_test;
using protocol::guest_error_kind;

std::string error_text(const protocol::call_result& r) { return r.error ? r.error->message : "(no error)"; }

TEST_F(HostServices, ServesARegisteredFunctionAndAnswersWithItsResult) {
    services.register_function("Add", make_host_function([](std::int32_t a, std::int32_t b) { return a + b; }));
    const argument args[] = {std::int32_t{2}, std::int32_t{3}};
    guest_calls("Add", value_type::int32, args);
    EXPECT_FALSE(services.serve(buffers, call));
    const auto r = answer();
    ASSERT_FALSE(r.error) << error_text(r);
    EXPECT_EQ(std::get<std::int32_t>(r.value), 5);
}

TEST_F(HostServices, AnswersAnUnregisteredNameWithFunctionNotFound) {
    guest_calls("Missing", value_type::void_type);
    EXPECT_FALSE(services.serve(buffers, call));
    const auto r = answer();
    ASSERT_TRUE(r.error);
    EXPECT_EQ(r.error->kind, guest_error_kind::function_not_found);
    EXPECT_NE(r.error->message.find("'Missing', which the host has not registered"), std::string::npos) << r.error->message;
}

TEST_F(HostServices, AnswersWrongArgumentsWithTheSignatureTheFunctionTakes) {
    services.register_function("Add", make_host_function([](std::int32_t a, std::int32_t b) { return a + b; }));
    const argument args[] = {std::string_view("two")};
    guest_calls("Add", value_type::int32, args);
    EXPECT_FALSE(services.serve(buffers, call));
    const auto r = answer();
    ASSERT_TRUE(r.error);
    EXPECT_EQ(r.error->kind, guest_error_kind::parameter_mismatch);
    EXPECT_NE(r.error->message.find("takes (int32, int32); called with (string)"), std::string::npos) << r.error->message;
}

TEST_F(HostServices, AnswersAWrongExpectedReturnTypeWithReturnTypeMismatch) {
    services.register_function("Seven", make_host_function([] { return std::int32_t{7}; }));
    guest_calls("Seven", value_type::string);
    EXPECT_FALSE(services.serve(buffers, call));
    const auto r = answer();
    ASSERT_TRUE(r.error);
    EXPECT_EQ(r.error->kind, guest_error_kind::return_type_mismatch);
}

TEST_F(HostServices, AnswersAFunctionThatThrowsWithHostFunctionErrorAndItsMessage) {
    services.register_function("Fails", make_host_function([]() -> std::int32_t { throw std::runtime_error("no disk"); }));
    services.register_function("Odd", make_host_function([]() -> std::int32_t { throw 42; }));
    guest_calls("Fails", value_type::int32);
    EXPECT_FALSE(services.serve(buffers, call));
    auto r = answer();
    ASSERT_TRUE(r.error);
    EXPECT_EQ(r.error->kind, guest_error_kind::host_function_error);
    EXPECT_NE(r.error->message.find("host function 'Fails' failed: no disk"), std::string::npos) << r.error->message;

    guest_calls("Odd", value_type::int32);
    EXPECT_FALSE(services.serve(buffers, call));
    r = answer();
    ASSERT_TRUE(r.error);
    EXPECT_NE(r.error->message.find("failed with a non-standard exception"), std::string::npos) << r.error->message;
    EXPECT_FALSE(services.in_callback()) << "a function that throws still leaves the callback";
}

TEST_F(HostServices, RegisteringANameAgainReplacesTheFunction) {
    services.register_function("Value", make_host_function([] { return std::int32_t{1}; }));
    services.register_function("Value", make_host_function([] { return std::int32_t{2}; }));
    guest_calls("Value", value_type::int32);
    EXPECT_FALSE(services.serve(buffers, call));
    EXPECT_EQ(std::get<std::int32_t>(answer().value), 2);
}

TEST_F(HostServices, AFunctionThatReplacesItselfFinishesItsOwnCall) {
    const std::string kept = "still here";
    services.register_function("Self", make_host_function([this, kept] {
                                   services.register_function("Self", make_host_function([] { return std::string("new"); }));
                                   return kept;  // a capture of the function being replaced
                               }));
    guest_calls("Self", value_type::string);
    EXPECT_FALSE(services.serve(buffers, call));
    EXPECT_EQ(std::get<std::string>(answer().value), "still here");
    guest_calls("Self", value_type::string);
    EXPECT_FALSE(services.serve(buffers, call));
    EXPECT_EQ(std::get<std::string>(answer().value), "new");
}

TEST_F(HostServices, IsInsideACallbackExactlyWhileAFunctionRuns) {
    bool inside = false;
    services.register_function("Probe", make_host_function([&] { inside = services.in_callback(); }));
    EXPECT_FALSE(services.in_callback());
    guest_calls("Probe", value_type::void_type);
    EXPECT_FALSE(services.serve(buffers, call));
    EXPECT_TRUE(inside);
    EXPECT_FALSE(services.in_callback());
}

TEST_F(HostServices, PoisonsOnAHostCallThatIsNotAFunctionCall) {
    guest_prints("these bytes are no FlatBuffer");
    try {
        services.serve(buffers, call);
        FAIL() << "no exception";
    } catch (const poisoning& p) {
        EXPECT_EQ(p.failure(), errc::protocol_error);
        EXPECT_NE(p.reason().find("bad host call from the guest"), std::string::npos) << p.reason();
    }
}

TEST_F(HostServices, PoisonsOnAHostCallWhoseHeaderClaimsMoreThanTheBuffer) {
    memory.write(layout.output(), hl_buffer_header{1u << 20});
    try {
        services.serve(buffers, call);
        FAIL() << "no exception";
    } catch (const poisoning& p) {
        EXPECT_EQ(p.failure(), errc::protocol_error);
    }
}

}  // namespace
}  // namespace hl::detail
