// Test-only OpenID provider on 127.0.0.1 for the tests of keys published by an identity provider (plain http, or https with "tls"), on oidc-provider 9.x.
//
//   node idp.mjs CONFIG.json        # prints one line: READY {"issuer": ..., "port": ...}
//
// CONFIG.json (written by the test):
//   {"port": 0,                                  0 = any free port (read it from the READY line)
//    "jwks": {"keys": [<private JWKs with kid, alg>]},   all published; for each alg the first
//                                                 key in this array that can sign it signs
//    "clients": [<oidc-provider client metadata>],
//    "audience": "matrix",                       "aud" of the JWT access tokens
//    "users": {"alice": {}, "root": {"admin": true}},   who CIBA logs in (login_hint), extra claims
//    "tls": {"key": "k.pem", "cert": "c.pem"}}   optional: serve https (issuer https://127.0.0.1:PORT)
//
// Resource indicators (the `resource` parameter) pick the token format:
//   urn:matrix:jwt:RS256 | urn:matrix:jwt:ES256 | urn:matrix:jwt:EdDSA   JWT access token, that alg
//   urn:matrix:jwt                                                       alg of the first key
//   urn:matrix:opaque                                                    opaque (introspectable)
//   options: ":ttl=N" lifetime in seconds (default 300), ":aud=X" audience (default "audience")
//   e.g. urn:matrix:opaque:ttl=1   urn:matrix:jwt:ES256:aud=someone-else:ttl=60
//
// Test-only control endpoints (not part of any standard; loopback only):
//   POST /__test/jwks   {"keys": [...]}  -> new Provider with this keystore; same port, same tokens
//   POST /__test/fault  {"path": "/jwks", "mode": "500"|"garbage"|"slow"|"hang"|"body"|"off",
//                        "delay_ms": 3000, "body": <JSON to answer with>, "headers": {...}}
//                        "hang" never answers; "body" answers 200 with that JSON (a set
//                        without keys, oversized, with oct keys …); "headers" are added to
//                        the real answer when the mode is "off" (e.g. Cache-Control)
//   GET  /__test/requests  -> {"/jwks": 3, ...}: requests per path since the start
import http from 'node:http';
import https from 'node:https';
import { readFileSync } from 'node:fs';
import Provider, { errors } from 'oidc-provider';
// oidc-provider's own in-memory store, made once and shared by every Provider built below, so a
// keystore swap keeps issued opaque tokens. An internal module: the package has no "exports" map
// and package.json pins the exact version. (LRU of 1000 entries: plenty for a test run.)
import { createMemoryAdapter } from 'oidc-provider/lib/adapters/memory_adapter.js';

const adapter = createMemoryAdapter();

const cfg = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const users = cfg.users ?? { alice: {} }; // account id -> extra claims for its tokens

function buildProvider(issuer, jwks) {
  const firstAlg = jwks.keys?.[0]?.alg ?? 'RS256';
  const provider = new Provider(issuer, {
    adapter,
    jwks,
    // ID tokens (CIBA issues one beside the access token) default to RS256, and a client whose
    // alg has no key is refused: sign them with the first key's alg instead.
    clientDefaults: { id_token_signed_response_alg: firstAlg },
    clients: cfg.clients,
    // Every account exists; its claims come from the account id (the Matrix localpart).
    findAccount: async (ctx, sub) => ({
      accountId: sub,
      claims: async () => ({ sub, preferred_username: sub }),
    }),
    // Claims added to JWT access tokens and to introspection answers of opaque ones.
    extraTokenClaims: async (ctx, token) =>
      (token.accountId ? { preferred_username: token.accountId, ...users[token.accountId] } : undefined),
    features: {
      devInteractions: { enabled: false }, // no browser login pages
      clientCredentials: { enabled: true },
      introspection: { enabled: true },
      revocation: { enabled: true },
      ciba: {
        enabled: true,
        deliveryModes: ['poll'],
        processLoginHint: async (ctx, hint) => (Object.hasOwn(users, hint) ? hint : undefined),
        validateRequestContext: async () => {},
        verifyUserCode: async () => {},
        // The "authentication device" approves at once: grant the requested scopes and resource.
        triggerAuthenticationDevice: async (ctx, request, account, client) => {
          const grant = new provider.Grant({ accountId: account.accountId, clientId: client.clientId });
          grant.addOIDCScope(request.scope);
          for (const r of [request.resource ?? []].flat()) grant.addResourceScope(r, 'matrix:login');
          await grant.save();
          await provider.backchannelResult(request, grant);
        },
      },
      resourceIndicators: {
        enabled: true,
        useGrantedResource: async () => true, // CIBA token request needs no second `resource`
        getResourceServerInfo: async (ctx, resource) => {
          const [urn, ns, format, ...rest] = resource.split(':');
          if (urn !== 'urn' || ns !== 'matrix' || !['jwt', 'opaque'].includes(format)) {
            throw new errors.InvalidTarget();
          }
          const opt = Object.fromEntries(rest.filter((p) => p.includes('=')).map((p) => p.split('=')));
          const alg = rest.find((p) => !p.includes('=')) ?? firstAlg;
          return {
            scope: 'matrix:login',
            audience: opt.aud ?? cfg.audience ?? 'matrix',
            accessTokenTTL: Number(opt.ttl ?? 300),
            accessTokenFormat: format,
            ...(format === 'jwt' ? { jwt: { sign: { alg } } } : {}),
          };
        },
      },
    },
  });
  // Errors are answered to the client anyway; print them for the test log.
  provider.on('server_error', (ctx, err) => console.error('server_error', err));
  return provider;
}

let provider; // swapped by POST /__test/jwks
let handler; // provider.callback(), built once per provider
let fault = { mode: 'off' };
const requests = {}; // path -> count, for the tests that count fetches

async function control(req, res, body) {
  const json = (code, obj) => { res.writeHead(code, { 'content-type': 'application/json' }); res.end(JSON.stringify(obj)); };
  try {
    const input = JSON.parse(body || '{}');
    if (req.url === '/__test/jwks') {
      const next = buildProvider(provider.issuer, input); // throws on a bad keystore: old one stays
      [provider, handler] = [next, next.callback()];
      return json(200, { kids: input.keys.map((k) => k.kid) });
    }
    if (req.url === '/__test/fault') {
      fault = input;
      return json(200, fault);
    }
    return json(404, { error: 'unknown control path' });
  } catch (err) {
    return json(400, { error: String(err.message) });
  }
}

function onRequest(req, res) {
  if (!handler) { res.writeHead(503); return res.end(); } // before READY
  if (req.url === '/__test/requests') {
    res.writeHead(200, { 'content-type': 'application/json' });
    return res.end(JSON.stringify(requests));
  }
  const path = req.url.split('?')[0];
  if (!path.startsWith('/__test/')) requests[path] = (requests[path] ?? 0) + 1;
  if (req.url.startsWith('/__test/')) {
    let body = '';
    req.on('data', (c) => { body += c; });
    req.on('end', () => control(req, res, body));
    return;
  }
  if (path === fault.path) {
    for (const [name, value] of Object.entries(fault.headers ?? {})) res.setHeader(name, value);
  }
  if (fault.mode !== 'off' && path === fault.path) {
    if (fault.mode === '500') { res.writeHead(500); return res.end('injected failure'); }
    if (fault.mode === 'hang') return undefined; // the socket stays open, nothing is sent
    if (fault.mode === 'body') {
      res.writeHead(200, { 'content-type': 'application/json' });
      return res.end(JSON.stringify(fault.body));
    }
    if (fault.mode === 'garbage') { res.writeHead(200, { 'content-type': 'application/json' }); return res.end('{"keys": [ garbage'); }
    if (fault.mode === 'slow') return setTimeout(() => handler(req, res), fault.delay_ms ?? 3000);
  }
  return handler(req, res);
}

const server = cfg.tls
  ? https.createServer({ key: readFileSync(cfg.tls.key), cert: readFileSync(cfg.tls.cert) }, onRequest)
  : http.createServer(onRequest);

server.listen(cfg.port ?? 0, '127.0.0.1', () => {
  const { port } = server.address();
  provider = buildProvider(`${cfg.tls ? 'https' : 'http'}://127.0.0.1:${port}`, cfg.jwks);
  handler = provider.callback();
  console.log(`READY ${JSON.stringify({ issuer: provider.issuer, port })}`);
});
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
