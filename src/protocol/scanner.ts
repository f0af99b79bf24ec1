// Watches a stream of typed messages that is forwarded chunk by chunk, unchanged: it keeps track of
// message boundaries across chunks and hands out the bodies of only the message types asked for
// (ReadyForQuery, ErrorResponse, ParameterStatus …). Everything else is skipped without copying.

export interface ScanSink {
  onMessage(type: number, body: Buffer): void;
}

export class MessageScanner {
  private readonly hdr = Buffer.alloc(5);
  private hdrLen = 0;
  /** Body bytes of the current message still to come. */
  private remaining = 0;
  private curType = 0;
  private collect: Buffer | null = null;
  private collected = 0;
  /** Why scanning stopped (a bad length or type); the stream is unusable after that. */
  error: string | null = null;
  /** Where in the failing chunk the bad message began (what precedes it is whole messages or their ends). */
  errorAt = 0;

  /**
   * `wanted[type] = 1` for each message type whose body the sink needs; `valid[type] = 1` for each
   * type the stream may carry (null: any). A watched body longer than `watchMax` is handed over cut
   * to its first `watchMax` bytes (when split across reads), so a hostile length costs no more.
   */
  constructor(
    private readonly wanted: Uint8Array,
    private readonly maxLength: number,
    private readonly valid: Uint8Array | null = null,
    private readonly watchMax = 1 << 20,
  ) {}

  static want(types: string): Uint8Array {
    const w = new Uint8Array(256);
    for (const t of types) w[t.charCodeAt(0)] = 1;
    return w;
  }

  /** Returns false on a framing error (see `error`). */
  scan(chunk: Buffer, sink: ScanSink): boolean {
    let i = 0;
    const n = chunk.length;
    while (i < n) {
      if (this.remaining > 0) {
        const take = Math.min(this.remaining, n - i);
        if (this.collect) {
          const room = this.collect.length - this.collected;
          if (room > 0) chunk.copy(this.collect, this.collected, i, i + Math.min(take, room));
          this.collected += Math.min(take, room);
        }
        i += take;
        this.remaining -= take;
        if (this.remaining === 0 && this.collect) {
          const body = this.collect;
          this.collect = null;
          sink.onMessage(this.curType, body);
        }
        continue;
      }
      let type: number;
      let len: number;
      const start = i - this.hdrLen;
      if (this.hdrLen === 0 && n - i >= 5) {
        type = chunk[i];
        len = chunk.readInt32BE(i + 1);
        i += 5;
      } else {
        while (this.hdrLen < 5 && i < n) this.hdr[this.hdrLen++] = chunk[i++];
        if (this.hdrLen < 5) return true;
        this.hdrLen = 0;
        type = this.hdr[0];
        len = this.hdr.readInt32BE(1);
      }
      if (len < 4 || len > this.maxLength || (type === 0x5a && len !== 5)) {
        this.error = `invalid message length ${len} for message type 0x${type.toString(16)}`;
        this.errorAt = Math.max(0, start);
        return false;
      }
      if (this.valid !== null && this.valid[type] === 0) {
        this.error = `invalid message type 0x${type.toString(16)}`;
        this.errorAt = Math.max(0, start);
        return false;
      }
      const bodyLen = len - 4;
      if (this.wanted[type] === 1) {
        if (n - i >= bodyLen) {
          sink.onMessage(type, chunk.subarray(i, i + bodyLen));
          i += bodyLen;
          continue;
        }
        this.collect = Buffer.allocUnsafe(Math.min(bodyLen, this.watchMax));
        this.collected = 0;
        this.curType = type;
      }
      this.remaining = bodyLen;
    }
    return true;
  }

  /**
   * When a chunk ended inside a 5-byte header: forget those bytes (returns how many) so the caller
   * can hold them back and scan them again in front of the next chunk. Every message then starts
   * inside one forwarded chunk, which lets the caller drop whole small messages.
   */
  takePartialHeader(): number {
    const n = this.hdrLen;
    this.hdrLen = 0;
    return n;
  }

  /** True between messages (nothing partial pending). */
  get atBoundary(): boolean {
    return this.remaining === 0 && this.hdrLen === 0;
  }
}
