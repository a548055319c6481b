// SPDX-License-Identifier: Apache-2.0
// The demo's JavaScript handlers (06_server --js): POST /js/<function> calls <function> with the
// request body, parsed as JSON, and answers its result as JSON. Each request runs in a pooled
// sandbox restored to the snapshot taken right after this file was loaded. Duktape runs ES5.1.

// An order's lines and total.
function order(input) {
    var total = 0;
    var lines = [];
    for (var i = 0; i < input.items.length; i++) {
        var item = input.items[i];
        total += item.price * item.qty;
        lines.push(item.qty + ' x ' + item.sku);
    }
    return { id: input.id, total: total, lines: lines };
}

function escapeHtml(text) {
    return String(text).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

// A user's page, from the host's user directory (an async host function with database latency).
function profile(input) {
    var user = host.fetchUser(input.user);
    if (user === null) throw new Error('no such user: ' + input.user);
    return { html: '<h1>' + escapeHtml(user.name) + '</h1><p>' + escapeHtml(user.about) + '</p>' };
}
