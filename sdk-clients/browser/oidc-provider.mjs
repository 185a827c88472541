// A real OpenID Provider for the single sign-on tests: npm's `oidc-provider` on 127.0.0.1,
// with one confidential client and accounts whose claims the test chooses. Started by
// crates/flagstaff/tests/it/sso.rs with a JSON input as its only argument:
//   {"port", "clientId", "clientSecret", "redirectUri",
//    "accounts": {"<login>": {"email", "name", "groups": [...]}}}
// It prints "ready" once it listens. Any login name in `accounts` signs in with any password
// through the provider's own (development) login and consent pages.
import Provider from 'oidc-provider';

// Only "ready" goes to stdout; anything the provider logs goes to stderr.
console.log = console.error;

const input = JSON.parse(process.argv[2]);
const issuer = `http://127.0.0.1:${input.port}`;
const provider = new Provider(issuer, {
  clients: [{
    client_id: input.clientId,
    client_secret: input.clientSecret,
    redirect_uris: [input.redirectUri],
    response_types: ['code'],
    grant_types: ['authorization_code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  // Email, name and groups in the ID token itself (not only at the userinfo endpoint).
  conformIdTokenClaims: false,
  claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name', 'groups'] },
  pkce: { required: () => true },
  async findAccount(_ctx, id) {
    const account = input.accounts[id];
    if (!account) return undefined;
    return {
      accountId: id,
      async claims() {
        return { sub: id, email: account.email, email_verified: true, name: account.name, groups: account.groups };
      },
    };
  },
});
provider.proxy = false;
const server = provider.listen(input.port, '127.0.0.1', () => {
  process.stdout.write('ready\n');
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
