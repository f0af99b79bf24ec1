// Raw sockets for VRRP through koffi's FFI to libc (Node has no raw sockets): an IPv4 socket for IP
// protocol 112 (adverts, multicast or unicast) and a packet socket for gratuitous ARP frames. Needs
// CAP_NET_RAW. recvfrom blocks, so it runs as a koffi async call on libuv's thread pool with a
// receive timeout (SO_RCVTIMEO), leaving the HA thread's event loop free.

const AF_INET = 2;
const AF_PACKET = 17;
const SOCK_RAW = 3;
const SOL_SOCKET = 1;
const SO_RCVTIMEO = 20;
const SO_BINDTODEVICE = 25;
const IPPROTO_IP = 0;
const IP_TOS = 1;
const IP_TTL = 2;
const IP_MULTICAST_IF = 32;
const IP_MULTICAST_TTL = 33;
const IP_MULTICAST_LOOP = 34;
const IP_ADD_MEMBERSHIP = 35;
const ETH_P_ARP = 0x0806;

type AsyncFn = ((...args: unknown[]) => number) & { async(...args: unknown[]): void };

interface Libc {
  socket(domain: number, type: number, protocol: number): number;
  setsockopt(fd: number, level: number, name: number, value: Buffer, len: number): number;
  sendto: AsyncFn;
  recvfrom: AsyncFn;
  close(fd: number): number;
  if_nametoindex(name: string): number;
  errno(): number;
  strerror(n: number): string;
}

let libc: Libc | null = null;

function load(): Libc {
  if (libc) return libc;
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  const koffi = require('koffi');
  const lib = koffi.load('libc.so.6');
  const errnoLocation = lib.func('int *__errno_location()');
  libc = {
    socket: lib.func('int socket(int, int, int)'),
    setsockopt: lib.func('int setsockopt(int, int, int, const void *, uint32_t)'),
    sendto: lib.func('long sendto(int, const void *, size_t, int, const void *, uint32_t)'),
    recvfrom: lib.func('long recvfrom(int, _Out_ void *, size_t, int, _Out_ void *, _Inout_ uint32_t *)'),
    close: lib.func('int close(int)'),
    if_nametoindex: lib.func('unsigned int if_nametoindex(const char *)'),
    errno: () => koffi.decode(errnoLocation(), 'int') as number,
    strerror: lib.func('const char *strerror(int)'),
  };
  return libc;
}

function check(r: number, what: string): number {
  if (r < 0) {
    const l = load();
    const e = l.errno();
    throw new Error(`${what}: ${l.strerror(e)} (errno ${e})`);
  }
  return r;
}

const int32 = (v: number) => {
  const b = Buffer.alloc(4);
  b.writeInt32LE(v);
  return b;
};

function sockaddrIn(ip: string): Buffer {
  const b = Buffer.alloc(16);
  b.writeUInt16LE(AF_INET, 0);
  ip.split('.').forEach((p, i) => (b[4 + i] = Number(p)));
  return b;
}

export function ifIndex(name: string): number {
  const i = load().if_nametoindex(name);
  if (!i) throw new Error(`no network interface "${name}"`);
  return i;
}

/** An IPv4 raw socket for one IP protocol, bound to an interface. */
export class RawIpSocket {
  private fd: number;
  private closed = false;
  private readonly buf = Buffer.alloc(2048);
  private readonly from = Buffer.alloc(16);
  private readonly fromLen = new Uint32Array(1);

  constructor(
    readonly iface: string,
    protocol: number,
  ) {
    const l = load();
    this.fd = check(l.socket(AF_INET, SOCK_RAW, protocol), 'socket(AF_INET, SOCK_RAW)');
    try {
      const name = Buffer.from(`${iface}\0`);
      check(l.setsockopt(this.fd, SOL_SOCKET, SO_BINDTODEVICE, name, name.length), `SO_BINDTODEVICE ${iface}`);
      check(l.setsockopt(this.fd, IPPROTO_IP, IP_TOS, int32(0xc0), 4), 'IP_TOS');
      check(l.setsockopt(this.fd, IPPROTO_IP, IP_TTL, int32(255), 4), 'IP_TTL');
      check(l.setsockopt(this.fd, IPPROTO_IP, IP_MULTICAST_TTL, int32(255), 4), 'IP_MULTICAST_TTL');
      check(l.setsockopt(this.fd, IPPROTO_IP, IP_MULTICAST_LOOP, int32(0), 4), 'IP_MULTICAST_LOOP');
      const tv = Buffer.alloc(16);
      tv.writeBigInt64LE(0n, 0);
      tv.writeBigInt64LE(200_000n, 8); // 200 ms: how soon a closed socket's reader notices
      check(l.setsockopt(this.fd, SOL_SOCKET, SO_RCVTIMEO, tv, 16), 'SO_RCVTIMEO');
    } catch (e) {
      l.close(this.fd);
      throw e;
    }
  }

  /** Joins a multicast group on the interface (struct ip_mreqn: group, local address any, ifindex). */
  joinGroup(group: string): void {
    const m = Buffer.alloc(12);
    group.split('.').forEach((p, i) => (m[i] = Number(p)));
    m.writeInt32LE(ifIndex(this.iface), 8);
    const l = load();
    check(l.setsockopt(this.fd, IPPROTO_IP, IP_ADD_MEMBERSHIP, m, 12), `IP_ADD_MEMBERSHIP ${group} on ${this.iface}`);
    const mif = Buffer.alloc(12);
    mif.writeInt32LE(ifIndex(this.iface), 8);
    check(l.setsockopt(this.fd, IPPROTO_IP, IP_MULTICAST_IF, mif, 12), 'IP_MULTICAST_IF');
  }

  /** Sends `payload` to `dst`; the kernel writes the IP header (TTL 255, TOS 0xC0). Synchronous. */
  send(payload: Buffer, dst: string): void {
    if (this.closed) return;
    check(load().sendto(this.fd, payload, payload.length, 0, sockaddrIn(dst), 16), `sendto ${dst}`);
  }

  /**
   * Reads packets until close(), calling `onPacket` for each; an error is reported and reading goes on (a deaf backup
   * would take the VIPs).
   */
  receive(onPacket: (packet: Buffer) => void, onError: (e: Error) => void): void {
    const l = load();
    const loop = () => {
      if (this.closed) return;
      this.fromLen[0] = 16;
      l.recvfrom.async(
        this.fd,
        this.buf,
        this.buf.length,
        0,
        this.from,
        this.fromLen,
        (err: Error | null, n: number) => {
          if (this.closed) return;
          if (err) {
            onError(err);
            setTimeout(loop, 100);
            return;
          }
          if (n > 0) onPacket(Buffer.from(this.buf.subarray(0, n)));
          setImmediate(loop);
        },
      );
    };
    loop();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    // The pending recvfrom returns within SO_RCVTIMEO; closing under it is safe for the kernel,
    // but the fd number could be reused meanwhile, so wait for it to come back first.
    const fd = this.fd;
    setTimeout(() => load().close(fd), 300);
  }
}

/** A packet socket for sending whole Ethernet frames (gratuitous ARP) out of one interface. */
export class PacketSocket {
  private fd: number;
  private readonly addr: Buffer;

  constructor(iface: string) {
    const l = load();
    const proto = ((ETH_P_ARP & 0xff) << 8) | (ETH_P_ARP >> 8); // htons
    this.fd = check(l.socket(AF_PACKET, SOCK_RAW, proto), 'socket(AF_PACKET, SOCK_RAW)');
    // struct sockaddr_ll: family, protocol (network order), ifindex, hatype, pkttype, halen, addr[8]
    this.addr = Buffer.alloc(20);
    this.addr.writeUInt16LE(AF_PACKET, 0);
    this.addr.writeUInt16BE(ETH_P_ARP, 2);
    this.addr.writeInt32LE(ifIndex(iface), 4);
    this.addr[11] = 6;
    this.addr.fill(0xff, 12, 18);
  }

  send(frame: Buffer): void {
    check(load().sendto(this.fd, frame, frame.length, 0, this.addr, 20), 'sendto (gratuitous ARP)');
  }

  close(): void {
    load().close(this.fd);
  }
}
