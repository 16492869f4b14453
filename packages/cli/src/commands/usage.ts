import { GatehouseError } from '@gatehouse/core/lite';

/** A mistake in how the command was called: exit code 2, like commander's own usage errors. */
export class UsageError extends Error {
  override name = 'UsageError';
  readonly hint: string;
  constructor(message: string, hint: string) {
    super(message);
    this.hint = hint;
  }
}

/** The "Examples:" block of a command's --help. */
export const examples = (text: string) => `\nExamples:\n${text}`;

export function usage(message: string, hint: string): UsageError {
  return new UsageError(message, hint);
}

/** Wraps a flag parser so its validation errors count as usage errors. */
export function flag<T>(parse: (text: string) => T): (text: string) => T {
  return (text) => {
    try {
      return parse(text);
    } catch (e) {
      if (e instanceof GatehouseError) throw usage(e.message, e.hint ?? 'see --help');
      throw e;
    }
  };
}

export function asUsage<T>(fn: () => T): T {
  return flag(() => fn())('');
}
