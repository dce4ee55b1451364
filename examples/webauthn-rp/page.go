package main

import "net/http"

// page is the whole browser client: the same four calls the demo script makes with
// curl and ctapkit, using the WebAuthn Level 3 JSON helpers (parse*OptionsFromJSON,
// toJSON) so no base64 handling is needed. Open it at http://localhost:PORT, not
// 127.0.0.1: the RP ID is "localhost".
const page = `<!doctype html>
<meta charset="utf-8">
<title>ctapkit example RP</title>
<style>body{font:15px sans-serif;max-width:42em;margin:2em auto}pre{background:#eee;padding:1em;white-space:pre-wrap}</style>
<h1>ctapkit example relying party</h1>
<p>A WebAuthn relying party (go-webauthn) with RP ID <code>localhost</code>. Users and
credentials live in memory until the server stops. The same endpoints are driven from a
terminal by <code>make demo-rp</code> with <code>ctapkit webauthn create|get</code>.</p>
<p><input id="user" value="alice"> <button onclick="register()">Register</button>
<button onclick="login(false)">Sign in</button> <button onclick="login(true)">Sign in with a passkey (no username)</button></p>
<pre id="out">Results show up here.</pre>
<script>
const $ = id => document.getElementById(id);
const show = v => $('out').textContent = typeof v === 'string' ? v : JSON.stringify(v, null, 2);
async function post(path, body) {
  const r = await fetch(path, {method: 'POST', headers: {'Content-Type': 'application/json'}, body: JSON.stringify(body)});
  const j = await r.json();
  if (!r.ok) throw new Error(j.error);
  return j;
}
const q = name => name ? '?username=' + encodeURIComponent(name) : '';
async function register() {
  try {
    const u = $('user').value;
    const opts = await post('/register/begin', {username: u});
    const cred = await navigator.credentials.create({publicKey: PublicKeyCredential.parseCreationOptionsFromJSON(opts.publicKey)});
    show(await post('/register/finish' + q(u), cred.toJSON()));
  } catch (e) { show('error: ' + e.message); }
}
async function login(discoverable) {
  try {
    const u = discoverable ? '' : $('user').value;
    const opts = await post('/login/begin', u ? {username: u} : {});
    const cred = await navigator.credentials.get({publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(opts.publicKey)});
    show(await post('/login/finish' + q(u), cred.toJSON()));
  } catch (e) { show('error: ' + e.message); }
}
</script>
`

func servePage(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write([]byte(page))
}
