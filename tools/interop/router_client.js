// A tcposcrouter client on npm `osc` (osc.js) TCPSocketPort, which speaks SLIP, for
// router_scenarios.py (scenario r3).
//
// It registers with a string id, prints every packet it receives as `RECV <json>` (osc.js's
// own decoding with metadata: every argument as {type, value}; blobs as hex, 64-bit integers
// as decimal strings), and `SENT <hex>` for every packet it sends, so the harness can check
// that the router forwarded osc.js's bytes untouched.
//
// The exchange with the harness's python-osc peer, all over the router:
//   1. once it has the register reply (printed as REGISTERED) and the user list, send
//      /node/ready to the group, then wait for the peer's group messages, ending with /py/done;
//   2. then send a ping, a typed message, a bundle, a private message to the peer and
//      /node/done;
//   3. wait for /py/bye, close the connection and exit 0.
// Exit status 1: timeout (10 s); 2: refused (/oscrouter/error); 3: socket error; 4: the router
// closed the connection first.
//
// Usage: node router_client.js HOST PORT USER PASSWORD GROUP GROUP_PASSWORD ID PEER

"use strict";

const osc = require("osc");

const [host, port, user, password, group, groupPassword, id, peer] = process.argv.slice(2);
if (peer === undefined) {
    console.error("usage: node router_client.js HOST PORT USER PASSWORD GROUP GROUP_PASSWORD ID PEER");
    process.exit(64);
}
const replyAddress = `/oscrouter/register/${user}/${id}`;
const conn = new osc.TCPSocketPort({ address: host, port: Number(port), metadata: true });
let finished = false;
let registered = false;
let listed = false;
let ready = false;

const finish = (code, why) => {
    if (finished) {
        return;
    }
    finished = true;
    console.log(why);
    process.exitCode = code;
    conn.close();
    // close() ends the socket after what was written; exit once it is gone, or soon anyway.
    setTimeout(() => process.exit(code), 1000).unref();
};

const plain = (value) => {
    if (value instanceof Uint8Array) {
        return { blob: Buffer.from(value).toString("hex") };
    }
    if (value !== null && typeof value === "object" && typeof value.high === "number" &&
        typeof value.low === "number" && typeof value.toString === "function") {
        return { long: value.toString() };
    }
    return value;
};

const send = (packet) => {
    // What osc.js writes, before SLIP framing: the bytes the peer must receive.
    console.log("SENT " + Buffer.from(osc.writePacket(packet, { metadata: true })).toString("hex"));
    conn.send(packet);
};

const s = (value) => ({ type: "s", value });

const sendOurs = () => {
    send({ address: "/oscrouter/ping", args: [s(user)] });
    send({
        address: "/node/data",
        args: [
            { type: "i", value: 42 },
            { type: "f", value: 2.5 },
            s("from osc.js"),
            { type: "b", value: new Uint8Array([0xc0, 0xdb, 0x00, 0xff]) },
            { type: "h", value: osc.Long.fromString("-5000000000") },
            { type: "d", value: 0.1 },
            { type: "T", value: true },
            { type: "F", value: false },
            { type: "N", value: null },
        ],
    });
    send({
        timeTag: osc.timeTag(0),
        packets: [
            { address: "/node/inbundle", args: [{ type: "i", value: 1 }] },
            { address: "/node/inbundle", args: [s("two")] },
        ],
    });
    send({ address: "/oscrouter/private", args: [s(peer), s("/node/private"), { type: "i", value: 7 }] });
    send({ address: "/node/done", args: [] });
};

conn.on("osc", (packet) => {
    console.log("RECV " + JSON.stringify(packet, (_key, value) => plain(value)));
});

conn.on("message", (message) => {
    if (message.address === replyAddress) {
        console.log("REGISTERED");
        registered = true;
    } else if (message.address === "/oscrouter/userlist") {
        listed = true;
    } else if (message.address === "/oscrouter/error") {
        finish(2, "REFUSED");
    } else if (message.address === "/py/done") {
        sendOurs();
        console.log("SENT-ALL");
    } else if (message.address === "/py/bye") {
        finish(0, "BYE");
    }
    if (registered && listed && !ready) {
        // The peer sends only after this, so what it sends cannot overtake the user list.
        ready = true;
        send({ address: "/node/ready", args: [] });
    }
});

conn.on("ready", () => {
    send({ address: "/oscrouter/register", args: [s(user), s(password), s(group), s(groupPassword), s(id)] });
});

conn.on("error", (err) => {
    console.log("ERROR " + (err && err.message ? err.message : err));
    if (!finished) {
        finished = true;
        process.exit(3);
    }
});

conn.on("close", () => {
    if (!finished) {
        console.log("CLOSED");
        process.exit(4);
    }
    process.exit(process.exitCode);
});

setTimeout(() => {
    console.log("TIMEOUT");
    process.exit(1);
}, 10000).unref();

conn.open();
