import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { invalidArgument } from '../core/errors.js';

/**
 * Bearer secrets look like `sgt_<id>_<random>`: `id` is 16 hex characters naming the catalog row,
 * `random` is 32 random bytes in base64url (43 characters). The id lets a gateway find the one
 * row to check without scanning; the random part carries the 256 bits an attacker must guess,
 * which is why a single unsalted SHA-256 is enough to store it (no password-style stretching).
 */
const SECRET_PATTERN = /^sgt_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$/;
const ID_PATTERN = /^[0-9a-f]{16}$/;
const ID_BYTES = 8;
const RANDOM_BYTES = 32;

/** Longest `authorization` value looked at; anything longer is refused before it is hashed. */
export const MAX_SECRET_LENGTH = 512;

/** A new token's id, its bearer secret (shown once) and the hash the catalog keeps. */
export interface NewTokenSecret {
  readonly id: string;
  readonly secret: string;
  readonly secretSha256: Buffer;
}

/** Makes a token id and secret from the OS CSPRNG. */
export function generateTokenSecret(): NewTokenSecret {
  const id = randomBytes(ID_BYTES).toString('hex');
  const secret = `sgt_${id}_${randomBytes(RANDOM_BYTES).toString('base64url')}`;
  return { id, secret, secretSha256: hashSecret(secret) };
}

/** The token id a secret names, or undefined when it is not a shardgate token secret at all. */
export function tokenIdOf(secret: string): string | undefined {
  return SECRET_PATTERN.exec(secret)?.[1];
}

/** True for a well-formed token id (what RevokeToken takes). */
export function isTokenId(raw: string): boolean {
  return ID_PATTERN.test(raw);
}

/** Validates a token id from a request; INVALID_ARGUMENT otherwise. */
export function parseTokenId(raw: string, field = 'id'): string {
  if (raw === '') throw invalidArgument(`${field} is required`);
  if (!isTokenId(raw)) throw invalidArgument(`${field} must be a token id (16 hex characters)`);
  return raw;
}

/** SHA-256 of the whole secret, as stored in `shardgate.tokens.secret_sha256`. */
export function hashSecret(secret: string): Buffer {
  return createHash('sha256').update(secret, 'utf8').digest();
}

/** Constant-time comparison of two SHA-256 digests (both always 32 bytes). */
export function digestsEqual(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

/**
 * The secret of an `authorization` metadata value: `Bearer <secret>` (scheme case-insensitive,
 * RFC 6750). Undefined for any other form, so a malformed header is refused like a bad token.
 */
export function bearerSecret(header: string): string | undefined {
  if (header.length > MAX_SECRET_LENGTH + 7) return undefined;
  const match = /^bearer +(\S+) *$/i.exec(header);
  return match?.[1];
}
