/**
 * A small beanstalkd client for the peers benchmark (scripts/peers_bench.ts):
 * the commands a producer and a worker need (`use`, `watch`, `ignore`, `put`,
 * `reserve-with-timeout`, `delete`), over one TCP connection, pipelined.
 *
 * Why not an npm client: the maintained ones either send one command at a
 * time (node-beanstalk 1.6.7 waits for each reply before it writes the next
 * command, so a producer cannot pipeline its puts), or mishandle pipelining
 * (jackd 2.2.2 registers a command's reply handler only after its write has
 * completed, so a reply that arrives first is left unclaimed, and it
 * re-concatenates its whole input buffer on every read); the others (fivebeans,
 * beanstalkd) are unmaintained callback-era code. The protocol is small
 * (doc/protocol.txt in beanstalkd's sources), so this is the fair client for
 * a throughput comparison: commands issued in the same tick go out in one
 * write, and replies are matched to commands in order, as beanstalkd answers
 * a connection's commands in the order they came.
 *
 * The parser is bounded: a reply line longer than beanstalkd's own line limit
 * ({@link MAX_LINE_BYTES}), a job body larger than `maxBodyBytes`, a reply
 * that no command waits for or a body not followed by CRLF fails the
 * connection (every pending command is rejected) instead of buffering more.
 *
 * @module
 */

/** beanstalkd's limit on a command or reply line, CRLF included (its `LINE_BUF_SIZE`). */
export const MAX_LINE_BYTES = 224;

/** Largest job body accepted by default, in bytes: beanstalkd's default `-z`. */
export const DEFAULT_MAX_BODY_BYTES = 65_535;

/** Bytes asked of the socket per read, at least. */
const READ_CHUNK_BYTES = 64 * 1024;

/** Time-to-run given to the jobs `put` inserts unless told otherwise, in seconds. */
const DEFAULT_TTR_S = 60;

/** Pending replies consumed before the FIFO's array is compacted. */
const PENDING_COMPACT_AT = 1024;

/** A tube name as beanstalkd accepts it: up to 200 bytes of these characters, no leading `-`. */
const TUBE_NAME = /^[A-Za-z0-9+/;.$_()][A-Za-z0-9\-+/;.$_()]{0,199}$/;

/** Replies that mean the command failed, whatever it was. */
const ERROR_REPLIES = new Set(["OUT_OF_MEMORY", "INTERNAL_ERROR", "BAD_FORMAT", "UNKNOWN_COMMAND"]);

const CRLF = new Uint8Array([13, 10]);
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A reply other than the one expected (`NOT_FOUND`, `JOB_TOO_BIG`, `BAD_FORMAT`, …). */
export class BeanstalkError extends Error {
  /** The reply line, without its CRLF. */
  readonly reply: string;

  constructor(command: string, reply: string) {
    super(`beanstalkd answered "${reply}" to ${command}`);
    this.name = "BeanstalkError";
    this.reply = reply;
  }
}

/** A job handed out by `reserve-with-timeout`. */
export interface ReservedJob {
  /** The job's id, as beanstalkd numbers it. */
  id: number;
  /** Its body. */
  body: Uint8Array;
}

/** Options of a put. */
export interface PutOptions {
  /** Priority, 0 (most urgent) to 2^32 - 1 (default 0). */
  priority?: number;
  /** Seconds before the job becomes ready (default 0). */
  delaySeconds?: number;
  /** Seconds a worker may hold the job before it is released again (default 60). */
  ttrSeconds?: number;
}

/** Options of {@link BeanstalkClient.connect}. */
export interface BeanstalkConnectOptions {
  hostname: string;
  port: number;
  /** Largest job body the parser accepts (default {@link DEFAULT_MAX_BODY_BYTES}). */
  maxBodyBytes?: number;
}

/** What a reply line leads to: a value, or a body of `bytes` to read first. */
type LineOutcome<T> = { value: T } | { bodyBytes: number; finish: (body: Uint8Array) => T };

/** A command waiting for its reply. */
interface Pending {
  command: string;
  onLine(line: string): LineOutcome<unknown>;
  resolve(value: unknown): void;
  reject(error: Error): void;
}

/** A pipelined beanstalkd connection: see the module documentation. */
export class BeanstalkClient {
  readonly #conn: Deno.TcpConn;
  readonly #maxBodyBytes: number;
  /** Commands sent (or about to be), oldest first, from {@link #head} on. */
  #pending: (Pending | undefined)[] = [];
  #head = 0;
  /** Encoded commands not written yet. */
  #out: Uint8Array[] = [];
  #flushQueued = false;
  #writing: Promise<void> = Promise.resolve();
  #failure: Error | undefined;
  /** The read loop, which ends when the connection does. */
  readonly #reading: Promise<void>;

  private constructor(conn: Deno.TcpConn, maxBodyBytes: number) {
    this.#conn = conn;
    this.#maxBodyBytes = maxBodyBytes;
    this.#reading = this.#readLoop();
  }

  /** Opens a connection (no delay: replies are small and latency-bound). */
  static async connect(options: BeanstalkConnectOptions): Promise<BeanstalkClient> {
    const maxBodyBytes = options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
    if (!Number.isInteger(maxBodyBytes) || maxBodyBytes < 0) {
      throw new RangeError(`maxBodyBytes must be a non-negative integer, not ${maxBodyBytes}`);
    }
    const conn = await Deno.connect({ hostname: options.hostname, port: options.port });
    conn.setNoDelay(true);
    return new BeanstalkClient(conn, maxBodyBytes);
  }

  /** Puts the jobs of later `put`s into `tube`. Resolves to the tube's name. */
  use(tube: string): Promise<string> {
    checkTube(tube);
    return this.#send(`use ${tube}`, undefined, (line) => {
      if (line.startsWith("USING ")) return { value: line.slice("USING ".length) };
      return undefined;
    });
  }

  /** Adds `tube` to those reserved from. Resolves to how many are watched. */
  watch(tube: string): Promise<number> {
    checkTube(tube);
    return this.#send(`watch ${tube}`, undefined, watching);
  }

  /** Removes `tube` from those reserved from. Resolves to how many are still watched. */
  ignore(tube: string): Promise<number> {
    checkTube(tube);
    return this.#send(`ignore ${tube}`, undefined, watching);
  }

  /** Inserts a job into the used tube. Resolves to its id. */
  put(body: Uint8Array | string, options: PutOptions = {}): Promise<number> {
    const bytes = typeof body === "string" ? encoder.encode(body) : body;
    const priority = options.priority ?? 0;
    const delay = options.delaySeconds ?? 0;
    const ttr = options.ttrSeconds ?? DEFAULT_TTR_S;
    for (const [name, value] of [["priority", priority], ["delay", delay], ["ttr", ttr]] as const) {
      if (!Number.isInteger(value) || value < 0 || value > 0xffff_ffff) {
        throw new RangeError(`${name} must be an integer from 0 to 2^32 - 1, not ${value}`);
      }
    }
    return this.#send(`put ${priority} ${delay} ${ttr} ${bytes.length}`, bytes, (line) => {
      if (line.startsWith("INSERTED ")) return { value: parseId(line, "INSERTED ") };
      return undefined;
    });
  }

  /**
   * Reserves a job from the watched tubes, waiting up to `timeoutSeconds` (0:
   * answers at once). Resolves to the job, or undefined when none came in time.
   */
  reserve(timeoutSeconds: number): Promise<ReservedJob | undefined> {
    if (!Number.isInteger(timeoutSeconds) || timeoutSeconds < 0) {
      throw new RangeError(`the timeout must be whole seconds, not ${timeoutSeconds}`);
    }
    return this.#send<ReservedJob | undefined>(
      `reserve-with-timeout ${timeoutSeconds}`,
      undefined,
      (line) => {
        if (line === "TIMED_OUT") return { value: undefined };
        const match = /^RESERVED (\d+) (\d+)$/.exec(line);
        if (match === null) return undefined;
        const id = Number(match[1]);
        return { bodyBytes: Number(match[2]), finish: (body) => ({ id, body }) };
      },
    );
  }

  /** Deletes a job this connection reserved (or any ready, delayed or buried job). */
  delete(id: number): Promise<void> {
    return this.#send(`delete ${id}`, undefined, (line) => {
      if (line === "DELETED") return { value: undefined };
      return undefined;
    });
  }

  /** Closes the connection; commands still waiting are rejected. */
  async close(): Promise<void> {
    this.#fail(new Error("the beanstalkd client was closed"));
    await this.#writing;
    await this.#reading;
  }

  /**
   * Queues one command (and its body) for the next write, which carries every
   * command issued in the same tick, and resolves with its parsed reply.
   */
  #send<T>(
    command: string,
    body: Uint8Array | undefined,
    onLine: (line: string) => LineOutcome<T> | undefined,
  ): Promise<T> {
    if (this.#failure !== undefined) return Promise.reject(this.#failure);
    return new Promise<T>((resolve, reject) => {
      this.#pending.push({
        command: command.split(" ", 1)[0],
        onLine: (line) => {
          if (ERROR_REPLIES.has(line)) throw new BeanstalkError(command, line);
          const outcome = onLine(line);
          if (outcome === undefined) throw new BeanstalkError(command, line);
          return outcome;
        },
        resolve: resolve as (value: unknown) => void,
        reject,
      });
      this.#out.push(encoder.encode(`${command}\r\n`));
      if (body !== undefined) this.#out.push(body, CRLF);
      if (!this.#flushQueued) {
        this.#flushQueued = true;
        queueMicrotask(() => this.#flush());
      }
    });
  }

  /** Writes what was queued, after the writes before it, as one buffer. */
  #flush(): void {
    this.#flushQueued = false;
    if (this.#failure !== undefined || this.#out.length === 0) return;
    const data = concat(this.#out);
    this.#out = [];
    this.#writing = this.#writing.then(async () => {
      if (this.#failure !== undefined) return;
      try {
        // A write may take only part of the buffer: loop until all of it is written.
        for (let written = 0; written < data.length;) {
          written += await this.#conn.write(data.subarray(written));
        }
      } catch (error) {
        this.#fail(error as Error);
      }
    });
  }

  /** Reads replies and hands each to the oldest pending command, until the connection ends. */
  async #readLoop(): Promise<void> {
    const capacity = Math.max(READ_CHUNK_BYTES, MAX_LINE_BYTES + this.#maxBodyBytes + CRLF.length);
    const buffer = new Uint8Array(capacity);
    let start = 0;
    let end = 0;
    /** The command whose reply line has been read and whose body is awaited. */
    let awaitingBody:
      | { pending: Pending; bytes: number; finish: (body: Uint8Array) => unknown }
      | undefined;
    try {
      for (;;) {
        // Parse every complete reply in the buffer.
        for (;;) {
          if (awaitingBody !== undefined) {
            const need = awaitingBody.bytes + CRLF.length;
            if (end - start < need) break;
            const bodyEnd = start + awaitingBody.bytes;
            if (buffer[bodyEnd] !== 13 || buffer[bodyEnd + 1] !== 10) {
              throw new Error(
                `a ${awaitingBody.pending.command} reply's body is not followed by CRLF`,
              );
            }
            const { pending, finish } = awaitingBody;
            awaitingBody = undefined;
            pending.resolve(finish(buffer.slice(start, bodyEnd)));
            start += need;
            continue;
          }
          const lineEnd = indexOfCrlf(buffer, start, Math.min(end, start + MAX_LINE_BYTES));
          if (lineEnd < 0) {
            if (end - start >= MAX_LINE_BYTES) {
              throw new Error(`a reply line is longer than ${MAX_LINE_BYTES} bytes`);
            }
            break;
          }
          const line = decoder.decode(buffer.subarray(start, lineEnd));
          start = lineEnd + CRLF.length;
          const pending = this.#shiftPending();
          if (pending === undefined) throw new Error(`a reply no command waits for: "${line}"`);
          let outcome: LineOutcome<unknown>;
          try {
            outcome = pending.onLine(line);
          } catch (error) {
            // An error reply fails that command only; the connection stays in step.
            pending.reject(error as Error);
            continue;
          }
          if ("value" in outcome) pending.resolve(outcome.value);
          else {
            // Out of the FIFO already: rejected with the connection's failure if its body is.
            awaitingBody = { pending, bytes: outcome.bodyBytes, finish: outcome.finish };
            if (
              !Number.isInteger(outcome.bodyBytes) || outcome.bodyBytes > this.#maxBodyBytes
            ) {
              throw new Error(
                `a job body of ${outcome.bodyBytes} bytes is over the ${this.#maxBodyBytes} accepted`,
              );
            }
          }
        }
        if (start > 0) {
          buffer.copyWithin(0, start, end);
          end -= start;
          start = 0;
        }
        const n = await this.#conn.read(buffer.subarray(end));
        if (n === null) {
          throw new Error("beanstalkd closed the connection");
        }
        end += n;
      }
    } catch (error) {
      awaitingBody?.pending.reject(error as Error);
      this.#fail(error as Error);
    }
  }

  #shiftPending(): Pending | undefined {
    if (this.#head >= this.#pending.length) return undefined;
    const pending = this.#pending[this.#head];
    this.#pending[this.#head++] = undefined;
    if (this.#head === this.#pending.length) {
      this.#pending = [];
      this.#head = 0;
    } else if (this.#head >= PENDING_COMPACT_AT && this.#head * 2 >= this.#pending.length) {
      this.#pending = this.#pending.slice(this.#head);
      this.#head = 0;
    }
    return pending;
  }

  /** Fails the connection: closes it and rejects every pending command with `error`. */
  #fail(error: Error): void {
    if (this.#failure !== undefined) return;
    this.#failure = error;
    try {
      this.#conn.close();
    } catch {
      // Already closed.
    }
    for (let pending = this.#shiftPending(); pending; pending = this.#shiftPending()) {
      pending.reject(error);
    }
  }
}

function checkTube(tube: string): void {
  if (!TUBE_NAME.test(tube)) throw new RangeError(`not a beanstalkd tube name: "${tube}"`);
}

function watching(line: string): LineOutcome<number> | undefined {
  if (line.startsWith("WATCHING ")) return { value: parseId(line, "WATCHING ") };
  return undefined;
}

function parseId(line: string, prefix: string): number {
  const text = line.slice(prefix.length);
  if (!/^\d+$/.test(text)) throw new Error(`not a number in reply "${line}"`);
  return Number(text);
}

/** Where the first CRLF of `buffer[from, to)` starts, or -1. */
function indexOfCrlf(buffer: Uint8Array, from: number, to: number): number {
  const view = buffer.subarray(from, to);
  for (let i = view.indexOf(13); i >= 0 && i + 1 < view.length; i = view.indexOf(13, i + 1)) {
    if (view[i + 1] === 10) return from + i;
  }
  return -1;
}

function concat(chunks: readonly Uint8Array[]): Uint8Array {
  if (chunks.length === 1) return chunks[0];
  let length = 0;
  for (const chunk of chunks) length += chunk.length;
  const out = new Uint8Array(length);
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.length;
  }
  return out;
}
