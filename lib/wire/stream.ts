/**
 * The byte streams the protocols run over: a TCP connection today, TLS over
 * one as well. Framing ({@link FramedConnection}, Python's connection) and
 * the accept loop need only this much of a connection, so any transport
 * that offers it plugs in without them knowing.
 *
 * @example
 * ```ts
 * import { listenTcp } from "./stream.ts";
 * const listener = listenTcp({ hostname: "127.0.0.1", port: 0 });
 * const client = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
 * const server = await listener.accept();
 * await client.write(new Uint8Array([42]));
 * const got = new Uint8Array(1);
 * console.log(await server.read(got), got[0]); // 1 42
 * client.close();
 * server.close();
 * listener.close();
 * ```
 *
 * @module
 */

/** A connected, ordered, reliable byte stream. */
export interface ByteStream {
  /** Reads into `buffer`; resolves with the bytes read, or `null` at the end of the stream. */
  read(buffer: Uint8Array): Promise<number | null>;
  /** Writes some of `data`; resolves with how many bytes were written. */
  write(data: Uint8Array): Promise<number>;
  /** Closes the stream; safe to call once, after which reads and writes fail. */
  close(): void;
  /** The peer's address. */
  readonly remoteAddr: Deno.Addr;
}

/** Hands out the streams of accepted connections. */
export interface StreamListener {
  /** Resolves with the next accepted connection's stream. */
  accept(): Promise<ByteStream>;
  /** Stops listening; a pending accept rejects with `Deno.errors.BadResource`. */
  close(): void;
  /** The address listened on (with the real port when 0 was asked). */
  readonly addr: Deno.NetAddr;
}

/** Options of {@link listenTcp}. */
export interface TcpListenOptions {
  /** Turn on TCP keep-alive on each connection, so a peer that vanishes is noticed. */
  keepAlive?: boolean;
}

/**
 * Listens on TCP; each accepted connection has Nagle's algorithm off (replies
 * are small and latency matters) and, if asked, keep-alive on.
 * @throws {Deno.errors.AddrInUse} and the like when the address cannot be used.
 */
export function listenTcp(
  address: { hostname: string; port: number },
  options: TcpListenOptions = {},
): StreamListener {
  const listener = Deno.listen({
    hostname: address.hostname,
    port: address.port,
    transport: "tcp",
  });
  return {
    addr: listener.addr,
    close: () => listener.close(),
    async accept() {
      const conn = await listener.accept();
      try {
        conn.setNoDelay(true);
        if (options.keepAlive) conn.setKeepAlive(true);
      } catch {
        // the peer is already gone; its session will notice
      }
      return conn;
    },
  };
}
