// Check requests logged by test/receiver.py with the official Standard
// Webhooks verifier (npm standardwebhooks), as a receiver would: the headers
// and the body's bytes as they arrived.
//
// stdin: a JSON array of {secret, headers, body_b64}; stdout: one line per
// request, "ok" or why the verifier refused it.
"use strict";
const { Webhook } = require("standardwebhooks");

let input = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk) => { input += chunk; });
process.stdin.on("end", () => {
  for (const r of JSON.parse(input)) {
    try {
      // bodies are not all JSON (moderation hooks are form-encoded)
      new Webhook(r.secret).verify(Buffer.from(r.body_b64, "base64"), r.headers,
                                   { jsonParse: false });
      console.log("ok");
    } catch (e) {
      console.log(String(e && e.message ? e.message : e).replace(/\n/g, " "));
    }
  }
});
