import { afterEach, describe, expect, test } from "bun:test";
import net from "node:net";
import { splice } from "../../lib/tunnel/index.ts";
import { waitFor, within } from "../support/wait-for.ts";
import { closeServer, collect, listen, patternBytes } from "./tunnel-pair.ts";

// Two real TCP connections: the test holds the outer ends, splice() joins the inner ones, as the
// relay joins a user's socket to a tunnel stream.
interface Joined {
  /** The user-side socket of connection A and of connection B. */
  userA: net.Socket;
  userB: net.Socket;
  /** The spliced inner sockets. */
  innerA: net.Socket;
  innerB: net.Socket;
  done: Promise<void>;
}

const servers: net.Server[] = [];
const sockets: net.Socket[] = [];
afterEach(async () => {
  for (const socket of sockets.splice(0)) socket.destroy();
  await Promise.all(servers.splice(0).map(closeServer));
});

// The inner sockets are half-open capable, as node:http's upgraded sockets are. The user's end
// closes when it reads EOF (a client that is done), unless the test needs it to keep talking.
async function socketPair(userHalfOpen: boolean, innerHalfOpen = true): Promise<[outer: net.Socket, inner: net.Socket]> {
  const server = net.createServer({ allowHalfOpen: innerHalfOpen });
  servers.push(server);
  const inner = new Promise<net.Socket>((resolve) => server.once("connection", resolve));
  const port = await listen(server);
  const outer = net.connect({ port, host: "127.0.0.1", allowHalfOpen: userHalfOpen });
  outer.on("error", () => {});
  const innerSocket = await inner;
  innerSocket.on("error", () => {});
  sockets.push(outer, innerSocket);
  return [outer, innerSocket];
}

async function joined(userHalfOpen = false): Promise<Joined> {
  const [userA, innerA] = await socketPair(userHalfOpen);
  const [userB, innerB] = await socketPair(userHalfOpen);
  return { userA, userB, innerA, innerB, done: splice(innerA, innerB) };
}

describe("splice", () => {
  test("moves bytes both ways", async () => {
    const j = await joined();
    const atB = collect(j.userB);
    const atA = collect(j.userA);
    j.userA.write("hello from A");
    j.userB.write("hello from B");
    await waitFor("12 bytes at B", () => atB.bytes().length >= 12);
    await waitFor("12 bytes at A", () => atA.bytes().length >= 12);
    expect(atB.text()).toBe("hello from A");
    expect(atA.text()).toBe("hello from B");
    j.userA.destroy();
    await within("splice to resolve", j.done);
    await waitFor("B's user socket to close", () => atB.closed() || atB.ended());
    expect(j.innerA.destroyed && j.innerB.destroyed).toBe(true);
  });

  test("moves 4 MiB each way byte-exact", async () => {
    const j = await joined();
    const atB = collect(j.userB);
    const atA = collect(j.userA);
    const ab = Buffer.alloc(4 * 1024 * 1024, 0xab);
    const ba = Buffer.alloc(4 * 1024 * 1024, 0xba);
    j.userA.write(ab);
    j.userB.write(ba);
    await waitFor("4 MiB at B", () => atB.bytes().length === ab.length);
    await waitFor("4 MiB at A", () => atA.bytes().length === ba.length);
    expect(atB.bytes().equals(ab)).toBe(true);
    expect(atA.bytes().equals(ba)).toBe(true);
    j.userB.destroy();
    await within("splice to resolve", j.done);
  });

  test("a clean end of one direction ends the other side's writable half", async () => {
    const j = await joined(true);
    const atB = collect(j.userB);
    const atA = collect(j.userA);
    j.userA.end("last words");
    await waitFor("B to see end of stream", () => atB.ended());
    expect(atB.text()).toBe("last words");
    // B can still answer after A's EOF, as exec's stdout continues after stdin closes.
    j.userB.end("reply after EOF");
    await waitFor("A to receive the reply", () => atA.text() === "reply after EOF");
    await within("splice to resolve", j.done);
  });

  test("closing one side closes the other and resolves", async () => {
    const j = await joined();
    const atB = collect(j.userB);
    let resolved = false;
    void j.done.then(() => { resolved = true; });
    j.innerA.destroy();
    await waitFor("B's user socket to close", () => atB.closed() || atB.ended());
    await within("splice to resolve", j.done);
    expect(resolved).toBe(true);
    expect(j.innerB.destroyed).toBe(true);
  });

  test("the user hanging up on one side closes the other", async () => {
    const j = await joined();
    const atA = collect(j.userA);
    j.userB.destroy();
    await waitFor("A's user socket to close", () => atA.closed() || atA.ended());
    await within("splice to resolve", j.done);
    expect(j.innerA.destroyed).toBe(true);
  });

  test("an error on one side destroys both", async () => {
    const j = await joined();
    const atA = collect(j.userA);
    const atB = collect(j.userB);
    j.innerB.destroy(new Error("boom"));
    await within("splice to resolve", j.done);
    expect(j.innerA.destroyed).toBe(true);
    expect(j.innerB.destroyed).toBe(true);
    await waitFor("both user sockets to close", () => (atA.closed() || atA.ended()) && (atB.closed() || atB.ended()));
  });

  test("bytes still on their way when one side closes all reach the other side", async () => {
    // A kubectl cp over WebSocket: the API server writes the last of a tar and hangs up at once,
    // while the user's side is still reading earlier bytes.
    const [userA, innerA] = await socketPair(false);
    const [userB, innerB] = await socketPair(false, false);
    userA.pause();
    const done = splice(innerA, innerB);
    const payload = patternBytes(4 * 1024 * 1024);
    userB.end(payload);
    await waitFor("B's inner socket to close after its EOF", () => innerB.destroyed);
    const atA = collect(userA);
    userA.resume();
    await waitFor("all 4 MiB at A", () => atA.bytes().length >= payload.length);
    expect(atA.bytes().equals(payload)).toBe(true);
    await within("splice to resolve", done);
  });

  test("resolves only when both sides are closed", async () => {
    const j = await joined();
    const atA = collect(j.userA);
    const atB = collect(j.userB);
    let resolved = false;
    void j.done.then(() => { resolved = true; });
    // A round trip through both directions while both sides stay open.
    j.userA.write("x");
    await waitFor("A's byte at B", () => atB.text() === "x");
    j.userB.write("y");
    await waitFor("B's reply at A", () => atA.text() === "y");
    expect(resolved).toBe(false);
    j.userA.destroy();
    await within("splice to resolve", j.done);
    expect(j.innerA.destroyed && j.innerB.destroyed).toBe(true);
  });
});
