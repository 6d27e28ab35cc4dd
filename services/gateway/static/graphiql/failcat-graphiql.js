/* failcat's GraphiQL page (not vendored): signs a person in and sends their token.
 *
 * Sign-in is OAuth 2.0 authorization code + PKCE (RFC 7636) with a public client: the verifier
 * and state stay in this tab's sessionStorage, the built-in sign-in page sends the person back
 * here with a code, and the code is exchanged at the token endpoint. A pasted token works the
 * same way afterwards. The token lives in sessionStorage (this tab only, gone when it closes)
 * and goes with every query as `Authorization: Bearer ...`, unless the request headers pane
 * sets an Authorization header of its own.
 */
(function () {
  "use strict";

  var config = JSON.parse(document.getElementById("failcat-config").textContent);
  var TOKEN_KEY = "failcat.graphiql.token";
  var PKCE_KEY = "failcat.graphiql.pkce";
  var store = window.sessionStorage;
  var status = document.getElementById("failcat-status");
  var signInButton = document.getElementById("failcat-sign-in");
  var signOutButton = document.getElementById("failcat-sign-out");
  var pasteForm = document.getElementById("failcat-paste");
  var pasteInput = document.getElementById("failcat-token");
  var root = null;
  var generation = 0;

  function base64url(bytes) {
    var text = "";
    for (var i = 0; i < bytes.length; i++) text += String.fromCharCode(bytes[i]);
    return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function randomString(size) {
    return base64url(crypto.getRandomValues(new Uint8Array(size)));
  }

  /* The token's claims, for display only: the server verifies every token it receives. */
  function claimsOf(token) {
    try {
      var part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      return JSON.parse(atob(part + "===".slice((part.length + 3) % 4)));
    } catch (e) {
      return null;
    }
  }

  function currentToken() {
    var token = store.getItem(TOKEN_KEY);
    if (!token) return null;
    var claims = claimsOf(token);
    if (claims && claims.exp && claims.exp * 1000 <= Date.now()) {
      store.removeItem(TOKEN_KEY);
      say("Your token expired: sign in again.", true);
      return null;
    }
    return token;
  }

  function say(text, isError) {
    status.textContent = text;
    status.className = isError ? "error" : "";
  }

  function showState() {
    var token = currentToken();
    signInButton.hidden = !!token || !config.clientId;
    pasteForm.hidden = !!token;
    signOutButton.hidden = !token;
    if (!token) {
      if (!status.className) say("Not signed in.");
      return;
    }
    var claims = claimsOf(token) || {};
    var parts = ["Signed in"];
    if (claims.preferred_username) parts.push("as " + claims.preferred_username);
    else if (claims.client_id && claims.sub === claims.client_id) {
      parts.push("as client " + claims.client_id);
    } else if (claims.sub) parts.push("as " + claims.sub);
    if (claims.team) parts.push("(team " + claims.team + ")");
    var text = parts.join(" ");
    if (claims.scope) text += " · scopes: " + claims.scope;
    if (claims.exp) text += " · until " + new Date(claims.exp * 1000).toLocaleTimeString();
    say(text);
  }

  function useToken(token) {
    store.setItem(TOKEN_KEY, token);
    say("");
    showState();
    render();
  }

  async function signIn() {
    if (!window.crypto || !crypto.subtle) {
      say("Signing in needs a secure context (https, or http on localhost or 127.0.0.1): " +
          "paste a token instead.", true);
      return;
    }
    var verifier = randomString(32);
    var state = randomString(16);
    var digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier));
    store.setItem(PKCE_KEY, JSON.stringify({ verifier: verifier, state: state }));
    var query = new URLSearchParams({
      response_type: "code",
      client_id: config.clientId,
      redirect_uri: config.redirectUri,
      code_challenge: base64url(new Uint8Array(digest)),
      code_challenge_method: "S256",
      state: state,
    });
    window.location.assign(config.authorizeUrl + "?" + query.toString());
  }

  /* Back from the sign-in page with ?code=...&state=... (or ?error=...). */
  async function finishSignIn(params) {
    var saved = JSON.parse(store.getItem(PKCE_KEY) || "null");
    store.removeItem(PKCE_KEY);
    window.history.replaceState(null, "", window.location.pathname);
    if (params.get("error")) {
      say("Sign-in failed: " + (params.get("error_description") || params.get("error")), true);
      return;
    }
    if (!saved || saved.state !== params.get("state")) {
      say("Sign-in failed: this answer does not belong to a sign-in started in this tab.", true);
      return;
    }
    var resp = await fetch(config.tokenUrl, {
      method: "POST",
      headers: { "Content-Type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({
        grant_type: "authorization_code",
        code: params.get("code"),
        redirect_uri: config.redirectUri,
        client_id: config.clientId,
        code_verifier: saved.verifier,
      }).toString(),
    });
    var body = await resp.json().catch(function () { return {}; });
    if (!resp.ok || !body.access_token) {
      say("Sign-in failed: " + (body.error_description || body.error || resp.status), true);
      return;
    }
    store.setItem(TOKEN_KEY, body.access_token);
  }

  async function fetcher(params, options) {
    var headers = { "Content-Type": "application/json", Accept: "application/json" };
    var token = currentToken();
    if (token) headers.Authorization = "Bearer " + token;
    Object.assign(headers, (options && options.headers) || {});
    var resp = await fetch(config.graphqlUrl, {
      method: "POST",
      headers: headers,
      body: JSON.stringify(params),
    });
    var text = await resp.text();
    var body;
    try {
      body = JSON.parse(text);
    } catch (e) {
      return { errors: [{ message: resp.status + " " + text }] };
    }
    if (!resp.ok && !("data" in body) && !("errors" in body)) {
      // An HTTP refusal (problem+json), e.g. 401 without a token: shown as a GraphQL error.
      if (resp.status === 401) showState();
      return {
        errors: [{
          message: body.detail || body.title || String(resp.status),
          extensions: { code: body.code, status: resp.status },
        }],
      };
    }
    return body;
  }

  function render() {
    generation += 1;
    if (root === null) root = ReactDOM.createRoot(document.getElementById("graphiql"));
    // A new key after a sign-in makes GraphiQL fetch the schema again, with the token.
    root.render(React.createElement(GraphiQL, {
      key: generation,
      fetcher: fetcher,
      defaultQuery: config.defaultQuery,
      shouldPersistHeaders: false,
    }));
  }

  signInButton.addEventListener("click", function () { signIn(); });
  signOutButton.addEventListener("click", function () {
    store.removeItem(TOKEN_KEY);
    say("Signed out.");
    showState();
    render();
  });
  pasteForm.addEventListener("submit", function (event) {
    event.preventDefault();
    var token = pasteInput.value.trim().replace(/^Bearer\s+/i, "");
    pasteInput.value = "";
    if (token) useToken(token);
  });

  var params = new URLSearchParams(window.location.search);
  var start = params.has("code") || params.has("error") ? finishSignIn(params) : Promise.resolve();
  start.then(function () {
    showState();
    render();
  });
})();
