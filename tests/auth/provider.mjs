// A real OpenID Provider (npm oidc-provider) for the access-control tests.
// Usage: node provider.mjs <config.json>; config: {issuer, port, audience, jwks: {keys: [...]},
// clients: [{client_id, client_secret, claims: {...}}]}. Issues JWT access tokens (RS256)
// for the client-credentials grant, with the requested scopes and each client's extra claims
// (Keycloak- or Entra-style roles). Prints "ready <port>" once it listens.
import fs from 'node:fs';
import Provider from 'oidc-provider';

const config = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const extra = Object.fromEntries(config.clients.map((c) => [c.client_id, c.claims || {}]));
const provider = new Provider(config.issuer, {
  clients: config.clients.map((c) => ({
    client_id: c.client_id,
    client_secret: c.client_secret,
    grant_types: ['client_credentials'],
    redirect_uris: [],
    response_types: [],
    token_endpoint_auth_method: 'client_secret_post',
  })),
  jwks: config.jwks,
  scopes: ['openid', 'dicom.read', 'dicom.write', 'dicom.delete'],
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => config.audience,
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({
        scope: 'dicom.read dicom.write dicom.delete',
        audience: config.audience,
        accessTokenTTL: 300,
        accessTokenFormat: 'jwt',
        jwt: { sign: { alg: 'RS256' } },
      }),
    },
  },
  extraTokenClaims: (ctx, token) => extra[token.clientId] || {},
});
// Requests per path, for the tests (how often the service fetched the JWKS).
const counts = {};
provider.use(async (ctx, next) => {
  if (ctx.path === '/test-counts') {
    ctx.body = counts;
    return;
  }
  counts[ctx.path] = (counts[ctx.path] || 0) + 1;
  await next();
});
provider.listen(config.port, '127.0.0.1', () => {
  process.stdout.write(`ready ${config.port}\n`);
});
