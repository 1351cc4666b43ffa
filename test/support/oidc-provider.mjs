// A real OpenID Connect provider for the login tests: panva's oidc-provider (OpenID Certified), run on Node as it is meant to run.
//
//   node test/support/oidc-provider.mjs --port 0 --id-token-ttl 60
//
// Prints one JSON line {"issuer": URL} once listening; stops on SIGTERM. Any login and password are
// accepted (its development interactions); the account's email is <login>@example.com.
// Clients: "arcproxy", a public native client (PKCE, loopback redirect on any port, device grant, refresh).
import Provider from "oidc-provider";
import { parseArgs } from "node:util";

const { values } = parseArgs({ options: { port: { type: "string", default: "0" }, "id-token-ttl": { type: "string", default: "600" } } });
const server = (await import("node:http")).createServer();
await new Promise((resolve) => server.listen(Number(values.port), "127.0.0.1", resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;

const provider = new Provider(issuer, {
  clients: [{
    client_id: "arcproxy",
    application_type: "native",
    token_endpoint_auth_method: "none",
    redirect_uris: ["http://127.0.0.1/callback"],
    grant_types: ["authorization_code", "refresh_token", "urn:ietf:params:oauth:grant-type:device_code"],
    response_types: ["code"],
  }],
  features: { devInteractions: { enabled: true }, deviceFlow: { enabled: true }, revocation: { enabled: true } },
  claims: { openid: ["sub"], email: ["email", "email_verified"], profile: ["name"] },
  findAccount: async (_ctx, id) => ({
    accountId: id,
    claims: async () => ({ sub: id, email: `${id}@example.com`, email_verified: true, name: id }),
  }),
  // Public clients get refresh tokens without offline_access, as Entra ID and Dex do for native apps.
  issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed("refresh_token"),
  ttl: { IdToken: Number(values["id-token-ttl"]), AccessToken: Number(values["id-token-ttl"]), RefreshToken: 3600, DeviceCode: 300 },
  pkce: { required: () => true },
  // Scope claims (email) in the ID token itself, as Entra ID, Google and Dex put them: the relay reads only the ID token.
  conformIdTokenClaims: false,
  cookies: { keys: ["a-test-cookie-key-not-a-secret"] },
});
// Behind nothing: the issuer is plain http on loopback, which oidc-provider accepts for development.
server.on("request", provider.callback());
process.stdout.write(JSON.stringify({ issuer }) + "\n");
process.on("SIGTERM", () => server.close(() => process.exit(0)));
