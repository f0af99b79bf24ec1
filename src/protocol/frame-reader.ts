// Frames typed protocol messages out of a byte stream (1-byte type, Int32 length incl. itself).
// Messages inside one chunk are handed out as views of that chunk, never copied; only a message
// split across chunks is assembled, in a buffer that grows by doubling and is never reused once a
// view of it has been handed out (socket.write keeps a reference until the bytes are sent).

/** The one empty buffer (a fresh Buffer.alloc(0) costs ~180 bytes of heap per holder). */
export const EMPTY = Buffer.alloc(0);

export class FrameReader {
  /** Bytes not yet consumed are buf[off, end). */
  buf: Buffer = EMPTY;
  off = 0;
  end = 0;
  /** Set by next(): the current message's type byte, its start (header) and end offsets in buf. */
  type = 0;
  start = 0;
  msgEnd = 0;
  /** After next() returned false because of a bad length: why. */
  error: string | null = null;
  private owned = false;

  /**
   * `types`: if given, the longest length allowed per message type (0: the type is not allowed, an
   * error at once, before its length is read).
   */
  constructor(
    private readonly maxLength: number,
    private readonly types: Uint32Array | null = null,
  ) {}

  push(chunk: Buffer): void {
    if (this.off === this.end) {
      this.buf = chunk;
      this.off = 0;
      this.end = chunk.length;
      this.owned = false;
      return;
    }
    const pending = this.end - this.off;
    const need = pending + chunk.length;
    if (this.owned && this.buf.length - this.end >= chunk.length) {
      chunk.copy(this.buf, this.end);
      this.end += chunk.length;
      return;
    }
    const next = Buffer.allocUnsafe(Math.max(need, this.owned ? this.buf.length * 2 : 0, 4096));
    this.buf.copy(next, 0, this.off, this.end);
    chunk.copy(next, pending);
    this.buf = next;
    this.off = 0;
    this.end = need;
    this.owned = true;
  }

  /** Puts bytes back in front of the unconsumed ones (a batch to be sent again elsewhere). */
  unshift(bytes: Buffer): void {
    const pending = this.end - this.off;
    const next = Buffer.allocUnsafe(Math.max(bytes.length + pending, 4096));
    bytes.copy(next, 0);
    this.buf.copy(next, bytes.length, this.off, this.end);
    this.buf = next;
    this.off = 0;
    this.end = bytes.length + pending;
    this.owned = true;
  }

  /** Advances to the next complete message at `off`; false when more bytes are needed or on error. */
  next(): boolean {
    const avail = this.end - this.off;
    this.error = this.refusal();
    if (this.error !== null || avail < 5) return false;
    const len = this.buf.readInt32BE(this.off + 1);
    if (avail < len + 1) return false;
    this.type = this.buf[this.off];
    this.start = this.off;
    this.msgEnd = this.off + 1 + len;
    this.off = this.msgEnd;
    return true;
  }

  /**
   * Why the next pending message is refused, as soon as that can be known (its type byte, then its
   * length word), or null. As PostgreSQL: nothing waits for the body of a message it would refuse.
   */
  refusal(): string | null {
    const avail = this.end - this.off;
    if (avail === 0) return null;
    const type = this.buf[this.off];
    const limit = this.types === null ? this.maxLength : Math.min(this.types[type], this.maxLength);
    if (limit === 0) return `invalid frontend message type ${type}`;
    if (avail < 5) return null;
    const len = this.buf.readInt32BE(this.off + 1);
    if (len < 4 || len > limit) return `invalid message length ${len} for message type 0x${type.toString(16)}`;
    return null;
  }

  /** The body of the current message (a view). */
  body(): Buffer {
    this.owned = false; // a view escapes: never write into this buffer again
    return this.buf.subarray(this.start + 5, this.msgEnd);
  }

  /** A view of buf[from, to): call with offsets of complete messages to forward them. */
  view(from: number, to: number): Buffer {
    this.owned = false;
    return this.buf.subarray(from, to);
  }

  /**
   * Copies unconsumed bytes out of a buffer the reader does not own (a reused read buffer), so
   * they survive the next read. Call when the chunk's callback is about to return.
   */
  detach(): void {
    if (this.off === this.end) {
      // Nothing pending: hold no buffer between reads (an idle client then costs no buffer).
      this.buf = EMPTY;
      this.off = this.end = 0;
      this.owned = false;
      return;
    }
    if (this.owned) return;
    const pending = this.end - this.off;
    // Exactly what is pending (a small copy comes from Node's shared pool): a client waiting for
    // a server with one query buffered holds that query, not a 4 kB buffer. push() grows it.
    const next = Buffer.allocUnsafe(pending);
    this.buf.copy(next, 0, this.off, this.end);
    this.buf = next;
    this.off = 0;
    this.end = pending;
    this.owned = true;
  }

  /** Bytes buffered that do not yet form a complete message. */
  get pending(): number {
    return this.end - this.off;
  }
}
