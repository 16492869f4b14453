/**
 * The one error the codecs throw: malformed or oversized bytes from a peer.
 * `sqlstate` is what the gateway answers with (08P01 protocol_violation, or
 * 54000 program_limit_exceeded for a message over the size cap).
 */
export class PgWireError extends Error {
  readonly sqlstate: string;
  readonly reason: 'malformed' | 'oversized' | 'unsupported';

  constructor(
    message: string,
    opts: { sqlstate?: string; reason?: 'malformed' | 'oversized' | 'unsupported' } = {},
  ) {
    super(message);
    this.name = 'PgWireError';
    this.reason = opts.reason ?? 'malformed';
    this.sqlstate = opts.sqlstate ?? (this.reason === 'oversized' ? '54000' : '08P01');
  }
}
