// proxy-from-env 2.x ships no type declarations; this is its one export.
declare module "proxy-from-env" {
  /**
   * The proxy URL for `url` from HTTP_PROXY / HTTPS_PROXY / ALL_PROXY (and their lower-case forms),
   * or "" when NO_PROXY matches or none is set.
   */
  export function getProxyForUrl(url: string | URL): string;
}
