// One read buffer per thread for every plain socket (Node's `onread` option): reads skip the
// stream machinery and allocate nothing. Safe because callbacks run one at a time and whatever
// outlives a callback is copied (FrameReader.detach) or makes the next read use a fresh buffer
// (a write that did not complete at once still points into it: see writeView).

import type net from 'node:net';

const READ_SIZE = 64 * 1024;
let current = Buffer.allocUnsafe(READ_SIZE);
let retained = false;

/** The buffer the next read goes into. */
export function readBuffer(): Buffer {
  if (retained) {
    current = Buffer.allocUnsafe(READ_SIZE);
    retained = false;
  }
  return current;
}

/** Writes bytes that may be a view of the read buffer; returns socket.write's answer. */
export function writeView(sock: net.Socket, data: Buffer): boolean {
  const ok = sock.write(data);
  // Queued rather than written through: the socket keeps pointing at these bytes.
  if (sock.writableLength > 0) retained = true;
  return ok;
}

/** `onread` options for a plain socket whose reads go to handler(this socket, bytes). */
export function onreadOptions(callback: (this: net.Socket, nread: number, buf: Buffer) => boolean | void): {
  buffer: () => Buffer;
  callback: (nread: number, buf: Buffer) => boolean | void;
} {
  return { buffer: readBuffer, callback: callback as (nread: number, buf: Buffer) => boolean | void };
}
