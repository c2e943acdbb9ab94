// The package ships no types; only `apply` is used.
declare module 'json-merge-patch' {
  /** Applies an RFC 7386 merge patch; may mutate and return `target`. */
  export function apply(target: unknown, patch: unknown): unknown;
}
