/** Reported by /v1/ping and `gatehouse version`; bumped with the packages. */
export const VERSION = '0.1.0';
