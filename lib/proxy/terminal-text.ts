// Text from a relay or an identity provider, made safe to print on the user's terminal.

/**
 * Replaces control characters (C0, DEL, C1: escape sequences could rewrite the screen, hide text
 * or set the window title) with `?`, and cuts at `maxLength` (default 512) characters. For any
 * string arcproxy prints that a relay or a provider chose: URLs, codes, names, versions.
 */
export function printable(text: string, maxLength = 512): string {
  // eslint-disable-next-line no-control-regex
  const clean = text.replace(/[\u0000-\u001f\u007f-\u009f]/g, "?");
  return clean.length > maxLength ? `${clean.slice(0, maxLength)}...` : clean;
}
