/**
 * Sealing secrets at rest (CA private keys, TOTP secrets). The key lives
 * outside the backend: a 0600 file in the data dir or an env var, so a copy
 * of the database alone reveals nothing.
 */
export interface Sealer {
  /** Encrypt and authenticate `plain`, binding it to `aad` (e.g. "ca/user/<keyid>/ssh"). */
  seal(plain: string, aad: string): string;
  /** Throws GH_ERR_INTERNAL when the data was tampered with or the key is wrong. */
  open(sealed: string, aad: string): string;
}
