// SPDX-License-Identifier: Apache-2.0
// The JavaScript guest (Duktape) through the synchronous API: the script contract (Load, Call, Eval,
// the host object) and hostile scripts, each of which ends in a clear error and leaves the next
// request clean.
#include <gtest/gtest.h>

#include <chrono>
#include <optional>
#include <stdexcept>
#include <string>

#include "guest_paths.hpp"
#include "hl/hl.hpp"

namespace {

using hl::errc;

hl::sandbox_config engine_config() {
    hl::sandbox_config c;
    c.heap_size = 16u << 20;
    c.stack_size = 4u << 20;
    c.input_buffer_size = 64u << 10;
    c.output_buffer_size = 64u << 10;
    return c;
}

struct failure {
    errc code{};
    std::string message;
};

template <class F>
failure failure_of(F&& f) {
    try {
        f();
    } catch (const hl::error& e) {
        if (e.code().category() == hl::error_category()) return {static_cast<errc>(e.code().value()), e.what()};
        ADD_FAILURE() << "not an hl::errc: " << e.what();
    }
    return {};
}

class JsGuest : public ::testing::Test {
protected:
    void SetUp() override {
        HL_REQUIRE_KVM();
        auto u = hl::uninitialized_sandbox::from_file(HL_JSGUEST, engine_config());
        u.register_host_function("fetchUser", [](std::string id) -> std::string {
            if (id == "7") return R"({"id":7,"name":"Ada"})";
            throw std::runtime_error("no user " + id);
        });
        u.register_host_function("echo", [](std::string json) { return json; });
        u.register_host_function("garbage", [](std::string) { return std::string("{not json"); });
        u.register_host_function("add", [](std::int32_t a, std::int32_t b) { return a + b; });
        sb.emplace(std::move(u).evolve());
    }

    void load(const std::string& source, const std::string& name = "handlers.js") {
        sb->call<void>("Load", name, source);
    }
    std::string call(const std::string& fn, const std::string& json = "null") {
        return sb->call<std::string>("Call", fn, json);
    }
    std::string eval(const std::string& expression) { return sb->call<std::string>("Eval", expression); }

    std::optional<hl::multi_use_sandbox> sb;
};

TEST_F(JsGuest, CallsAFunctionWithJsonInAndOut) {
    load(R"(
        function total(order) {
            var sum = 0;
            for (var i = 0; i < order.items.length; i++) sum += order.items[i].price * order.items[i].qty;
            return { id: order.id, total: sum, names: order.items.map(function (x) { return x.name; }) };
        })");
    EXPECT_EQ(call("total", R"({"id":3,"items":[{"name":"a","price":2,"qty":3},{"name":"b","price":1.5,"qty":2}]})"),
              R"({"id":3,"total":9,"names":["a","b"]})");
    EXPECT_EQ(call("total", R"({"id":4,"items":[]})"), R"({"id":4,"total":0,"names":[]})");
}

TEST_F(JsGuest, UndefinedReadsAsNullAndStringsSurviveUnicode) {
    load("function nothing() {} function same(x) { return x; }");
    EXPECT_EQ(call("nothing"), "null");
    EXPECT_EQ(call("same", R"("h\u00e9llo \ud83d\ude00")"), "\"h\xc3\xa9llo \xf0\x9f\x98\x80\"");
    // Raw UTF-8 in, the same out; a lone surrogate, which UTF-8 cannot hold, reads as U+FFFD.
    EXPECT_EQ(call("same", "\"\xf0\x9f\x98\x80\""), "\"\xf0\x9f\x98\x80\"");
    EXPECT_EQ(call("same", R"(["\ud83d", "\ude00x"])"), "[\"\xef\xbf\xbd\",\"\xef\xbf\xbdx\"]");
}

TEST_F(JsGuest, EvaluatesExpressions) {
    EXPECT_EQ(eval("1 + 2"), "3");
    EXPECT_EQ(eval("{a: [1, 'x']}"), R"({"a":[1,"x"]})");
    EXPECT_EQ(eval("undefined"), "null");
    load("var greeting = 'hi';");
    EXPECT_EQ(eval("greeting + '!'  // a trailing comment"), R"("hi!")");
}

TEST_F(JsGuest, SyntaxErrorsNameTheScriptAndLine) {
    const auto f = failure_of([&] { load("var ok = 1;\nfunction broken( {", "bad.js"); });
    EXPECT_EQ(f.code, errc::guest_error);
    EXPECT_NE(f.message.find("SyntaxError"), std::string::npos) << f.message;
    EXPECT_NE(f.message.find("bad.js"), std::string::npos) << f.message;
    EXPECT_NE(f.message.find(":2"), std::string::npos) << f.message;
    EXPECT_EQ(failure_of([&] { eval("1 +"); }).code, errc::guest_error);
    // The engine is intact: a good script loads afterwards.
    load("function one() { return 1; }");
    EXPECT_EQ(call("one"), "1");
}

TEST_F(JsGuest, ErrorsCarryMessageAndStack) {
    load("function inner(x) { return x.missing.deeper; }\nfunction outer(x) { return inner(x); }", "stack.js");
    const auto f = failure_of([&] { call("outer", "{}"); });
    EXPECT_EQ(f.code, errc::guest_error);
    EXPECT_NE(f.message.find("TypeError"), std::string::npos) << f.message;
    EXPECT_NE(f.message.find("inner"), std::string::npos) << f.message;
    EXPECT_NE(f.message.find("outer"), std::string::npos) << f.message;
    EXPECT_NE(f.message.find("stack.js:1"), std::string::npos) << f.message;
}

TEST_F(JsGuest, NonErrorThrowsAreDescribed) {
    load(R"(
        function number() { throw 42; }
        function object() { throw {code: 7}; }
        function nothing() { throw null; }
        function cyclic() { var o = {}; o.self = o; throw o; }
        function fake() { var e = new Error('x'); Object.defineProperty(e, 'stack', {get: function () { throw 1; }}); throw e; })");
    EXPECT_NE(failure_of([&] { call("number"); }).message.find("uncaught non-error value: 42"), std::string::npos);
    EXPECT_NE(failure_of([&] { call("object"); }).message.find(R"(uncaught non-error value: {"code":7})"),
              std::string::npos);
    EXPECT_NE(failure_of([&] { call("nothing"); }).message.find("uncaught non-error value: null"), std::string::npos);
    EXPECT_NE(failure_of([&] { call("cyclic"); }).message.find("uncaught non-error value: [object Object]"),
              std::string::npos);
    const auto f = failure_of([&] { call("fake"); });
    EXPECT_EQ(f.code, errc::guest_error);
    EXPECT_NE(f.message.find("cannot be read"), std::string::npos) << f.message;
    EXPECT_EQ(eval("'still fine'"), R"("still fine")");
}

TEST_F(JsGuest, MissingFunctionsAndBadArgumentsAreClear) {
    load("var notAFunction = 3; function f(x) { return x; }");
    auto f = failure_of([&] { call("nope"); });
    EXPECT_EQ(f.code, errc::unknown_function);
    EXPECT_NE(f.message.find("no function 'nope' in the script (it is undefined)"), std::string::npos) << f.message;
    f = failure_of([&] { call("notAFunction"); });
    EXPECT_EQ(f.code, errc::unknown_function);
    EXPECT_NE(f.message.find("no function 'notAFunction'"), std::string::npos) << f.message;
    f = failure_of([&] { call("f", "{oops"); });
    EXPECT_EQ(f.code, errc::guest_error);
    EXPECT_NE(f.message.find("the argument of 'f' is not valid JSON"), std::string::npos) << f.message;
    EXPECT_EQ(call("f", "[1]"), "[1]");
}

TEST_F(JsGuest, ResultsJsonCannotEncodeAreRefused) {
    load(R"(
        function fn() { return function () {}; }
        function cyclic() { var o = {}; o.o = o; return o; }
        function throwingToJson() { return { toJSON: function () { throw new Error('no'); } }; }
        function nan() { return [NaN, Infinity]; })");
    auto f = failure_of([&] { call("fn"); });
    EXPECT_EQ(f.code, errc::guest_error);
    EXPECT_NE(f.message.find("the result of 'fn' cannot be encoded as JSON"), std::string::npos) << f.message;
    f = failure_of([&] { call("cyclic"); });
    EXPECT_NE(f.message.find("the result of 'cyclic' cannot be encoded as JSON"), std::string::npos) << f.message;
    f = failure_of([&] { call("throwingToJson"); });
    EXPECT_NE(f.message.find("cannot be encoded as JSON"), std::string::npos) << f.message;
    EXPECT_EQ(call("nan"), "[null,null]");  // what JSON.stringify makes of them
}

TEST_F(JsGuest, ScriptsCallHostFunctions) {
    load(R"(
        function user(id) { return host.fetchUser(id).name; }
        function echo(x) { return host.echo(x); }
        function missing() { try { host.noSuchFunction(1); } catch (e) { return String(e.message); } }
        function uncaught() { return host.noSuchFunction(1); }
        function thrower() { try { host.fetchUser(8); } catch (e) { return e.message; } }
        function twoArgs() { return host.echo(1, 2); }
        function badArg() { return host.echo(function () {}); }
        function garbage() { return host.garbage(); }
        function typed() { return host.add(1); }
        function replace() { host = null; return typeof host; }
        function extend() { host.evil = 1; })");
    EXPECT_EQ(call("user", "7"), R"("Ada")");
    EXPECT_EQ(call("echo", R"({"a":[1,2,{"b":null}]})"), R"({"a":[1,2,{"b":null}]})");
    EXPECT_NE(call("missing").find("host function 'noSuchFunction' failed"), std::string::npos);
    auto f = failure_of([&] { call("uncaught"); });
    EXPECT_EQ(f.code, errc::guest_error);
    EXPECT_NE(f.message.find("host function 'noSuchFunction' failed"), std::string::npos) << f.message;
    EXPECT_NE(call("thrower").find("no user 8"), std::string::npos);
    f = failure_of([&] { call("twoArgs"); });
    EXPECT_NE(f.message.find("host.echo takes one argument"), std::string::npos) << f.message;
    f = failure_of([&] { call("badArg"); });
    EXPECT_NE(f.message.find("the argument of host.echo cannot be encoded as JSON"), std::string::npos) << f.message;
    f = failure_of([&] { call("garbage"); });
    EXPECT_NE(f.message.find("SyntaxError"), std::string::npos) << f.message;
    f = failure_of([&] { call("typed"); });  // add takes two int32s, not a string
    EXPECT_EQ(f.code, errc::guest_error);
    EXPECT_NE(f.message.find("host function 'add' failed"), std::string::npos) << f.message;
    EXPECT_EQ(call("replace"), R"("object")");  // host is read-only: the assignment does nothing
    f = failure_of([&] { call("extend"); });
    EXPECT_NE(f.message.find("host is read-only"), std::string::npos) << f.message;
    EXPECT_EQ(call("user", "7"), R"("Ada")");
}

TEST_F(JsGuest, UnboundedRecursionIsACatchableError) {
    load(R"(
        function down(n) { return down(n + 1) + 1; }
        function caught() { try { down(0); } catch (e) { return e.name; } }
        function viaNative(n) { return [n].map(function (x) { return viaNative(x + 1); }); })");
    auto f = failure_of([&] { call("down", "0"); });
    EXPECT_EQ(f.code, errc::guest_error);
    EXPECT_NE(f.message.find("RangeError"), std::string::npos) << f.message;
    EXPECT_EQ(call("caught"), R"("RangeError")");
    // Recursion through native functions uses the C stack: Duktape's own limit comes first.
    f = failure_of([&] { call("viaNative", "0"); });
    EXPECT_EQ(f.code, errc::guest_error) << f.message;
    EXPECT_NE(f.message.find("RangeError"), std::string::npos) << f.message;
    EXPECT_EQ(eval("1"), "1");
}

// Deep nesting recurses in the engine's C code (compiler, JSON, regular expressions): with the
// script pool's 4 MiB stack, each of Duktape's recursion limits comes before the stack's end.
TEST_F(JsGuest, DeepNestingHitsTheEnginesLimitsNotTheStack) {
    load("function same(x) { return x; }");
    const struct {
        const char* what;
        std::string expression;
    } cases[] = {
        {"nested source", std::string(20000, '[') + std::string(20000, ']')},
        {"nested parentheses", std::string(20000, '(') + "1" + std::string(20000, ')')},
        {"deep JSON.stringify", "(function () { var a = []; for (var i = 0; i < 100000; i++) a = [a]; "
                                "return JSON.stringify(a).length; })()"},
        {"regular expression", "/(a|b|c|d)*x/.test(new Array(50000).join('a'))"},
        {"nested regular expression", "/((((a*)*)*)*)*b/.test(new Array(30).join('a'))"},
    };
    for (const auto& c : cases) {
        const auto f = failure_of([&] { sb->call_for<std::string>(std::chrono::seconds(10), "Eval", c.expression); });
        EXPECT_EQ(f.code, errc::guest_error) << c.what << ": " << f.message;
        EXPECT_NE(f.message.find("recursion limit"), std::string::npos) << c.what << ": " << f.message;
    }
    const auto f = failure_of([&] { call("same", std::string(20000, '[') + std::string(20000, ']')); });
    EXPECT_NE(f.message.find("the argument of 'same' is not valid JSON: RangeError: decode recursion limit"),
              std::string::npos)
        << f.message;
    EXPECT_EQ(call("same", "[[1]]"), "[[1]]");
}

TEST_F(JsGuest, AllocationWithoutEndIsOutOfMemoryAndTheEngineRecovers) {
    load(R"(
        function hog() { var all = []; for (;;) all.push(new Array(100000).join('x') + all.length); }
        function small() { return new Array(1000).join('y').length; })");
    const auto snap = sb->snapshot();
    const auto f = failure_of([&] { call("hog"); });
    EXPECT_EQ(f.code, errc::out_of_memory) << f.message;
    EXPECT_NE(f.message.find("ran out of memory"), std::string::npos) << f.message;
    // Without a restore, the engine collected the garbage and goes on.
    EXPECT_EQ(call("small"), "999");
    sb->restore(snap);
    EXPECT_EQ(call("small"), "999");
}

TEST_F(JsGuest, AnEndlessLoopIsStoppedByTheDeadline) {
    load("function spin() { for (;;) {} } function ok() { return 'ok'; }");
    const auto snap = sb->snapshot();
    const auto f = failure_of([&] {
        sb->call_for<std::string>(std::chrono::milliseconds(50), "Call", std::string("spin"), std::string("null"));
    });
    EXPECT_EQ(f.code, errc::timed_out) << f.message;
    EXPECT_EQ(failure_of([&] { call("ok"); }).code, errc::poisoned);
    sb->restore(snap);
    EXPECT_EQ(call("ok"), R"("ok")");
}

TEST_F(JsGuest, ARestoreForgetsWhatARequestDid) {
    load("var hits = 0; function hit(x) { hits += 1; globalThisLeak = x; return hits; }");
    const auto snap = sb->snapshot();
    EXPECT_EQ(call("hit", R"("secret")"), "1");
    EXPECT_EQ(call("hit", "0"), "2");
    sb->restore(snap);
    EXPECT_EQ(call("hit", "1"), "1");
    sb->restore(snap);
    EXPECT_EQ(eval("typeof globalThisLeak"), R"("undefined")");
}

TEST_F(JsGuest, NothingReachesOutside) {
    // Duktape has no I/O: no require, no print to a file, no process.
    EXPECT_EQ(eval("typeof require"), R"("undefined")");
    EXPECT_EQ(eval("typeof process"), R"("undefined")");
    EXPECT_EQ(eval("typeof Duktape.modSearch"), R"("undefined")");
    // What it does have answers from inside the sandbox.
    EXPECT_EQ(eval("typeof Date.now()"), R"("number")");
    EXPECT_EQ(eval("Math.random() < 1"), "true");
}

TEST_F(JsGuest, OversizedArgumentsAndResultsAreRefused) {
    load("function big(n) { return new Array(n + 1).join('z'); }");
    auto f = failure_of([&] { call("big", "100000"); });  // 100 KB does not fit the 64 KiB output buffer
    EXPECT_EQ(f.code, errc::result_too_large) << f.message;
    f = failure_of([&] { call("big", std::string(70000, ' ') + "1"); });
    EXPECT_EQ(f.code, errc::argument_too_large) << f.message;
    EXPECT_EQ(call("big", "3"), R"("zzz")");
}

}  // namespace
