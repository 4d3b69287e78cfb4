--
-- endpoint: create_endpoint, alter_endpoint, drop_endpoint, verify_endpoint,
-- enable_endpoint, disable_endpoint, with every bad input and its error.
--
-- Errors show their message, detail and hint, then their SQLSTATE; CONTEXT
-- lines (PL/pgSQL line numbers) are left out.
\set SHOW_CONTEXT never

-- What an endpoint looks like without its random token and secret.
\set endpoint_cols 'name, url, format, length(token) AS token_length, secret ~ ''^whsec_[A-Za-z0-9+/]+=*$'' AS secret_ok, events, channels, keywords, headers, verify, on_response, state, state_reason, verified_at IS NOT NULL AS verified_at_set, verify_next_at IS NOT NULL AS handshake_due'

CREATE FUNCTION public.endpoint_on_response(delivery webhook.delivery, status int, headers jsonb, body text)
    RETURNS void LANGUAGE sql AS '';
CREATE FUNCTION public.endpoint_format(event jsonb, endpoint webhook.endpoint)
    RETURNS jsonb LANGUAGE sql AS 'SELECT event';
CREATE FUNCTION public.endpoint_text_format(event jsonb, endpoint webhook.endpoint)
    RETURNS text LANGUAGE sql AS 'SELECT event::text';

--
-- create_endpoint
--

-- Defaults: a generated name, token and secret; pending until the handshake.
\x on
SELECT id AS ep_default FROM webhook.create_endpoint('https://example.com/hooks') \gset
SELECT :endpoint_cols, name = 'endpoint_' || id AS name_from_id,
       length(decode(substr(secret, 7), 'base64')) AS secret_bytes
  FROM webhook.endpoint WHERE id = :ep_default;

-- Every argument given; verify => false is verified at once.
SELECT id AS ep_full FROM webhook.create_endpoint('http://receiver.example:8080/in?x=1',
    name => 'full', format => 'channel', token => 'tok-1',
    secret => 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw',
    events => '{message_created,order.paid}', channels => '{general,random}',
    keywords => '{Urgent}', headers => '{"Authorization": "Bearer abc", "X-Team": "blue"}',
    verify => false, on_response => 'public.endpoint_on_response(webhook.delivery,int,jsonb,text)') \gset
SELECT :endpoint_cols, token, secret FROM webhook.endpoint WHERE id = :ep_full;
\x off

-- The other built-in formats, and a schema-qualified format function.
SELECT format FROM webhook.create_endpoint('https://example.com/p', name => 'phraseanet', format => 'phraseanet');
SELECT format FROM webhook.create_endpoint('https://example.com/s', name => 'supabase', format => 'supabase');
SELECT format FROM webhook.create_endpoint('https://example.com/c', name => 'custom', format => 'public.endpoint_format');

-- Empty filters mean all (stored as NULL), NULL headers mean none.
SELECT events, channels, keywords, headers
  FROM webhook.create_endpoint('https://example.com/e', name => 'empty-filters',
                               events => '{}', channels => '{}', keywords => '{}', headers => NULL);

-- Tokens and secrets are generated afresh for each endpoint.
SELECT count(DISTINCT token) AS tokens, count(DISTINCT secret) AS secrets
  FROM webhook.endpoint WHERE token <> 'tok-1';

-- Bad URLs: unparsable, wrong scheme, no host, NULL.
SELECT webhook.create_endpoint('not a url');
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.create_endpoint('http://exa mple.com/');
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.create_endpoint('ftp://example.com/hooks');
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.create_endpoint('file:///etc/passwd');
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.create_endpoint('http://');
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.create_endpoint('https://:443/hooks');
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.create_endpoint(NULL);
\echo :LAST_ERROR_SQLSTATE

-- Bad format.
SELECT webhook.create_endpoint('https://example.com/', format => 'xml');
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.create_endpoint('https://example.com/', format => 'SlackChat');
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.create_endpoint('https://example.com/', format => '');
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.create_endpoint('https://example.com/', format => 'no such; thing');
\echo :LAST_ERROR_SQLSTATE
-- a format function must be schema-qualified and return jsonb
SELECT webhook.create_endpoint('https://example.com/', format => 'endpoint_format');
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.create_endpoint('https://example.com/', format => 'public.endpoint_text_format');
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.create_endpoint('https://example.com/', format => NULL);
\echo :LAST_ERROR_SQLSTATE

-- Bad token.
SELECT webhook.create_endpoint('https://example.com/', token => '');
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.create_endpoint('https://example.com/', token => E'two\nlines');
\echo :LAST_ERROR_SQLSTATE

-- Bad secrets: no whsec_ prefix, not base64, too short.
SELECT webhook.create_endpoint('https://example.com/', secret => 'MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw');
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.create_endpoint('https://example.com/', secret => 'whsec_not*base64!');
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.create_endpoint('https://example.com/', secret => 'whsec_c2hvcnQ=');
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.create_endpoint('https://example.com/', secret => 'whsec_');
\echo :LAST_ERROR_SQLSTATE

-- Bad headers: not an object, bad name, reserved name, not a string, line breaks.
SELECT webhook.create_endpoint('https://example.com/', headers => '["Authorization", "x"]');
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.create_endpoint('https://example.com/', headers => '"Authorization: x"');
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.create_endpoint('https://example.com/', headers => '{"X Team": "blue"}');
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.create_endpoint('https://example.com/', headers => '{"X-Team:": "blue"}');
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.create_endpoint('https://example.com/', headers => '{"webhook-id": "msg_1"}');
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.create_endpoint('https://example.com/', headers => '{"Webhook-Signature": "v1,x"}');
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.create_endpoint('https://example.com/', headers => '{"Host": "evil.example"}');
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.create_endpoint('https://example.com/', headers => '{"X-Count": 1}');
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.create_endpoint('https://example.com/', headers => '{"X-Team": null}');
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.create_endpoint('https://example.com/', headers => '{"X-Team": "blue\r\nX-Admin: yes"}');
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.create_endpoint('https://example.com/', headers => '{"X-Team": "blue\nX-Admin: yes"}');
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.create_endpoint('https://example.com/', headers => '{"X-Team": "blue\rX-Admin: yes"}');
\echo :LAST_ERROR_SQLSTATE

-- Bad filters: null or empty names and keywords, null channels, more than one dimension.
SELECT webhook.create_endpoint('https://example.com/', events => '{message_created,NULL}');
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.create_endpoint('https://example.com/', events => '{""}');
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.create_endpoint('https://example.com/', keywords => ARRAY[NULL]::text[]);
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.create_endpoint('https://example.com/', keywords => '{urgent,""}');
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.create_endpoint('https://example.com/', channels => '{general,NULL}');
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.create_endpoint('https://example.com/', events => '{{a,b},{c,d}}');
\echo :LAST_ERROR_SQLSTATE

-- Bad on_response: wrong signature, no such function.
SELECT webhook.create_endpoint('https://example.com/', on_response => 'public.endpoint_format(jsonb,webhook.endpoint)');
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.create_endpoint('https://example.com/', on_response => 'public.no_such_function(int)');
\echo :LAST_ERROR_SQLSTATE

-- Bad name: taken, empty; NULL verify.
SELECT webhook.create_endpoint('https://example.com/other', name => 'full');
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.create_endpoint('https://example.com/', name => '');
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.create_endpoint('https://example.com/', verify => NULL);
\echo :LAST_ERROR_SQLSTATE

-- None of the failed calls left an endpoint behind.
SELECT name, format, state FROM webhook.endpoint ORDER BY id;

--
-- alter_endpoint
--

-- Changing filters, headers or on_response keeps the state; an empty array
-- clears a filter, NULL keeps it; '-' clears on_response.
SELECT :endpoint_cols FROM webhook.alter_endpoint(:ep_full, events => '{}', channels => '{general}',
    headers => '{"X-Team": "red"}', on_response => '-');
SELECT :endpoint_cols FROM webhook.alter_endpoint(:ep_full, name => 'renamed', format => 'slackchat',
    keywords => '{urgent,help}', secret => 'whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQ=');
SELECT secret FROM webhook.endpoint WHERE id = :ep_full;

-- With verify => false, a new url or token needs no handshake.
SELECT :endpoint_cols FROM webhook.alter_endpoint(:ep_full, url => 'https://example.org/new');

-- Turning verify on starts the handshake; turning it off skips it.
SELECT :endpoint_cols FROM webhook.alter_endpoint(:ep_full, verify => true);
SELECT :endpoint_cols FROM webhook.alter_endpoint(:ep_full, verify => false);

-- With verify => true, a new url or a new token sends it back to pending.
UPDATE webhook.endpoint SET state = 'verified', verified_at = now(), verify_next_at = NULL
 WHERE id = :ep_default;
SELECT :endpoint_cols FROM webhook.alter_endpoint(:ep_default, url => 'https://example.com/hooks/v2');
UPDATE webhook.endpoint SET state = 'verified', verified_at = now(), verify_next_at = NULL
 WHERE id = :ep_default;
SELECT :endpoint_cols FROM webhook.alter_endpoint(:ep_default, token => 'new-token');
UPDATE webhook.endpoint SET state = 'verified', verified_at = now(), verify_next_at = NULL
 WHERE id = :ep_default;
-- the same url again changes nothing
SELECT :endpoint_cols FROM webhook.alter_endpoint(:ep_default, url => 'https://example.com/hooks/v2');

-- alter_endpoint checks its arguments as create_endpoint does.
SELECT webhook.alter_endpoint(:ep_full, url => 'gopher://example.com/');
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.alter_endpoint(:ep_full, format => 'yaml');
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.alter_endpoint(:ep_full, secret => 'whsec_c2hvcnQ=');
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.alter_endpoint(:ep_full, headers => '{"X-Team": "a\r\nb"}');
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.alter_endpoint(:ep_full, events => '{NULL}');
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.alter_endpoint(:ep_full, on_response => 'public.endpoint_format(jsonb,webhook.endpoint)');
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.alter_endpoint(:ep_full, name => 'phraseanet');
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.alter_endpoint(:ep_full, name => '');
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.alter_endpoint(-1, name => 'x');
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.alter_endpoint(NULL);
\echo :LAST_ERROR_SQLSTATE
-- renaming to its own name is fine
SELECT name FROM webhook.alter_endpoint(:ep_full, name => 'renamed');
-- on_response is kept as its qualified signature
SELECT on_response FROM webhook.alter_endpoint(:ep_full,
    on_response => 'public.endpoint_on_response(webhook.delivery,int,jsonb,text)');
SELECT on_response FROM webhook.alter_endpoint(:ep_full, format => 'supabase');
SELECT on_response FROM webhook.alter_endpoint(:ep_full, on_response => '-');

--
-- verify_endpoint, disable_endpoint, enable_endpoint
--

-- A failed handshake (as the worker records it), then verify_endpoint.
UPDATE webhook.endpoint SET state = 'unverified', state_reason = 'handshake answered HTTP 404',
       verify_next_at = NULL, verify_attempts = 1
 WHERE id = :ep_default;
SELECT webhook.verify_endpoint(:ep_default);
SELECT state, state_reason, verify_attempts, verify_next_at IS NOT NULL AS handshake_due
  FROM webhook.endpoint WHERE id = :ep_default;
-- no handshake for a verify => false endpoint
SELECT webhook.verify_endpoint(:ep_full);
\echo :LAST_ERROR_SQLSTATE

-- disable_endpoint, with and without a reason.
SELECT webhook.disable_endpoint(:ep_full);
SELECT state, state_reason FROM webhook.endpoint WHERE id = :ep_full;
SELECT webhook.disable_endpoint(:ep_default, reason => 'receiver moves on Monday');
SELECT state, state_reason, verify_next_at IS NOT NULL AS handshake_due
  FROM webhook.endpoint WHERE id = :ep_default;

-- A disabled endpoint stays disabled when its url or token changes, and
-- verify_endpoint refuses it: only enable_endpoint brings it back.
SELECT :endpoint_cols FROM webhook.alter_endpoint(:ep_default, url => 'https://example.com/hooks/v3');
SELECT webhook.verify_endpoint(:ep_default);
\echo :LAST_ERROR_SQLSTATE

-- enable_endpoint: back to pending (with a handshake) or verified (without).
SELECT webhook.enable_endpoint(:ep_default);
SELECT state, state_reason, verified_at IS NOT NULL AS verified_at_set,
       verify_next_at IS NOT NULL AS handshake_due
  FROM webhook.endpoint WHERE id = :ep_default;
SELECT webhook.enable_endpoint(:ep_full);
SELECT state, state_reason, verified_at IS NOT NULL AS verified_at_set,
       verify_next_at IS NOT NULL AS handshake_due
  FROM webhook.endpoint WHERE id = :ep_full;
-- enabling an enabled endpoint changes nothing
SELECT webhook.enable_endpoint(:ep_full);
SELECT state, state_reason FROM webhook.endpoint WHERE id = :ep_full;

-- Unknown ids.
SELECT webhook.verify_endpoint(-1);
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.enable_endpoint(-1);
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.disable_endpoint(-1);
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.disable_endpoint(NULL, 'why');
\echo :LAST_ERROR_SQLSTATE

--
-- The handshake's outcome, as the worker records it
-- (_handshake_result(id, url, token, challenge, status, body, error, retry_ms)).
--

SELECT id AS ep_hs FROM webhook.create_endpoint('https://example.com/hs', name => 'handshake',
                                                 token => 'hs-token') \gset
\set hs_state 'SELECT state, state_reason, verify_attempts, verified_at IS NOT NULL AS verified_at_set, verify_next_at IS NOT NULL AS handshake_due FROM webhook.endpoint WHERE id = :ep_hs;'
-- the challenge echoed as is, as a JSON string, or in a JSON object
SELECT webhook._handshake_result(:ep_hs, 'https://example.com/hs', 'hs-token', 'c0ffee', 200, E' c0ffee\n', NULL, 1000);
:hs_state
SELECT webhook.verify_endpoint(:ep_hs);
SELECT webhook._handshake_result(:ep_hs, 'https://example.com/hs', 'hs-token', 'c0ffee', 200, '"c0ffee"', NULL, 1000);
:hs_state
SELECT webhook.verify_endpoint(:ep_hs);
SELECT webhook._handshake_result(:ep_hs, 'https://example.com/hs', 'hs-token', 'c0ffee', 204, '{"challenge": "c0ffee"}', NULL, 1000);
:hs_state
-- a wrong answer, or a client error, is final
SELECT webhook.verify_endpoint(:ep_hs);
SELECT webhook._handshake_result(:ep_hs, 'https://example.com/hs', 'hs-token', 'c0ffee', 200, 'ok', NULL, 1000);
:hs_state
SELECT webhook.verify_endpoint(:ep_hs);
SELECT webhook._handshake_result(:ep_hs, 'https://example.com/hs', 'hs-token', 'c0ffee', 200, '{"challenge": "tea"', NULL, 1000);
:hs_state
SELECT webhook.verify_endpoint(:ep_hs);
SELECT webhook._handshake_result(:ep_hs, 'https://example.com/hs', 'hs-token', 'c0ffee', 404, 'c0ffee', NULL, 1000);
:hs_state
-- no answer or a server error is retried, until the schedule is used up
SELECT webhook.verify_endpoint(:ep_hs);
SELECT webhook._handshake_result(:ep_hs, 'https://example.com/hs', 'hs-token', 'c0ffee', NULL, NULL, 'Connection refused', 1000);
:hs_state
SELECT webhook._handshake_result(:ep_hs, 'https://example.com/hs', 'hs-token', 'c0ffee', 503, '', NULL, 1000);
:hs_state
SELECT webhook._handshake_result(:ep_hs, 'https://example.com/hs', 'hs-token', 'c0ffee', 500, '', NULL, -1);
:hs_state
-- a result for an old url or token is ignored
SELECT webhook.verify_endpoint(:ep_hs);
SELECT webhook._handshake_result(:ep_hs, 'https://example.com/old', 'hs-token', 'c0ffee', 200, 'c0ffee', NULL, 1000);
SELECT webhook._handshake_result(:ep_hs, 'https://example.com/hs', 'old-token', 'c0ffee', 200, 'c0ffee', NULL, 1000);
:hs_state

--
-- drop_endpoint
--

SELECT webhook.drop_endpoint(:ep_default);
SELECT webhook.drop_endpoint(:ep_default);
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.drop_endpoint(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT webhook.drop_endpoint(id) FROM webhook.endpoint;
SELECT count(*) FROM webhook.endpoint;

DROP FUNCTION public.endpoint_on_response(webhook.delivery, int, jsonb, text);
DROP FUNCTION public.endpoint_format(jsonb, webhook.endpoint);
DROP FUNCTION public.endpoint_text_format(jsonb, webhook.endpoint);
