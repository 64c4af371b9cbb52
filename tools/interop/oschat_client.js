// An OSChat client on npm `osc` (osc.js) UDPPort, for oschat_scenarios.py (scenario o4).
//
// It listens on the OSChat port itself, as an OSChat client does (0.0.0.0:PORT, broadcast
// on), broadcasts to 127.255.255.255:PORT a hello, a join, a chat message and three list
// requests, and prints every packet it hears as `RECV <json>` (osc.js's own decoding with
// metadata: every argument as {type, value}) and every packet it sends as `SENT <json>`.
//
// osc.js 2.4 creates its UDP socket without SO_REUSEADDR (there is no option for it), so a
// plain UDPPort cannot bind a port that oscgate already holds. The script tries that first and
// prints `PLAIN <outcome>`; when it fails with EADDRINUSE it makes the socket itself
// (dgram `reuseAddr: true`, which is enough for Linux to share a UDP port with oscgate's
// SO_REUSEADDR socket) and hands it to osc.UDPPort through the `socket` option, which osc.js
// supports. It prints `BOUND plain` or `BOUND shared` accordingly.
//
// It exits 0 (after `DONE`) once it heard a reply for each of the three list requests and then
// nothing new for 300 ms; 1 on timeout (5 s); 3 on a socket error.
//
// Usage: node oschat_client.js PORT USER ROOM

"use strict";

const dgram = require("dgram");
const osc = require("osc");

const [portArg, user, room] = process.argv.slice(2);
if (room === undefined) {
    console.error("usage: node oschat_client.js PORT USER ROOM");
    process.exit(64);
}
const port = Number(portArg);
const BROADCAST = "127.255.255.255";
const i = (value) => ({ type: "i", value });
const s = (value) => ({ type: "s", value });

// What is sent, in order; the three list requests are answered by the node.
const outgoing = [
    { address: `/oschat/hello/${user}`, args: [i(21)] },
    { address: `/oschat/join/${room}/${user}`, args: [i(22)] },
    { address: `/oschat/message/${room}`, args: [s("hi from osc.js"), s(user), i(23)] },
    { address: "/oschat/list/users", args: [i(24)] },
    { address: `/oschat/list/users/${room}`, args: [i(25)] },
    { address: "/oschat/list/rooms", args: [i(26)] },
];
const awaited = new Set(["/oschat/list/users 24", `/oschat/list/users/${room} 25`, "/oschat/list/rooms 26"]);

let quietTimer = null;

const exit = (code, why) => {
    console.log(why);
    process.exit(code);
};

const run = (udp) => {
    udp.on("message", (message) => {
        console.log("RECV " + JSON.stringify(message));
        // A reply: the request's address and sequence, then a name (,is).
        const a = message.args;
        if (a.length === 2 && a[0].type === "i" && a[1].type === "s") {
            awaited.delete(`${message.address} ${a[0].value}`);
        }
        if (awaited.size === 0) {
            clearTimeout(quietTimer);
            quietTimer = setTimeout(() => exit(0, "DONE"), 300);
        }
    });
    udp.on("error", (err) => exit(3, "ERROR " + (err && err.message ? err.message : err)));
    for (const m of outgoing) {
        console.log("SENT " + JSON.stringify(m));
        udp.send(m, BROADCAST, port);
    }
};

const shared = () => {
    const sock = dgram.createSocket({ type: "udp4", reuseAddr: true });
    sock.on("error", (err) => exit(3, "ERROR " + err.message));
    sock.bind(port, "0.0.0.0", () => {
        sock.setBroadcast(true);
        console.log("BOUND shared");
        // Given a socket, osc.UDPPort opens at once and is ready.
        run(new osc.UDPPort({ socket: sock, metadata: true }));
    });
};

const plain = new osc.UDPPort({ localAddress: "0.0.0.0", localPort: port, broadcast: true, metadata: true });
plain.once("error", (err) => {
    console.log("PLAIN " + (err && err.code ? err.code : String(err)));
    if (err && err.code === "EADDRINUSE") {
        try {
            plain.close();
        } catch (_e) {
            // The socket never bound; nothing to close.
        }
        shared();
    } else {
        exit(3, "ERROR " + (err && err.message ? err.message : err));
    }
});
plain.once("ready", () => {
    console.log("PLAIN ok");
    console.log("BOUND plain");
    run(plain);
});
plain.open();

setTimeout(() => exit(1, "TIMEOUT"), 5000).unref();
