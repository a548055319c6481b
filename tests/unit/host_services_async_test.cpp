// SPDX-License-Identifier: Apache-2.0
// Host functions with an asynchronous form: a sliced call leaves the request pending, and answer()
// writes what came back.
#include "sandbox/host_services.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>

#include "host_services_support.hpp"

namespace hl::detail {
namespace {

using protocol::guest_error_kind;

// `Double` with both forms; `invoked` counts the blocking one.
host_function doubling(int& invoked) {
    host_function fn = make_host_function([&invoked](std::int32_t x) {
        ++invoked;
        return 2 * x;
    });
    fn.start_async = [](std::span<const argument>, std::function<void(host_function::outcome)>) {
        return std::function<void()>();
    };
    return fn;
}

class AsyncHostServices : public test::host_services_test {
protected:
    // The guest calls Double(21) in a sliced call; true if the request was left pending.
    bool double_21_pending() {
        services.register_function("Double", doubling(invoked));
        call.how = call_state::mode::sliced;
        const argument args[] = {std::int32_t{21}};
        guest_calls("Double", value_type::int32, args);
        return services.serve(buffers, call);
    }
    int invoked = 0;
};

TEST_F(AsyncHostServices, LeavesTheRequestPendingInASlicedCall) {
    EXPECT_TRUE(double_21_pending());
    EXPECT_EQ(invoked, 0);
    EXPECT_EQ(call.at.load(), call_state::phase::host_call);
    EXPECT_EQ(call.pending.name, "Double");
    ASSERT_EQ(call.pending.call.arguments.size(), 1u);
    EXPECT_EQ(std::get<std::int32_t>(call.pending.call.arguments[0]), 21);
}

TEST_F(AsyncHostServices, RunsTheBlockingFormInACallToTheEnd) {
    services.register_function("Double", doubling(invoked));
    const argument args[] = {std::int32_t{21}};
    guest_calls("Double", value_type::int32, args);
    EXPECT_FALSE(services.serve(buffers, call));
    EXPECT_EQ(invoked, 1);
    EXPECT_EQ(std::get<std::int32_t>(answer().value), 42);
    EXPECT_EQ(call.at.load(), call_state::phase::ready);
}

TEST_F(AsyncHostServices, AnswersThePendingRequestWithTheValueThatCameBack) {
    ASSERT_TRUE(double_21_pending());
    call.answer.value = std::int32_t{42};
    call.answered.store(call_state::answer_state::ready);
    services.answer(buffers, call);
    EXPECT_EQ(std::get<std::int32_t>(answer().value), 42);
    EXPECT_EQ(call.at.load(), call_state::phase::ready);
    EXPECT_EQ(call.answered.load(), call_state::answer_state::none);
    EXPECT_EQ(call.pending.function, nullptr) << "the request is let go once answered";
}

TEST_F(AsyncHostServices, AnswersAPendingRequestThatFailedWithHostFunctionError) {
    ASSERT_TRUE(double_21_pending());
    call.answer.failure = "the coroutine threw";
    services.answer(buffers, call);
    const auto r = answer();
    ASSERT_TRUE(r.error);
    EXPECT_EQ(r.error->kind, guest_error_kind::host_function_error);
    EXPECT_NE(r.error->message.find("host function 'Double' failed: the coroutine threw"), std::string::npos)
        << r.error->message;
    EXPECT_EQ(call.at.load(), call_state::phase::ready);
}

TEST_F(AsyncHostServices, RefusesAnAnswerOfAnotherTypeThanTheFunctionReturns) {
    ASSERT_TRUE(double_21_pending());
    call.answer.value = std::string("forty-two");
    services.answer(buffers, call);
    const auto r = answer();
    ASSERT_TRUE(r.error);
    EXPECT_EQ(r.error->kind, guest_error_kind::host_function_error);
    EXPECT_NE(r.error->message.find("answered with string; it returns int32"), std::string::npos) << r.error->message;
}

}  // namespace
}  // namespace hl::detail
