/** This machine cannot apply eBPF session policy; `reason` says why and `hint` what to do. */
export class BpfUnavailableError extends Error {
  readonly code = 'GH_ERR_BPF_UNAVAILABLE';
  readonly hint: string | undefined;
  constructor(message: string, opts: { hint?: string; cause?: unknown } = {}) {
    super(message, opts.cause !== undefined ? { cause: opts.cause } : undefined);
    this.name = 'BpfUnavailableError';
    this.hint = opts.hint;
  }
}

/** The helper refused a request (a bad cgroup, a full map) or went away while it was pending. */
export class BpfHelperError extends Error {
  readonly code = 'GH_ERR_BPF_HELPER';
  constructor(message: string) {
    super(message);
    this.name = 'BpfHelperError';
  }
}
